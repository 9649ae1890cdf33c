import os
import zipfile

import numpy as np
import pytest
import torch

from recembed.errors import CheckpointError
from recembed.retrieval import CrossPolytopeLSHIndex, ExactIndex, FaissIndex, HnswlibIndex, LSHIndex, VectorIndex, index_factory

from .conftest import gaussian_mixture


def _indexes():
    yield ExactIndex(metric="cosine", chunk_size=100)
    yield LSHIndex(num_tables=4, num_bits=9, num_probes=5, seed=3)
    yield CrossPolytopeLSHIndex(num_tables=6, projected_dim=8, num_probes=3, min_votes=2, seed=3)


def _round_trip(index, tmp_path):
    vectors = gaussian_mixture(800, 10, clusters=8, std=1.0, seed=0)
    queries = gaussian_mixture(30, 10, clusters=8, std=1.0, seed=1)
    index.build(vectors, ids=np.arange(800) * 3 + 1)
    before = index.search(queries, 7, exclude=[[1, 4]] * 30)
    path = tmp_path / "index.npz"
    index.save(path)
    assert sorted(os.listdir(tmp_path)) == ["index.npz"]  # no temp file left behind
    for loader in (type(index), VectorIndex):
        loaded = loader.load(path)
        assert type(loaded) is type(index)
        assert loaded.get_params() == index.get_params()
        assert len(loaded) == 800 and loaded.dim == 10
        after = loaded.search(queries, 7, exclude=[[1, 4]] * 30)
        assert torch.equal(before[1], after[1])
        assert torch.equal(before[0], after[0])
    return loaded


@pytest.mark.parametrize("index", list(_indexes()), ids=lambda i: type(i).__name__)
def test_round_trip_gives_identical_results(index, tmp_path):
    loaded = _round_trip(index, tmp_path)
    loaded.add(np.ones((1, 10), np.float32), ids=[5])  # a loaded index keeps working
    assert len(loaded) == 801


def test_faiss_round_trip(tmp_path):
    pytest.importorskip("faiss")
    _round_trip(FaissIndex(spec="HNSW16", metric="cosine", search_params={"efSearch": 32}), tmp_path)


def test_hnswlib_round_trip(tmp_path):
    pytest.importorskip("hnswlib")
    _round_trip(HnswlibIndex(M=8, ef_construction=50, ef_search=20), tmp_path)


def test_empty_index_round_trip(tmp_path):
    ExactIndex(chunk_size=5).save(tmp_path / "empty.npz")
    loaded = ExactIndex.load(tmp_path / "empty.npz")
    assert len(loaded) == 0 and loaded.dim is None and loaded.chunk_size == 5
    index_factory("lsh", dim=6).save(tmp_path / "empty_lsh.npz")
    assert VectorIndex.load(tmp_path / "empty_lsh.npz").dim == 6


@pytest.mark.parametrize("as_tensor", [False, True])
def test_index_does_not_alias_the_callers_array(as_tensor):
    rng = np.random.default_rng(0)
    vectors, queries = rng.standard_normal((20, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    if as_tensor:
        vectors = torch.from_numpy(vectors)
    index = ExactIndex(metric="dot").build(vectors)
    before = index.search(queries, 3)
    vectors[:] = 0
    after = index.search(queries, 3)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])


def test_loading_the_wrong_kind_or_a_bad_file_raises(tmp_path):
    vectors = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    path = tmp_path / "exact.npz"
    ExactIndex().build(vectors).save(path)
    with pytest.raises(CheckpointError, match="holds a ExactIndex, not a LSHIndex"):
        LSHIndex.load(path)
    with pytest.raises(CheckpointError, match="no index file"):
        ExactIndex.load(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="garbage.npz"):
        ExactIndex.load(garbage)
    plain = tmp_path / "plain.npz"
    np.savez(plain, ids=np.arange(3))
    with pytest.raises(CheckpointError, match="meta_json"):
        ExactIndex.load(plain)
    # A truncated array is caught before it can mislead a search.
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    broken = tmp_path / "broken.npz"
    with zipfile.ZipFile(broken, "w") as archive:
        for name, data in entries.items():
            if name != "state.vectors.npy":
                archive.writestr(name, data)
        archive.writestr("state.vectors.npy", _npy_bytes(vectors[:10]))
    with pytest.raises(CheckpointError, match="vectors"):
        ExactIndex.load(broken)


def _npy_bytes(array):
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
