import numpy as np
import pytest
import torch

from recembed.errors import CheckpointError, ConfigError
from recembed.retrieval import (
    CrossPolytopeLSHIndex,
    ExactIndex,
    index_factory,
    recall_at_k,
)
from recembed.retrieval.cross_polytope import cross_polytope_hash, random_rotations
from recembed.retrieval.cross_polytope_kernels import (
    _probe_buckets,
    cross_polytope_codes,
)

from .conftest import brute_force, gaussian_mixture


def test_rotations_are_orthonormal_blocks_and_follow_the_seed():
    rotations = random_rotations(dim=6, projected_dim=15, num_tables=3, seed=4)
    assert rotations.shape == (6, 45)
    for table in range(3):
        block = rotations[:, table * 15 : (table + 1) * 15]
        for start in (0, 6):  # the first two 6x6 rotations of the table are complete
            part = block[:, start : start + 6]
            torch.testing.assert_close(part.T @ part, torch.eye(6), atol=1e-5, rtol=0)
        torch.testing.assert_close(block.norm(dim=0), torch.ones(15), atol=1e-5, rtol=0)  # cut one: unit columns
    assert torch.equal(rotations, random_rotations(6, 15, 3, seed=4))
    assert not torch.allclose(rotations, random_rotations(6, 15, 3, seed=5))


def test_hash_is_the_nearest_signed_axis():
    rotations = random_rotations(4, 4, 2, seed=0)
    vectors = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    codes = cross_polytope_hash(vectors, rotations, num_tables=2)
    for table in range(2):
        projected = (vectors @ rotations[:, table * 4 : (table + 1) * 4]).numpy()
        axis = np.abs(projected).argmax(axis=1)
        negative = projected[np.arange(50), axis] < 0
        np.testing.assert_array_equal(codes[table], axis + 4 * negative)
    # scaling a vector (or the dot metric's norms) never changes its bucket
    np.testing.assert_array_equal(cross_polytope_hash(3.5 * vectors, rotations, 2), codes)


def test_probe_order_is_nearest_vertex_first():
    projection = np.array([0.1, -0.9, 0.5, -0.3, 0.0], np.float32)
    buckets, values = np.empty(4, np.int64), np.empty(4, np.float32)
    assert _probe_buckets(projection, 0, 5, 4, buckets, values) == 4
    # vertex scores: +e1 is -0.9 away, so -e1 (bucket 1 + 5) first, then +e2, -e3, +e0
    assert buckets.tolist() == [6, 2, 8, 0]
    np.testing.assert_allclose(values, [0.9, 0.5, 0.3, 0.1])
    # the first probe is the hash of the same projection: stored vectors are found first
    codes = np.empty((1, 1), np.int32)
    cross_polytope_codes(projection[None, :], 1, codes, 0)
    assert codes[0, 0] == buckets[0]



def test_one_probe_is_the_own_bucket():
    # the one-probe shortcut must pick what the general multi-probe loop puts first
    rng = np.random.default_rng(3)
    buckets, values = np.empty(3, np.int64), np.empty(3, np.float32)
    one_bucket, one_value = np.empty(1, np.int64), np.empty(1, np.float32)
    for _ in range(200):
        projection = rng.standard_normal(14).astype(np.float32)  # two tables of 7 coordinates
        for base in (0, 7):
            assert _probe_buckets(projection, base, 7, 3, buckets, values) == 3
            assert _probe_buckets(projection, base, 7, 1, one_bucket, one_value) == 1
            assert (one_bucket[0], one_value[0]) == (buckets[0], values[0])
    assert _probe_buckets(np.array([0.2, -0.7, 0.7], np.float32), 0, 3, 1, one_bucket, one_value) == 1
    assert one_bucket[0] == 4  # a tie in magnitude goes to the lower coordinate: -e1

@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_every_stored_vector_finds_itself(metric):
    vectors = gaussian_mixture(2000, 16, clusters=20, std=1.0, seed=0)
    index = CrossPolytopeLSHIndex(metric=metric, num_tables=4, projected_dim=16, num_probes=1, min_votes=4)
    index.build(vectors)
    _, ids = index.search(vectors[:300], 1 if metric == "cosine" else 10)
    if metric == "cosine":
        np.testing.assert_array_equal(ids[:, 0].numpy(), np.arange(300))
    else:  # a longer vector in the same buckets may outscore it, but it is always a candidate
        assert all(row in ids[row].tolist() or index.last_candidates[row] > 10 for row in range(300))


@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_probing_every_bucket_with_one_vote_is_exact(random_data, metric):
    vectors, queries = random_data
    index = CrossPolytopeLSHIndex(
        metric=metric, num_tables=1, projected_dim=6, num_probes=12, min_votes=1, max_candidates=10_000
    ).build(vectors)
    scores, ids = index.search(queries, 10)
    ref_scores, ref_rows = brute_force(queries, vectors, 10, metric)
    np.testing.assert_array_equal(ids.numpy(), ref_rows)
    np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-4, atol=1e-4)
    assert (index.last_candidates == len(vectors)).all()


def test_votes_rank_candidates_and_the_cap_holds():
    # 5000 points in 50 overlapping clusters, as in test_lsh. Measured when written, over
    # 3 data seeds x 2 rotation seeds: recall@10 0.914-0.948 scoring ~275 rows (5.5%)
    # with 1 probe, 0.994-0.998 (~730 rows) with 2, 1.0 with 3; with 3 probes capped at
    # the 50 most-voted rows, 0.725-0.751.
    vectors = gaussian_mixture(5000, 16, clusters=50, std=1.0, seed=0)
    queries = gaussian_mixture(200, 16, clusters=50, std=1.0, seed=1)
    _, true = ExactIndex(metric="cosine").build(vectors).search(queries, 10)
    index = CrossPolytopeLSHIndex(num_tables=16, projected_dim=16, num_probes=1, min_votes=3).build(vectors)
    recalls, scored = [], []
    for probes in (1, 2):
        index.num_probes = probes
        recalls.append(recall_at_k(index.search(queries, 10)[1], true))
        scored.append(float(index.last_candidates.float().mean()))
    assert 0.85 <= recalls[0] < recalls[1]
    assert recalls[1] >= 0.97
    assert scored[0] < scored[1] < 0.25 * len(vectors)
    index.set_params(max_candidates=50, num_probes=3)  # only the 50 most-voted rows are scored
    capped = recall_at_k(index.search(queries, 10)[1], true)
    assert index.last_candidates.max() <= 50
    assert 0.6 < capped < recalls[1]



def _reference_votes(index, queries):
    """``(Q, N)`` votes per row, recomputed in numpy from the index's rotations and tables."""
    table_rows, offsets = index._tables
    width = index.projected_dim
    projected = (torch.from_numpy(queries) @ index._rotations).numpy()
    votes = np.zeros((len(queries), len(index)), np.int64)
    for qi in range(len(queries)):
        for t in range(index.num_tables):
            y = projected[qi, t * width : (t + 1) * width]
            for bucket in np.argsort(-np.concatenate([y, -y]), kind="stable")[: index.num_probes]:
                votes[qi, table_rows[t, offsets[t, bucket] : offsets[t, bucket + 1]]] += 1
    return votes


def test_the_cap_keeps_the_most_voted_rows():
    # With rerank=0 and k = max_candidates every candidate is scored and returned, so the
    # results are the candidate set: all rows above the level where the cap falls, then
    # rows at that level up to the cap (not a higher threshold that keeps far fewer).
    vectors = gaussian_mixture(3000, 16, clusters=30, std=1.0, seed=2)
    queries = gaussian_mixture(6, 16, clusters=30, std=1.0, seed=3)
    index = CrossPolytopeLSHIndex(num_tables=12, projected_dim=16, num_probes=2, min_votes=2, rerank=0,
                                  max_candidates=40).build(vectors)
    _, rows = index.search(queries, 40)
    votes = _reference_votes(index, queries)
    assert (index.last_candidates == 40).all()
    for qi in range(len(queries)):
        passing = [(votes[qi] >= v).sum() for v in range(votes[qi].max() + 2)]
        assert passing[2] > 40  # the cap binds for every query here
        level = next(v for v in range(2, len(passing)) if passing[v] <= 40)
        found = set(rows[qi].tolist())
        assert len(found) == 40 and -1 not in found
        assert set(np.flatnonzero(votes[qi] >= level).tolist()) <= found
        assert min(votes[qi, list(found)]) == level - 1
    # uncapped: exactly the rows with at least min_votes votes
    index.set_params(max_candidates=3000)
    index.search(queries, 10)
    np.testing.assert_array_equal(index.last_candidates.numpy(), (votes >= 2).sum(axis=1))

def test_exclusions_and_padding():
    vectors = gaussian_mixture(300, 8, clusters=3, std=0.3, seed=5)
    index = CrossPolytopeLSHIndex(num_tables=2, projected_dim=8, num_probes=1, min_votes=2)
    index.build(vectors, ids=np.arange(300) + 1)
    scores, ids = index.search(vectors[:2], 5)
    _, ids_x = index.search(vectors[:2], 5, exclude=[ids[0, :2].tolist(), []])
    assert not set(ids[0, :2].tolist()) & set(ids_x[0].tolist())
    assert ids_x[0, :3].tolist() == ids[0, 2:].tolist()
    assert torch.equal(ids_x[1], ids[1])
    # one table, one probe: a query sees one bucket, so asking for all 300 pads with -1
    lone = CrossPolytopeLSHIndex(num_tables=1, projected_dim=8, num_probes=1).build(vectors)
    scores, ids = lone.search(vectors[:1], 300)
    found = int(lone.last_candidates[0])
    assert 0 < found < 300
    assert (ids[0, found:] == -1).all() and torch.isinf(scores[0, found:]).all()


def test_params_and_factory():
    index = index_factory("cplsh:tables=8,dim=16,probes=3,votes=2", dim=8, metric="dot")
    assert isinstance(index, CrossPolytopeLSHIndex)
    assert (index.num_tables, index.projected_dim, index.num_probes, index.min_votes) == (8, 16, 3, 2)
    with pytest.raises(ConfigError, match=r"CrossPolytopeLSHIndex has no parameter 'num_bits'; valid parameters"):
        index_factory("cplsh:num_bits=12")
    with pytest.raises(ConfigError, match=r"min_votes must be in \[1, 255\], got 0"):
        CrossPolytopeLSHIndex(min_votes=0)
    with pytest.raises(ConfigError, match="has no parameter 'votes'"):
        CrossPolytopeLSHIndex().set_params(votes=2)
    index.build(np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32))
    index.min_votes = 1  # a search parameter
    with pytest.raises(ConfigError, match=r"\['projected_dim'\] are construction parameters"):
        index.projected_dim = 32


def test_load_refuses_damaged_tables(tmp_path):
    index = CrossPolytopeLSHIndex(num_tables=2, projected_dim=4).build(np.eye(6, 5, dtype=np.float32) + 0.1)
    path = tmp_path / "cp.npz"
    index.save(path)
    arrays = dict(np.load(path))
    arrays["state.table_rows"] = arrays["state.table_rows"] + 7
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError, match="'table_rows' hold rows outside 0..5"):
        CrossPolytopeLSHIndex.load(tmp_path / "bad.npz")
    arrays["state.table_rows"] = arrays["state.table_rows"][:1]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(CheckpointError, match=r"'table_rows' should have shape \(2, 6\), found \(1, 6\)"):
        CrossPolytopeLSHIndex.load(tmp_path / "short.npz")
