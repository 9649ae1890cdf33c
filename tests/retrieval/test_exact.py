import numpy as np
import pytest
import torch

from recembed.retrieval import ExactIndex
from recembed.retrieval.exact import chunk_topk

from .conftest import brute_force


@pytest.mark.parametrize("metric", ["dot", "cosine"])
@pytest.mark.parametrize(
    "chunk_size, query_batch_size",
    [(65536, 256), (1, 5), (7, 1), (333, 10), (1000, 37), (999, 36), (4096, 64)],
)
def test_exact_matches_numpy_brute_force(random_data, metric, chunk_size, query_batch_size):
    vectors, queries = random_data
    index = ExactIndex(metric=metric, chunk_size=chunk_size, query_batch_size=query_batch_size).build(vectors)
    scores, ids = index.search(queries, k=10)
    ref_scores, ref_rows = brute_force(queries, vectors, 10, metric)
    assert scores.dtype == torch.float32 and ids.dtype == torch.int64
    assert scores.shape == ids.shape == (37, 10)
    np.testing.assert_array_equal(ids.numpy(), ref_rows)
    np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-5, atol=1e-5)


def test_grouped_chunk_topk_equals_plain_topk():
    # 2048 columns = 32 groups of 64 >= 4k, so the grouped path is taken.
    scores = torch.randn(50, 2048, generator=torch.Generator().manual_seed(3))
    scores[4, :] = -torch.inf  # a fully excluded row
    scores[5, 100:] = -torch.inf  # a row with only 100 candidates
    values, cols = chunk_topk(scores, 10)
    ref_values, ref_cols = scores.topk(10, dim=1)
    torch.testing.assert_close(values, ref_values)
    finite = ref_values > -torch.inf
    assert torch.equal(cols[finite], ref_cols[finite])
    assert torch.equal(scores.gather(1, cols), values)


def test_custom_ids_are_returned_and_incremental_add_equals_build(random_data):
    vectors, queries = random_data
    ids = np.arange(1000, dtype=np.int64) * 7 + 3
    built = ExactIndex(chunk_size=128).build(vectors, ids)
    grown = ExactIndex(chunk_size=128)
    grown.add(vectors[:400], ids[:400])
    grown.search(queries, 5)  # a search between adds must not freeze the contents
    grown.add(torch.from_numpy(vectors[400:]), torch.from_numpy(ids[400:]))
    _, ref_rows = brute_force(queries, vectors, 5, "dot")
    for index in (built, grown):
        _, found = index.search(queries, 5)
        np.testing.assert_array_equal(found.numpy(), ids[ref_rows])
    assert len(grown) == 1000 and grown.dim == 12


@pytest.mark.parametrize("form", ["lists", "pair", "jagged"])
def test_exclusion_removes_seen_ids_in_every_form(random_data, form):
    vectors, queries = random_data
    queries = queries[:4]
    ids = np.arange(1000, dtype=np.int64) + 10_000
    _, first = brute_force(queries, vectors, 3, "cosine")
    seen_rows = [list(first[0]), [], [int(first[2, 1])], list(first[3]) + [int(first[3, 0])]]
    seen_ids = [[int(ids[r]) for r in rows] + [5] for rows in seen_rows]  # id 5 is not in the index
    if form == "lists":
        exclude = seen_ids
    else:
        flat = torch.tensor([i for group in seen_ids for i in group])
        lengths = torch.tensor([len(group) for group in seen_ids])
        if form == "pair":
            exclude = (flat, lengths)
        else:

            class Jagged:
                def values(self):
                    return flat

                def lengths(self):
                    return lengths

            exclude = Jagged()
    index = ExactIndex(metric="cosine", chunk_size=300, query_batch_size=3).build(vectors, ids)
    scores, found = index.search(queries, 10, exclude=exclude)
    ref_scores, ref_rows = brute_force(queries, vectors, 10, "cosine", exclude=seen_rows)
    np.testing.assert_array_equal(found.numpy(), ids[ref_rows])
    np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-5, atol=1e-5)
    for row, seen in enumerate(seen_ids):
        assert not set(found[row].tolist()) & set(seen)


def test_padding_when_exclusions_leave_fewer_than_k():
    vectors = np.eye(5, dtype=np.float32) + 0.1
    index = ExactIndex(chunk_size=2).build(vectors, ids=[10, 11, 12, 13, 14])
    scores, ids = index.search(vectors[:2], k=4, exclude=[[10, 11, 12], [10, 11, 12, 13, 14]])
    assert ids[0, :2].tolist() in ([13, 14], [14, 13]) and ids[0, 2:].tolist() == [-1, -1]
    assert torch.isfinite(scores[0, :2]).all() and torch.isinf(scores[0, 2:]).all()
    assert ids[1].tolist() == [-1, -1, -1, -1]
    assert (scores[1] == -torch.inf).all()


def test_zero_vector_under_cosine_scores_zero():
    vectors = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    scores, ids = ExactIndex(metric="cosine").build(vectors).search(np.array([[2.0, 0.0]], np.float32), k=3)
    assert ids.tolist() == [[1, 0, 2]]
    np.testing.assert_allclose(scores.numpy(), [[1.0, 0.0, -1.0]], atol=1e-6)


def test_search_accepts_other_float_dtypes_and_empty_query_batch(random_data):
    vectors, queries = random_data
    index = ExactIndex().build(vectors.astype(np.float64))
    scores, ids = index.search(torch.from_numpy(queries).to(torch.bfloat16), k=3)
    assert ids.shape == (37, 3)
    scores, ids = index.search(np.zeros((0, 12), np.float32), k=3)
    assert scores.shape == (0, 3) and ids.shape == (0, 3)
