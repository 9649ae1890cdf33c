"""Top-K ranking and Recall/NDCG/HitRate against brute-force Python on small data."""

import math

import numpy as np
import pytest
import torch

from recembed.errors import (
    ConfigError,
    IdOutOfRangeError,
    InvalidDtypeError,
    InvalidIdError,
    JaggedStructureError,
    ShapeMismatchError,
)
from recembed.train.ranking import (
    hit_rate_at_k,
    ndcg_at_k,
    rank_topk,
    ranking_metrics,
    recall_at_k,
)


def brute_topk(users, items, k, exclude_lists, bias=None):
    """Rows sorted by (score desc, id asc), excluded removed, padded with -1; also the scores."""
    scores = users.double() @ items.double().T
    if bias is not None:
        scores = scores + bias.double()
    ids, vals = [], []
    for u in range(users.shape[0]):
        banned = set(exclude_lists[u])
        cand = sorted((-float(scores[u, i]), i) for i in range(items.shape[0]) if i not in banned)[
            :k
        ]
        ids.append([i for _, i in cand] + [-1] * (k - len(cand)))
        vals.append([-s for s, _ in cand])
    return ids, vals


def random_lists(rng, num_users, num_items, max_len):
    return [
        rng.integers(0, num_items, size=rng.integers(0, max_len + 1)).tolist()
        for _ in range(num_users)
    ]


@pytest.mark.parametrize("seed,chunk_size", [(0, 1), (1, 3), (2, None), (3, 1000)])
def test_rank_topk_matches_brute_force_with_ties(seed, chunk_size):
    rng = np.random.default_rng(seed)
    num_users, num_items, dim, k = 13, 40, 3, 7
    # small integer vectors: exact float arithmetic and many tied scores
    users = torch.tensor(rng.integers(-2, 3, size=(num_users, dim)), dtype=torch.float64)
    items = torch.tensor(rng.integers(-2, 3, size=(num_items, dim)), dtype=torch.float64)
    bias = torch.tensor(rng.integers(0, 2, size=num_items), dtype=torch.float64)
    exclude = random_lists(rng, num_users, num_items, 12)
    got = rank_topk(users, items, k, exclude=exclude, item_bias=bias, chunk_size=chunk_size)
    expected_ids, expected_scores = brute_topk(users, items, k, exclude, bias)
    scores = users @ items.T + bias
    assert got.shape == (num_users, k) and got.dtype == torch.int64
    for u in range(num_users):
        row = got[u].tolist()
        assert not set(row) & set(exclude[u])
        assert [float(scores[u, i]) for i in row] == expected_scores[u]
        kth = expected_scores[u][-1]
        # above the K-th score the list is fully determined, including id order among ties
        strict = [i for i, s in zip(expected_ids[u], expected_scores[u]) if s > kth]
        assert row[: len(strict)] == strict
        # inside the list, equal scores appear by ascending id
        pairs = [(-float(scores[u, i]), i) for i in row]
        assert pairs == sorted(pairs)


def test_rank_topk_exact_ids_without_ties_float32():
    rng = np.random.default_rng(7)
    users = torch.tensor(rng.normal(size=(20, 8)), dtype=torch.float32)
    items = torch.tensor(rng.normal(size=(60, 8)), dtype=torch.float32)
    exclude = random_lists(rng, 20, 60, 10)
    expected, _ = brute_topk(users, items, 5, exclude)
    assert rank_topk(users, items, 5, exclude=exclude, chunk_size=6).tolist() == expected


def test_rank_topk_pads_with_minus_one_when_candidates_run_out():
    users = torch.eye(2)
    items = torch.tensor([[3.0, 0.0], [2.0, 1.0], [0.0, 5.0]])
    # user 0 sees items 0 and 2 (item 2 twice); user 1 sees everything
    got = rank_topk(users, items, 4, exclude=([0, 2, 2, 0, 1, 2], [3, 3]))
    assert got.tolist() == [[1, -1, -1, -1], [-1, -1, -1, -1]]
    assert rank_topk(users, items, 2).tolist() == [[0, 1], [2, 1]]


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.filterwarnings("ignore:Sparse invariant checks")
def test_rank_topk_exclusion_formats_agree():
    rng = np.random.default_rng(11)
    users, items = torch.randn(5, 4), torch.randn(30, 4)
    lists = random_lists(rng, 5, 30, 8)
    flat = torch.tensor([i for row in lists for i in row], dtype=torch.int64)
    lengths = torch.tensor([len(row) for row in lists])
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    csr = torch.sparse_csr_tensor(crow, flat, torch.ones(len(flat)), size=(5, 30))

    class Jagged:  # the duck type of recembed.sparse.JaggedTensor
        def values(self):
            return flat

        def lengths(self):
            return lengths

    reference = rank_topk(users, items, 6, exclude=lists)
    for form in [(flat, lengths), (flat.numpy(), lengths.numpy()), Jagged(), csr]:
        assert torch.equal(rank_topk(users, items, 6, exclude=form), reference)


def test_rank_topk_errors():
    users, items = torch.randn(3, 4), torch.randn(10, 4)
    with pytest.raises(ConfigError, match="k = 0"):
        rank_topk(users, items, 0)
    with pytest.raises(ShapeMismatchError, match="dimension 4 but item_vectors have 5"):
        rank_topk(users, torch.randn(10, 5), 2)
    with pytest.raises(ShapeMismatchError, match="exclude has 2 users but there are 3"):
        rank_topk(users, items, 2, exclude=[[1], [2]])
    with pytest.raises(IdOutOfRangeError, match="item id 10 but there are only 10 items"):
        rank_topk(users, items, 2, exclude=[[1], [10], []])
    with pytest.raises(InvalidIdError, match="-3"):
        rank_topk(users, items, 2, exclude=[[1], [-3], []])
    with pytest.raises(JaggedStructureError, match="lengths sum to 3 but there are 2"):
        rank_topk(users, items, 2, exclude=([1, 2], [1, 1, 1]))
    with pytest.raises(InvalidDtypeError, match="integer ids"):
        rank_topk(users, items, 2, exclude=[[1.5], [], []])
    with pytest.raises(ShapeMismatchError, match="item_bias has 9 entries"):
        rank_topk(users, items, 2, item_bias=torch.zeros(9))
    with pytest.raises(ConfigError, match="NaN or infinite"):
        rank_topk(torch.full((1, 4), math.nan), items, 2)
    with pytest.raises(ConfigError, match="chunk_size"):
        rank_topk(users, items, 2, chunk_size=0)
    with pytest.raises(InvalidDtypeError, match="floating point"):
        rank_topk(users.long(), items, 2)


def brute_metrics(topk_rows, relevant_lists, k):
    recalls, ndcgs, hits_any = [], [], []
    for row, rel in zip(topk_rows, relevant_lists):
        rel = set(rel)
        if not rel:
            continue
        gains = [1.0 if i in rel else 0.0 for i in row[:k]]
        recalls.append(sum(gains) / len(rel))
        dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(rel))))
        ndcgs.append(dcg / idcg)
        hits_any.append(1.0 if sum(gains) else 0.0)
    n = len(recalls)
    return sum(recalls) / n, sum(ndcgs) / n, sum(hits_any) / n, n


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    num_users, num_items, width = 25, 15, 6
    topk = torch.stack([torch.tensor(rng.permutation(num_items)[:width]) for _ in range(num_users)])
    topk[0, 4:] = -1  # a short list
    relevant = random_lists(rng, num_users, num_items, 5)  # some users have none
    for k in (1, 3, 6):
        recall, ndcg, hit, n = brute_metrics(topk.tolist(), relevant, k)
        r, g, h = (
            recall_at_k(topk, relevant, k),
            ndcg_at_k(topk, relevant, k),
            hit_rate_at_k(topk, relevant, k),
        )
        assert r.value == pytest.approx(recall, abs=1e-12)
        assert g.value == pytest.approx(ndcg, abs=1e-12)
        assert h.value == pytest.approx(hit, abs=1e-12)
        assert r.num_evaluated == n and r.num_skipped == num_users - n
        combined = ranking_metrics(topk, relevant, ks=[k])
        assert combined[f"ndcg@{k}"].value == pytest.approx(ndcg, abs=1e-12)
        assert combined[f"recall@{k}"].value == pytest.approx(recall, abs=1e-12)


def test_ndcg_hand_examples():
    # hits at ranks 2 and 3, two relevant: (1/log2 3 + 1/2) / (1 + 1/log2 3)
    expected = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(torch.tensor([[5, 3, 8]]), [[3, 8]], k=3).value == pytest.approx(expected)
    # perfect ranking: 1.0 even with more relevant items than K (ideal uses min(K, |rel|))
    assert ndcg_at_k(torch.tensor([[1, 2]]), [[1, 2, 3, 4]], k=2).value == pytest.approx(1.0)
    # single hit at rank 1 vs rank 2 of one relevant item
    assert ndcg_at_k(torch.tensor([[7, 1]]), [[7]], k=2).value == 1.0
    assert ndcg_at_k(torch.tensor([[1, 7]]), [[7]], k=2).value == pytest.approx(1 / math.log2(3))
    # a hit beyond the cut-off does not count
    assert ndcg_at_k(torch.tensor([[1, 7]]), [[7]], k=1).value == 0.0


def test_recall_uses_full_relevant_count_and_skips_users():
    topk = torch.tensor([[1, 2], [3, 4], [5, 6]])
    score = recall_at_k(topk, [[1, 2, 9, 10], [], [6]], k=2)
    assert score.value == pytest.approx((2 / 4 + 1 / 1) / 2)
    assert score.num_evaluated == 2 and score.num_skipped == 1
    assert math.isnan(score.per_user[1]) and score.per_user[0] == 0.5
    assert float(score) == score.value
    # duplicate relevant ids count once
    assert recall_at_k(topk[:1], [[1, 1, 1]], k=1).value == 1.0


def test_hit_rate_and_minus_one_is_never_a_hit():
    topk = torch.tensor([[-1, -1], [3, -1]])
    assert hit_rate_at_k(topk, [[0], [3]], k=2).value == 0.5


def test_metric_errors():
    topk = torch.tensor([[1, 2], [3, 4]])
    with pytest.raises(ConfigError, match="k = 3 but topk has only 2 columns"):
        recall_at_k(topk, [[1], [2]], k=3)
    with pytest.raises(ConfigError, match="k = 0"):
        ndcg_at_k(topk, [[1], [2]], k=0)
    with pytest.raises(ShapeMismatchError, match="relevant has 1 users but there are 2"):
        recall_at_k(topk, [[1]], k=2)
    with pytest.raises(InvalidIdError, match="lists item 2 twice"):
        recall_at_k(torch.tensor([[2, 2]]), [[1]], k=2)
    with pytest.raises(InvalidIdError, match=r"topk\[0, 1\] = -5"):
        recall_at_k(torch.tensor([[2, -5]]), [[1]], k=2)
    with pytest.raises(ConfigError, match="no user has a relevant item"):
        hit_rate_at_k(topk, [[], []], k=1)
    with pytest.raises(InvalidDtypeError, match="unsupported type"):
        recall_at_k(topk, {0: [1]}, k=1)
    with pytest.raises(JaggedStructureError, match="tuple must be"):
        recall_at_k(topk, ([1], [1], [0]), k=1)


def test_end_to_end_ranking_with_scipy_csr():
    sparse = pytest.importorskip("scipy.sparse")
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([[3.0, 0.0], [2.0, 1.0], [0.0, 5.0], [1.0, 1.0]])
    seen = sparse.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 1, 0]]))
    held_out = sparse.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 1]]))
    topk = rank_topk(users, items, 2, exclude=seen)
    assert topk.tolist() == [[1, 3], [1, 3]]
    assert recall_at_k(topk, held_out, 1).value == 0.5
    assert ndcg_at_k(topk, held_out, 2).value == pytest.approx((1 + 1 / math.log2(3)) / 2)
