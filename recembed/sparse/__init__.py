"""Sparse input types: jagged ids per feature, and keyed dense outputs.

- :class:`JaggedTensor` - one feature, a variable number of ids per batch row.
- :class:`KeyedJaggedTensor` - several features for the same batch, stored key-major.
- :class:`KeyedTensor` - dense per-key blocks (e.g. pooled embeddings) side by side.

This package imports nothing from recembed except ``recembed.errors``, so every
other layer can build on it.
"""

from recembed.sparse.jagged_tensor import JaggedTensor
from recembed.sparse.keyed_jagged_tensor import KeyedJaggedTensor
from recembed.sparse.keyed_tensor import KeyedTensor

__all__ = ["JaggedTensor", "KeyedJaggedTensor", "KeyedTensor"]
