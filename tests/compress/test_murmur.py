"""murmurhash3_32: bit-exact against an independent pure-Python MurmurHash3 x86_32 (and sklearn/mmh3 if installed)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from recembed.compress import murmurhash3_32
from recembed.errors import ConfigError, InvalidDtypeError

M32 = 0xFFFFFFFF


def ref_murmur3_32(data: bytes, seed: int) -> int:
    """MurmurHash3 x86_32 of arbitrary bytes, written from the published algorithm (unsigned result)."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & M32
    rotl = lambda x, r: ((x << r) | (x >> (32 - r))) & M32
    n_blocks = len(data) // 4
    for i in range(n_blocks):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = rotl((k * c1) & M32, 15)
        h ^= (k * c2) & M32
        h = (rotl(h, 13) * 5 + 0xE6546B64) & M32
    tail = data[4 * n_blocks :]
    k = 0
    for j, byte in enumerate(tail):
        k |= byte << (8 * j)
    if tail:
        h ^= (rotl((k * c1) & M32, 15) * c2) & M32
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


def signed32(u: int) -> int:
    return u - (1 << 32) if u >= 1 << 31 else u


KEYS = [0, 1, 2, 42, 255, 256, 65535, 123456789, 2**31 - 1, -1, -2, -(2**31)]
SEEDS = [0, 1, 42, 0x9E3779B1, M32]


def test_known_published_values():
    # Widely published MurmurHash3_x86_32 vectors: empty input with seed 0 / 1, and these 4-byte keys.
    assert ref_murmur3_32(b"", 0) == 0
    assert ref_murmur3_32(b"", 1) == 0x514E28B7
    assert ref_murmur3_32(b"\x00\x00\x00\x00", 0) == 0x2362F9DE
    assert murmurhash3_32(torch.tensor([0]), seed=0, signed=False).tolist() == [0x2362F9DE]


@pytest.mark.parametrize("seed", SEEDS)
def test_matches_pure_python_reference_on_int32_keys(seed):
    keys = torch.tensor(KEYS, dtype=torch.int64)
    want_unsigned = [ref_murmur3_32(struct.pack("<i", k), seed) for k in KEYS]
    assert murmurhash3_32(keys, seed, signed=False).tolist() == want_unsigned
    assert murmurhash3_32(keys, seed).tolist() == [signed32(u) for u in want_unsigned]


def test_ids_past_int32_hash_their_low_32_bits_and_shapes_are_kept():
    keys = torch.tensor([[5, 5 + 2**32], [7, 7 + 3 * 2**32]])
    out = murmurhash3_32(keys, 3)
    assert out.shape == (2, 2) and out[0, 0] == out[0, 1] and out[1, 0] == out[1, 1]
    assert murmurhash3_32(torch.tensor([5], dtype=torch.int32), 3).tolist() == [int(out[0, 0])]


def test_matches_sklearn_when_installed():
    sk = pytest.importorskip("sklearn.utils")
    keys = np.array(KEYS, dtype=np.int32)
    for seed in SEEDS:
        assert murmurhash3_32(torch.from_numpy(keys.astype(np.int64)), seed).tolist() == \
            sk.murmurhash3_32(keys, seed=seed).tolist()


def test_matches_mmh3_when_installed():
    mmh3 = pytest.importorskip("mmh3")
    for seed in SEEDS:
        want = [mmh3.hash(struct.pack("<i", k), seed, signed=True) for k in KEYS]
        assert murmurhash3_32(torch.tensor(KEYS), seed).tolist() == want


def test_rejects_float_keys_and_bad_seeds():
    with pytest.raises(InvalidDtypeError, match="integer keys"):
        murmurhash3_32(torch.tensor([1.0]))
    with pytest.raises(ConfigError, match=r"seed must be an int in \[0, 2\*\*32\)"):
        murmurhash3_32(torch.tensor([1]), seed=-1)
