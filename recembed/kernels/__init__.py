"""The lookup/update seam and its implementations."""

from recembed.kernels.lookup import pooled_lookup, sequence_lookup

__all__ = ["pooled_lookup", "sequence_lookup"]
