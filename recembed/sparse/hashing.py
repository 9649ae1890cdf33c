"""Seedable, well-mixed, vectorised id hashing, stable across runs, processes and machines.

``hash_ids`` applies MurmurHash3's 64-bit finaliser (``fmix64``) to ``id XOR seed-derived
key``; the finaliser has full avalanche (every input bit flips each output bit with
probability about 1/2), so ids that differ in one bit land in unrelated buckets.
All arithmetic is wrapping 64-bit integer arithmetic on tensors, so it runs on any
device and gives the same buckets everywhere.

``hash_strings`` gives a 64-bit hash of a string's UTF-8 bytes (FNV-1a 64 over the bytes,
then ``fmix64``), documented so other systems can reproduce it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["hash_ids", "hash_strings", "fmix64"]

_M1 = -49064778989728563  # 0xff51afd7ed558ccd as a signed int64
_M2 = -4265267296055464877  # 0xc4ceb9fe1a85ec53 as a signed int64
_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed int64
_MASK63 = (1 << 63) - 1
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_U64 = (1 << 64) - 1


def _shift_right_logical(x: torch.Tensor, bits: int) -> torch.Tensor:
    # torch's >> on int64 is arithmetic; masking the sign-extended bits makes it logical.
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def fmix64(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 64-bit finaliser on an int64 tensor (wrapping arithmetic).

    Args:
        x: int64 tensor of any shape.
    Returns:
        int64 tensor of the same shape (bit pattern of the unsigned result).
    """
    x = x ^ _shift_right_logical(x, 33)
    x = x * _M1
    x = x ^ _shift_right_logical(x, 33)
    x = x * _M2
    x = x ^ _shift_right_logical(x, 33)
    return x


def hash_ids(ids: torch.Tensor, num_buckets: int, seed: int = 0) -> torch.Tensor:
    """Hash int64 ids of any value into ``[0, num_buckets)``.

    Args:
        ids: integer tensor of any shape (any int64 value, negative included).
        num_buckets: number of rows to hash into, >= 1.
        seed: selects an independent hash function.
    Returns:
        int64 tensor of ``ids.shape`` with values in ``[0, num_buckets)``.

    Example:
        >>> hash_ids(torch.tensor([0, 1, 2**40]), 1000).tolist()  # doctest: +SKIP
        [...three buckets in [0, 1000)...]
    """
    if num_buckets < 1:
        from recembed.errors import ConfigError

        raise ConfigError(f"num_buckets must be >= 1, got {num_buckets}")
    key = fmix64(torch.tensor(seed, dtype=torch.int64) * _GOLDEN + _GOLDEN)
    mixed = fmix64(ids.to(torch.int64) ^ key.to(ids.device))
    # Drop the sign bit so the modulo of a non-negative number is taken.
    return (mixed & _MASK63) % num_buckets


def _fnv1a64_all(buffer: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """FNV-1a 64 of each ``buffer[offsets[i]:offsets[i + 1]]``, as signed int64 bit patterns."""
    out = np.empty(offsets.shape[0] - 1, np.uint64)
    prime = np.uint64(_FNV_PRIME)
    for i in range(out.shape[0]):
        h = np.uint64(_FNV_OFFSET)
        for p in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(buffer[p])) * prime
        out[i] = h
    return out.view(np.int64)


_fnv_kernel = None


def hash_strings(tokens: Sequence[str], seed: int = 0) -> torch.Tensor:
    """64-bit hashes of strings: ``fmix64(FNV-1a-64(utf8(token)) XOR seed key)``.

    Args:
        tokens: sequence of ``N`` strings.
        seed: selects an independent hash function.
    Returns:
        int64 tensor of shape ``(N,)``; feed it to :func:`hash_ids` to bucket it.
    """
    global _fnv_kernel
    if _fnv_kernel is None:  # compiled on first use, not at import
        import numba

        _fnv_kernel = numba.njit(cache=True, nogil=True)(_fnv1a64_all)
    encoded = [t.encode("utf-8") for t in tokens]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    buffer = np.frombuffer(b"".join(encoded), np.uint8)
    raw = torch.from_numpy(_fnv_kernel(buffer, offsets))
    key = fmix64(torch.tensor(seed, dtype=torch.int64) * _GOLDEN + _GOLDEN)
    return fmix64(raw ^ key)
