"""Bloom embeddings: Spotlight's formula re-computed by hand, padding, collisions, sizing and errors."""

from __future__ import annotations

import math
import struct

import pytest
import torch
from torch.testing import assert_close

from recembed.compress import BloomEmbeddingTable, BloomSpec, default_bloom_seeds
from recembed.errors import ConfigError
from recembed.tables import EmbeddingBagConfig

from .builders import bags, one_table, pool
from .test_murmur import ref_murmur3_32, signed32


def spotlight_rows(idx: int, seeds, m: int) -> list[int]:
    """Spotlight's BloomEmbedding: sklearn murmurhash3_32(int32 id, seed) (signed), then numpy % m."""
    return [signed32(ref_murmur3_32(struct.pack("<i", idx), s)) % m for s in seeds]


def test_rows_are_spotlights_formula_and_vectors_sum_them():
    ebc = one_table(BloomSpec(compression_ratio=0.25, num_hashes=3), num_embeddings=40, dim=5)
    table = ebc.embedding_bags["t"]
    assert isinstance(table, BloomEmbeddingTable) and table.num_buckets == 10
    seeds = default_bloom_seeds(3)
    ids = list(range(40))
    assert table.bucket_rows(torch.tensor(ids)).tolist() == [spotlight_rows(i, seeds, 10) for i in ids]
    w = table.sub_table_weight("bloom").detach()
    out = ebc(bags([[3, 17], [39], []])).values()
    vec = {i: w[spotlight_rows(i, seeds, 10)].sum(0) for i in (3, 17, 39)}
    assert_close(out, torch.stack([vec[3] + vec[17], vec[39], torch.zeros(5)]))


def test_explicit_seeds_and_hash_seed_change_the_functions():
    spec = BloomSpec(compression_ratio=0.5, num_hashes=2, seeds=(179424941, 179425457))
    table = one_table(spec, num_embeddings=30).embedding_bags["t"]
    assert table.bucket_rows(torch.tensor([7])).tolist() == [spotlight_rows(7, (179424941, 179425457), 15)]
    assert default_bloom_seeds(2, hash_seed=1) != default_bloom_seeds(2, hash_seed=0)
    assert len(set(default_bloom_seeds(8))) == 8


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_pooling_modes_and_weights_against_reference(mode):
    ebc = one_table(BloomSpec(0.3, 2), num_embeddings=50, dim=4, pooling=mode)
    table = ebc.embedding_bags["t"]
    lists = [[1, 2, 49], [7], [], [7, 7]]
    iv = {i: table.id_vectors(torch.tensor([i]))[0].detach() for i in (1, 2, 49, 7)}
    weights = None if mode == "max" else [[0.5, 2.0, 1.0], [3.0], [], [1.0, -1.0]]
    out = ebc(bags(lists, weights)).values()
    want = torch.stack([pool([iv[i] for i in bag], mode, 4, None if weights is None else weights[b])
                        for b, bag in enumerate(lists)])
    assert_close(out, want)


def test_padding_id_adds_nothing_is_not_counted_and_gets_no_update():
    ebc = one_table(BloomSpec(0.5, 2), num_embeddings=20, dim=3, pooling="mean", padding_idx=0,
                    optimizer="sgd", lr=1.0)
    table = ebc.embedding_bags["t"]
    out = ebc(bags([[0, 5], [0], [5]])).values()
    assert_close(out[0], out[2])  # the padding id neither adds a vector nor counts in the mean
    assert_close(out[1], torch.zeros(3))
    pad_rows = table.bucket_rows(torch.tensor([0]))[0].tolist()
    own_rows = set(table.bucket_rows(torch.tensor([5]))[0].tolist())
    before = table.sub_table_weight("bloom").detach().clone()
    out.sum().backward()
    after = table.sub_table_weight("bloom").detach()
    for r in pad_rows:
        if r not in own_rows:  # rows the padding id hashes to are untouched (unless id 5 shares them)
            assert torch.equal(before[r], after[r])
    assert not torch.equal(before, after)


def test_ids_share_all_parameters_only_when_every_hash_collides():
    table = one_table(BloomSpec(0.2, 2), num_embeddings=200, dim=3).embedding_bags["t"]
    rows = table.bucket_rows(torch.arange(200))
    vectors = table.id_vectors(torch.arange(200)).detach()
    for a in range(200):
        for b in range(a + 1, 200):
            same_rows = sorted(rows[a].tolist()) == sorted(rows[b].tolist())
            assert torch.equal(vectors[a], vectors[b]) == same_rows


def test_size_and_parameter_count():
    table = one_table(BloomSpec(0.1, 4), num_embeddings=1000, dim=8).embedding_bags["t"]
    assert table.num_buckets == math.ceil(0.1 * 1000) == 100
    assert table.num_parameters() == 100 * 8 and table.num_bytes() == 100 * 8 * 4


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_compression_ratio_outside_zero_one_is_rejected(ratio):
    with pytest.raises(ConfigError, match=r"compression_ratio must be a number in \(0, 1\]"):
        BloomSpec(compression_ratio=ratio)


def test_too_many_hash_functions_are_rejected():
    with pytest.raises(ConfigError, match=r"num_hashes must be an int in \[1, 8\], got 9"):
        BloomSpec(0.5, num_hashes=9)
    with pytest.raises(ConfigError, match="num_hashes=4 is more than the 2 rows of the compressed table"):
        one_table(BloomSpec(0.1, num_hashes=4), num_embeddings=20)
    with pytest.raises(ConfigError, match="seeds must be distinct"):
        BloomSpec(0.5, num_hashes=2, seeds=(3, 3))
    with pytest.raises(ConfigError, match="1 seeds given for num_hashes=2"):
        BloomSpec(0.5, num_hashes=2, seeds=(3,))


def test_more_than_int32_ids_need_hash_size_first():
    cfg = EmbeddingBagConfig(name="huge", num_embeddings=2**31 + 1, embedding_dim=2)
    with pytest.raises(ConfigError, match="at most 2\\*\\*31 ids"):
        BloomSpec(0.000001, 2).build(cfg)
