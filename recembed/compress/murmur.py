"""MurmurHash3 (x86, 32-bit) of integer keys, vectorised over tensors.

Bloom embeddings hash each id with several seeds of ``murmurhash3_32``, the hash
Spotlight's ``BloomEmbedding`` takes from scikit-learn. This is the same function on the
same input - the 4 little-endian bytes of the id as an int32 - computed with wrapping
int64 tensor arithmetic, so it runs on any device and gives the same buckets on every
machine, with no per-id Python loop.

For one 4-byte block the algorithm is::

    k = key * 0xCC9E2D51;  k = rotl32(k, 15);  k = k * 0x1B873593
    h = seed ^ k;          h = rotl32(h, 13);  h = h * 5 + 0xE6546B64
    h = h ^ 4                                  # the key length in bytes
    h ^= h >> 16;  h *= 0x85EBCA6B;  h ^= h >> 13;  h *= 0xC2B2AE35;  h ^= h >> 16

all modulo 2**32. ``signed=True`` (scikit-learn's default, ``positive=False``) reads the
result as an int32.
"""

from __future__ import annotations

import torch

from recembed.errors import ConfigError, InvalidDtypeError

__all__ = ["murmurhash3_32"]

_MASK32 = 0xFFFFFFFF
_C1, _C2 = 0xCC9E2D51, 0x1B873593
_F1, _F2 = 0x85EBCA6B, 0xC2B2AE35


def _rotl32(x: torch.Tensor, bits: int) -> torch.Tensor:
    # x < 2**32, so x << bits stays below 2**47 and the right shift of a non-negative value is logical.
    return ((x << bits) | (x >> (32 - bits))) & _MASK32


def murmurhash3_32(keys: torch.Tensor, seed: int = 0, signed: bool = True) -> torch.Tensor:
    """MurmurHash3 x86_32 of each key's low 32 bits (as 4 little-endian bytes).

    Args:
        keys: integer tensor of any shape; ids of 2**32 and above wrap (only the low 32
            bits are hashed, as with an int32 key).
        seed: hash seed in ``[0, 2**32)``; distinct seeds give independent hash functions.
        signed: return int32 values in ``[-2**31, 2**31)`` (scikit-learn's
            ``positive=False``); False gives ``[0, 2**32)``.
    Returns:
        int64 tensor of ``keys.shape``.

    Example:
        >>> murmurhash3_32(torch.tensor([0, 1, 42]), seed=0).tolist()  # as sklearn.utils.murmurhash3_32
        [593689054, -68075478, -1134849565]
    """
    if keys.is_floating_point() or keys.is_complex() or keys.dtype == torch.bool:
        raise InvalidDtypeError(f"murmurhash3_32 hashes integer keys, got dtype {keys.dtype}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MASK32:
        raise ConfigError(f"murmurhash3_32: seed must be an int in [0, 2**32), got {seed!r}")
    k = keys.to(torch.int64) & _MASK32
    k = (k * _C1) & _MASK32
    k = _rotl32(k, 15)
    k = (k * _C2) & _MASK32
    h = k ^ seed
    h = _rotl32(h, 13)
    h = (h * 5 + 0xE6546B64) & _MASK32
    h = h ^ 4
    h = h ^ (h >> 16)
    h = (h * _F1) & _MASK32
    h = h ^ (h >> 13)
    h = (h * _F2) & _MASK32
    h = h ^ (h >> 16)
    if signed:
        h = torch.where(h >= 1 << 31, h - (1 << 32), h)
    return h
