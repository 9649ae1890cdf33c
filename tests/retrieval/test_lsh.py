import itertools

import numpy as np
import pytest
import torch

from recembed.retrieval import ExactIndex, LSHIndex, recall_at_k
from recembed.errors import ConfigError
from recembed.retrieval.hash_index import quantize_rows
from recembed.retrieval.lsh import sort_tables
from recembed.retrieval.lsh_kernels import probe_rank_masks

from .conftest import brute_force, gaussian_mixture


def test_recall_on_clustered_data_while_scoring_a_small_share():
    # 5000 points in 50 overlapping clusters (noise as large as the centre spread, so the
    # 10 nearest are a fine choice among ~100 cluster mates). Measured when written, over
    # 4 data seeds x 2 hash seeds: recall@10 0.956-0.968 with ~460 candidates per query
    # (9% of the data). 0.90 leaves margin for other seeds yet fails clearly if probing or
    # re-ranking breaks: one table with one probe gives 0.04-0.07.
    vectors = gaussian_mixture(5000, 16, clusters=50, std=1.0, seed=0)
    queries = gaussian_mixture(200, 16, clusters=50, std=1.0, seed=1)
    _, true = ExactIndex(metric="cosine").build(vectors).search(queries, 10)
    index = LSHIndex(num_tables=16, num_bits=12, num_probes=8, seed=0).build(vectors)
    _, found = index.search(queries, 10)
    assert recall_at_k(found, true) >= 0.90
    assert index.last_candidates.float().mean() < 0.2 * len(vectors)


def test_more_probes_find_more():
    vectors = gaussian_mixture(3000, 16, clusters=30, std=1.0, seed=2)
    queries = gaussian_mixture(100, 16, clusters=30, std=1.0, seed=3)
    _, true = ExactIndex(metric="cosine").build(vectors).search(queries, 10)
    index = LSHIndex(num_tables=4, num_bits=12, num_probes=1).build(vectors)
    recalls = []
    for probes in (1, 4, 16):
        index.num_probes = probes  # search parameter: may change after build
        recalls.append(recall_at_k(index.search(queries, 10)[1], true))
    assert recalls[0] < recalls[1] < recalls[2]


@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_probing_every_bucket_is_exact(random_data, metric):
    # One table of 6 bits has 64 buckets; 64 probes visit them all, so every row is a candidate.
    vectors, queries = random_data
    index = LSHIndex(metric=metric, num_tables=1, num_bits=6, num_probes=64).build(vectors)
    scores, ids = index.search(queries, 10)
    ref_scores, ref_rows = brute_force(queries, vectors, 10, metric)
    np.testing.assert_array_equal(ids.numpy(), ref_rows)
    np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-4, atol=1e-4)
    assert (index.last_candidates == len(vectors)).all()


def test_probe_order_is_cheapest_first_and_distinct():
    costs = np.sort(np.random.default_rng(4).random(8))
    masks = np.empty(40, np.int64)
    scratch = [np.empty(82, np.float64), np.empty(82, np.int64)]
    produced = probe_rank_masks(costs, 40, masks, *scratch)
    assert produced == 40
    every = sorted(
        sum(costs[list(subset)]) for size in range(9) for subset in itertools.combinations(range(8), size)
    )
    got = [sum(costs[b] for b in range(8) if m >> b & 1) for m in masks]
    np.testing.assert_allclose(got, every[:40])
    assert len(set(masks.tolist())) == 40


def test_probe_count_is_capped_by_the_number_of_buckets():
    masks = np.empty(100, np.int64)
    scratch = [np.empty(202, np.float64), np.empty(202, np.int64)]
    assert probe_rank_masks(np.array([0.1, 0.2, 0.3]), 100, masks, *scratch) == 8


def test_exclusion_and_padding():
    vectors = gaussian_mixture(500, 8, clusters=5, std=0.3, seed=5)
    index = LSHIndex(num_tables=1, num_bits=8, num_probes=1).build(vectors, ids=np.arange(500) + 1)
    queries = vectors[:3]
    scores, ids = index.search(queries, 5)
    exclude = [ids[0, :2].tolist(), [], ids[2].tolist()]
    _, ids_x = index.search(queries, 5, exclude=exclude)
    assert ids_x[0, :3].tolist() == ids[0, 2:].tolist()
    assert torch.equal(ids_x[1], ids[1])
    for row, seen in enumerate(exclude):
        assert not set(ids_x[row].tolist()) & set(seen)
    # A lone point in its own bucket with one probe finds only itself: the rest is padding.
    lonely = np.concatenate([vectors, -vectors[:1] * 100]).astype(np.float32)
    index = LSHIndex(num_tables=1, num_bits=16, num_probes=1).build(lonely)
    scores, ids = index.search(lonely[-1:], 5)
    assert ids[0, 0] == 500 and (ids[0, 1:] == -1).all() and (scores[0, 1:] == -torch.inf).all()


def test_dot_metric_reranks_by_inner_product():
    vectors = gaussian_mixture(2000, 8, clusters=10, std=0.5, seed=6)
    vectors *= np.random.default_rng(0).uniform(0.5, 2.0, (2000, 1)).astype(np.float32)
    queries = vectors[:20]
    scores, ids = LSHIndex(metric="dot", num_tables=8, num_bits=8, num_probes=8).build(vectors).search(queries, 10)
    expected = np.einsum("qd,qkd->qk", queries, vectors[ids.numpy()])
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-4)
    assert (np.diff(scores.numpy(), axis=1) <= 0).all()


def test_same_seed_same_results_and_adds_are_hashed():
    vectors = gaussian_mixture(2000, 8, clusters=10, std=1.0, seed=8)
    a = LSHIndex(num_tables=4, num_bits=10, num_probes=4, seed=11).build(vectors)
    b = LSHIndex(num_tables=4, num_bits=10, num_probes=4, seed=11)
    b.add(vectors[:500])
    b.search(vectors[:2], 3)
    b.add(vectors[500:])
    for index in (a, b):
        _, index_ids = index.search(vectors[:50], 10)
        assert torch.equal(index_ids, a.search(vectors[:50], 10)[1])
    c = LSHIndex(num_tables=4, num_bits=10, num_probes=4, seed=12).build(vectors)
    assert not torch.equal(c.search(vectors[:50], 10)[1], a.search(vectors[:50], 10)[1])


def test_defaults_pick_bits_from_the_size_and_find_the_neighbours():
    vectors = gaussian_mixture(5000, 16, clusters=50, std=1.0, seed=0)
    queries = gaussian_mixture(200, 16, clusters=50, std=1.0, seed=1)
    _, true = ExactIndex(metric="cosine").build(vectors).search(queries, 10)
    index = LSHIndex().build(vectors)
    assert index.num_bits is None and index.code_bits == 0  # tables are built at the first search
    _, found = index.search(queries, 10)
    assert index.code_bits == 10  # floor(log2 5000) - 2
    assert recall_at_k(found, true) >= 0.98  # measured 0.9995, scoring 32% of the rows
    index.add(gaussian_mixture(11000, 16, clusters=50, std=1.0, seed=9))
    index.search(queries[:1], 1)
    assert index.code_bits == 11  # re-derived from the new size (16000 rows)


def test_int8_first_pass_keeps_the_float32_results():
    # 3000 rows through 8 tables of 8 bits with 8 probes: ~1,000+ candidates per query, so
    # the int8 pass runs (count > rerank) and only 100 rows are scored in float32.
    vectors = gaussian_mixture(3000, 16, clusters=30, std=1.0, seed=12)
    queries = gaussian_mixture(60, 16, clusters=30, std=1.0, seed=13)
    index = LSHIndex(num_tables=8, num_bits=8, num_probes=8, rerank=100).build(vectors)
    scores, ids = index.search(queries, 10)
    assert index.last_candidates.min() > 100
    index.rerank = 0  # every candidate in float32: the reference
    ref_scores, ref_ids = index.search(queries, 10)
    assert recall_at_k(ids, ref_ids) >= 0.99
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = np.einsum("qd,qkd->qk", queries / np.linalg.norm(queries, axis=1, keepdims=True), normed[ids.numpy()])
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-5, atol=1e-6)  # float32 scores, not int8
    index.rerank = 5  # below k: k rows are re-scored, results stay sorted and distinct
    few_scores, few_ids = index.search(queries, 10)
    assert (np.diff(few_scores.numpy(), axis=1) <= 0).all()
    assert all(len(set(row)) == 10 for row in few_ids.tolist())


def test_quantize_rows_error_is_half_a_step_per_coordinate():
    rng = np.random.default_rng(14)
    vectors = torch.from_numpy(rng.standard_normal((300, 24)).astype(np.float32) * rng.uniform(0.01, 100, (300, 1)).astype(np.float32))
    vectors[7] = 0.0  # an all-zero row must not divide by zero
    codes, scales = quantize_rows(vectors)
    assert codes.dtype == np.int8 and scales.shape == (300,)
    assert np.abs(codes).max() == 127
    error = np.abs(codes * scales[:, None] - vectors.numpy())
    assert (error <= scales[:, None] * 0.5 * (1 + 1e-5)).all()
    assert (codes[7] == 0).all()


@pytest.mark.parametrize("bits, prefix_bits", [(17, 14), (12, 12), (20, 5), (6, 0)])
def test_tables_are_sorted_by_code_then_row(bits, prefix_bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, (3, 5000)).astype(np.int32)
    codes[1, :2500] = 5  # one crowded bucket
    entries, offsets = sort_tables(codes, prefix_bits, bits)
    expected = np.sort((codes.astype(np.int64) << 32) | np.arange(5000), axis=1)
    np.testing.assert_array_equal(entries, expected)
    for t in range(3):
        slots = np.bincount(expected[t] >> (32 + bits - prefix_bits), minlength=1 << prefix_bits)
        np.testing.assert_array_equal(offsets[t], np.concatenate([[0], np.cumsum(slots)]))


def test_rerank_must_be_a_non_negative_int():
    with pytest.raises(ConfigError, match=r"LSHIndex.rerank must be in \[0, 1048576\], got -1"):
        LSHIndex(rerank=-1)
