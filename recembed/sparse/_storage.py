"""The flat jagged storage both JaggedTensor and KeyedJaggedTensor are built on."""

from __future__ import annotations

from typing import Optional

import torch

from recembed.errors import JaggedStructureError
from recembed.sparse._checks import lengths_to_offsets, offsets_to_lengths


class JaggedStorage:
    """Accessors over ``values`` (N ids), ``lengths`` or ``offsets`` (one per row), ``weights``.

    Exactly one of lengths and offsets may be missing; the other is derived on first
    use and kept. For a KeyedJaggedTensor the rows are (key, batch row) pairs, key-major.
    """

    __slots__ = ("_lengths", "_offsets", "_values", "_weights")

    _values: torch.Tensor
    _lengths: Optional[torch.Tensor]
    _offsets: Optional[torch.Tensor]
    _weights: Optional[torch.Tensor]

    def values(self) -> torch.Tensor:
        """All ids, row after row (key-major when keyed), shape (N,)."""
        return self._values

    def lengths(self) -> torch.Tensor:
        """Ids per row, int64 shape (rows,)."""
        if self._lengths is None:
            self._lengths = offsets_to_lengths(self._offsets)
        return self._lengths

    def lengths_or_none(self) -> Optional[torch.Tensor]:
        """Lengths if they were given or already derived, else ``None`` (no compute)."""
        return self._lengths

    def offsets(self) -> torch.Tensor:
        """Start of each row plus the end, int64 shape (rows + 1,), starting at 0."""
        if self._offsets is None:
            self._offsets = lengths_to_offsets(self._lengths)
        return self._offsets

    def offsets_or_none(self) -> Optional[torch.Tensor]:
        """Offsets if they were given or already derived, else ``None`` (no compute)."""
        return self._offsets

    def weights(self) -> torch.Tensor:
        """Per-id weights, shape (N,); raises if there are none."""
        if self._weights is None:
            raise JaggedStructureError(
                f"{type(self).__name__} has no weights; use weights_or_none() when they are optional"
            )
        return self._weights

    def weights_or_none(self) -> Optional[torch.Tensor]:
        """Per-id weights, or ``None``."""
        return self._weights
