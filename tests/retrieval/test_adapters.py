import numpy as np
import pytest

from recembed.errors import ConfigError
from recembed.retrieval import ExactIndex, FaissIndex, HnswlibIndex, recall_at_k

from .conftest import brute_force, gaussian_mixture


@pytest.fixture(scope="module")
def data():
    vectors = gaussian_mixture(2000, 16, clusters=20, std=1.0, seed=0)
    queries = gaussian_mixture(50, 16, clusters=20, std=1.0, seed=1)
    return vectors, queries


@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_faiss_flat_is_exact_and_filters_exclusions(data, metric):
    pytest.importorskip("faiss")
    vectors, queries = data
    ids = np.arange(2000) + 500
    index = FaissIndex(spec="Flat", metric=metric).build(vectors, ids)
    seen = [list(range(500, 520))] * 50
    scores, found = index.search(queries, 10, exclude=seen)
    ref_scores, ref_rows = brute_force(queries, vectors, 10, metric, exclude=[range(20)] * 50)
    np.testing.assert_array_equal(found.numpy(), ids[ref_rows])
    np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-4, atol=1e-4)


def test_faiss_approximate_specs(data):
    pytest.importorskip("faiss")
    vectors, queries = data
    _, true = ExactIndex(metric="cosine").build(vectors).search(queries, 10)
    hnsw = FaissIndex(spec="HNSW32", metric="cosine", search_params={"efSearch": 64}).build(vectors)
    assert recall_at_k(hnsw.search(queries, 10)[1], true) > 0.9
    lsh = FaissIndex(spec="LSH", metric="cosine").build(vectors)  # L2-only spec: ranks by Hamming distance
    scores, found = lsh.search(queries, 10)
    assert (np.diff(scores.numpy(), axis=1) <= 0).all() and recall_at_k(found, true) > 0.1
    ivf = FaissIndex(spec="IVF8,Flat", metric="cosine", search_params={"nprobe": 8}).build(vectors)
    assert recall_at_k(ivf.search(queries, 10)[1], true) == 1.0  # all 8 lists probed: exhaustive


def test_faiss_bad_spec_and_search_params(data):
    pytest.importorskip("faiss")
    vectors, _ = data
    with pytest.raises(ConfigError, match="cannot build spec 'NoSuchIndex'"):
        FaissIndex(spec="NoSuchIndex").build(vectors)
    index = FaissIndex(spec="HNSW16").build(vectors)
    with pytest.raises(ConfigError, match="does not accept search parameter nprobe"):
        index.search_params = {"nprobe": 4}
    assert index.search_params == {}  # the refused value was rolled back


@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_hnswlib_recall_exclusion_and_growth(data, metric):
    pytest.importorskip("hnswlib")
    vectors, queries = data
    index = HnswlibIndex(M=16, ef_construction=100, ef_search=50, metric=metric)
    index.add(vectors[:1500])
    index.add(vectors[1500:])  # grows past the first capacity
    exclude = [[int(i)] for i in ExactIndex(metric=metric).build(vectors).search(queries, 1)[1][:, 0]]
    ref_scores, ref_rows = brute_force(queries, vectors, 10, metric, exclude=exclude)
    scores, found = index.search(queries, 10, exclude=exclude)
    assert recall_at_k(found, ref_rows) > 0.9
    for row, seen in enumerate(exclude):
        assert seen[0] not in found[row].tolist()
    hit = found.numpy() == ref_rows
    np.testing.assert_allclose(scores.numpy()[hit], ref_scores[hit], rtol=1e-4, atol=1e-4)
