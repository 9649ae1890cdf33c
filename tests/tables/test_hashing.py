"""Id hashing: bit-exact against a pure-Python MurmurHash3 fmix64, in range, stable, uniform."""

from __future__ import annotations

import pytest
import torch

from recembed.errors import ConfigError
from recembed.sparse.hashing import fmix64, hash_ids, hash_strings

U64 = (1 << 64) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def ref_fmix64(k: int) -> int:
    """MurmurHash3's 64-bit finaliser on an unsigned 64-bit Python int."""
    k &= U64
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & U64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & U64
    k ^= k >> 33
    return k


def ref_hash_id(i: int, buckets: int, seed: int = 0) -> int:
    golden = 0x9E3779B97F4A7C15
    key = ref_fmix64((seed * golden + golden) & U64)
    return (ref_fmix64((i & U64) ^ key) & ((1 << 63) - 1)) % buckets


def to_signed(u: int) -> int:
    return u - (1 << 64) if u >= (1 << 63) else u


SAMPLE_IDS = [0, 1, 2, 3, 42, 12345, 2**31 - 1, 2**31, 2**40 + 7, 2**62, INT64_MAX, -1, -2, -(2**40), INT64_MIN]


def test_fmix64_matches_pure_python_reference_bit_for_bit():
    got = fmix64(torch.tensor(SAMPLE_IDS, dtype=torch.int64)).tolist()
    assert got == [to_signed(ref_fmix64(i)) for i in SAMPLE_IDS]


def test_fmix64_known_values():
    # fmix64(0) = 0 (the finaliser adds no constant); fmix64(1) is the widely published 0xB456BCFC34C2CB2C.
    assert fmix64(torch.tensor([0])).tolist() == [0]
    assert ref_fmix64(1) == 0xB456BCFC34C2CB2C
    assert fmix64(torch.tensor([1])).tolist() == [to_signed(0xB456BCFC34C2CB2C)]


@pytest.mark.parametrize("seed", [0, 1, 17, -3])
@pytest.mark.parametrize("buckets", [1, 7, 1000, 2**40 + 3])
def test_hash_ids_matches_reference(seed, buckets):
    got = hash_ids(torch.tensor(SAMPLE_IDS, dtype=torch.int64), buckets, seed).tolist()
    assert got == [ref_hash_id(i, buckets, seed) for i in SAMPLE_IDS]


def test_hash_ids_is_in_range_keeps_shape_and_is_stable():
    ids = torch.tensor([[INT64_MIN, -1, 0], [5, 2**50, INT64_MAX]])
    first = hash_ids(ids, 97)
    assert first.shape == ids.shape and first.dtype == torch.int64
    assert bool(((first >= 0) & (first < 97)).all())
    assert torch.equal(first, hash_ids(ids.clone(), 97))


def test_hash_ids_same_for_int32_and_int64_input():
    ids = torch.tensor([-7, -1, 0, 3, 2**31 - 1])
    assert torch.equal(hash_ids(ids.to(torch.int32), 101), hash_ids(ids, 101))


def test_seed_selects_a_different_function():
    ids = torch.arange(1000)
    a, b = hash_ids(ids, 1000, seed=0), hash_ids(ids, 1000, seed=1)
    assert float((a == b).float().mean()) < 0.01  # collisions at ~1/1000 chance per id


def test_hash_distribution_is_roughly_uniform():
    buckets, n = 64, 64_000
    counts = torch.bincount(hash_ids(torch.arange(n), buckets), minlength=buckets).double()
    expected = n / buckets
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # chi-square with 63 degrees of freedom: the 99.9th percentile is ~104.
    assert chi2 < 104
    # Strided ids (a classic failure of id % buckets) spread evenly too.
    strided = torch.bincount(hash_ids(torch.arange(n) * buckets, buckets), minlength=buckets).double()
    assert float(((strided - expected) ** 2 / expected).sum()) < 104


def test_hash_ids_rejects_zero_buckets():
    with pytest.raises(ConfigError, match="num_buckets must be >= 1, got 0"):
        hash_ids(torch.tensor([1]), 0)


def _ref_fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & U64
    return h


def test_hash_strings_matches_documented_recipe():
    tokens = ["", "a", "user_42", "héllo"]
    golden = 0x9E3779B97F4A7C15
    for seed in (0, 5):
        key = ref_fmix64((seed * golden + golden) & U64)
        expected = [to_signed(ref_fmix64(_ref_fnv1a64(t.encode("utf-8")) ^ key)) for t in tokens]
        assert hash_strings(tokens, seed).tolist() == expected
    # FNV-1a 64 of "a" is a published test vector.
    assert _ref_fnv1a64(b"a") == 0xAF63DC4C8601EC8C
