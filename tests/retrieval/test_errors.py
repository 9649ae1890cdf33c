import numpy as np
import pytest
import torch

from recembed.errors import (
    ConfigError,
    DataFormatError,
    InvalidDtypeError,
    InvalidIdError,
    JaggedStructureError,
    ShapeMismatchError,
)
from recembed.retrieval import CrossPolytopeLSHIndex, ExactIndex, FaissIndex, HnswlibIndex, LSHIndex

ALL_INDEXES = [ExactIndex, LSHIndex, CrossPolytopeLSHIndex, FaissIndex, HnswlibIndex]
NATIVE = {FaissIndex: "faiss", HnswlibIndex: "hnswlib"}


def _filled(cls, rows=20, dim=4):
    if cls in NATIVE:
        pytest.importorskip(NATIVE[cls])
    return cls().build(np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32))


@pytest.mark.parametrize("cls", ALL_INDEXES, ids=lambda c: c.__name__)
def test_bad_queries_and_k(cls):
    index = _filled(cls)
    good = np.zeros((2, 4), np.float32)
    for bad_value in (np.nan, np.inf, -np.inf):
        queries = good.copy()
        queries[1, 2] = bad_value
        with pytest.raises(DataFormatError, match="queries contain NaN or infinite values .* first at row 1"):
            index.search(queries, 3)
    with pytest.raises(ShapeMismatchError, match="dimension 5 but the index holds vectors of dimension 4"):
        index.search(np.zeros((2, 5), np.float32), 3)
    with pytest.raises(ShapeMismatchError, match=r"2-D .*queries\[None\]"):
        index.search(np.zeros(4, np.float32), 3)
    with pytest.raises(ConfigError, match="k=21 is larger than the index size 20"):
        index.search(good, 21)
    with pytest.raises(ConfigError, match="k must be >= 1, got 0"):
        index.search(good, 0)
    with pytest.raises(ConfigError, match="k must be an int"):
        index.search(good, 2.0)
    with pytest.raises(InvalidDtypeError, match="float dtype"):
        index.search(np.zeros((2, 4), np.int64), 3)
    assert isinstance(DataFormatError("x"), ValueError)


@pytest.mark.parametrize("cls", ALL_INDEXES, ids=lambda c: c.__name__)
def test_bad_vectors_and_ids(cls):
    index = _filled(cls)
    with pytest.raises(DataFormatError, match="vectors contain NaN"):
        index.add(np.full((1, 4), np.nan, np.float32), ids=[100])
    with pytest.raises(InvalidIdError, match=r"already in the index, e.g. \[3\]"):
        index.add(np.ones((2, 4), np.float32), ids=[100, 3])
    with pytest.raises(InvalidIdError, match=r"repeat within the batch, e.g. \[7\]"):
        index.add(np.ones((2, 4), np.float32), ids=[7, 7])
    with pytest.raises(InvalidIdError, match="must be >= 0"):
        index.add(np.ones((1, 4), np.float32), ids=[-1])
    with pytest.raises(InvalidDtypeError, match="integer dtype"):
        index.add(np.ones((1, 4), np.float32), ids=[1.5])
    with pytest.raises(ShapeMismatchError, match="ids has 1 entries but there are 2 vectors"):
        index.add(np.ones((2, 4), np.float32), ids=[100])
    with pytest.raises(ShapeMismatchError, match="dimension 3"):
        index.add(np.ones((1, 3), np.float32), ids=[100])
    assert len(index) == 20  # failed adds change nothing
    index.add(np.ones((1, 4), np.float32), ids=[100])
    assert len(index) == 21


@pytest.mark.parametrize("cls", ALL_INDEXES, ids=lambda c: c.__name__)
def test_empty_index_cannot_be_searched(cls):
    with pytest.raises(ConfigError, match="empty index"):
        cls().search(np.zeros((1, 4), np.float32), 1)


@pytest.mark.parametrize("cls", ALL_INDEXES, ids=lambda c: c.__name__)
def test_unknown_parameters_raise(cls):
    index = cls()
    with pytest.raises(ConfigError, match=r"has no parameter 'num_probe'; valid parameters: \['"):
        index.set_params(num_probe=8)
    with pytest.raises(ConfigError, match="has no parameter 'nprobe'"):
        index.nprobe = 8
    with pytest.raises(ConfigError, match="read-only"):
        index.dim = 3
    with pytest.raises(TypeError):
        cls(bogus=1)
    with pytest.raises(ConfigError, match="metric must be one of"):
        cls(metric="l2")


def test_parameter_values_and_construction_parameters():
    index = LSHIndex()
    with pytest.raises(ConfigError, match=r"num_bits must be in \[1, 30\], got 31"):
        index.num_bits = 31
    with pytest.raises(ConfigError, match="num_probes must be an int"):
        index.set_params(num_probes="8")
    index.set_params(num_bits=10, num_probes=4)  # allowed while empty
    index.build(np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32))
    index.num_probes = 9  # search parameters change any time
    assert index.get_params()["num_probes"] == 9
    with pytest.raises(ConfigError, match=r"\['num_tables'\] are construction parameters .* 50 vectors"):
        index.num_tables = 3
    assert index.num_tables == 48  # unchanged: still the default
    with pytest.raises(ConfigError, match="chunk_size must be >= 1"):
        ExactIndex(chunk_size=0)


def test_bad_exclusions():
    index = _filled(ExactIndex)
    queries = np.zeros((2, 4), np.float32)
    with pytest.raises(ShapeMismatchError, match="exclude has 1 per-query lists but there are 2 queries"):
        index.search(queries, 3, exclude=[[1]])
    with pytest.raises(ShapeMismatchError, match="per-query id lists"):
        index.search(queries, 3, exclude=[1, 2])
    with pytest.raises(JaggedStructureError, match="sum to 3 but there are 2 flat ids"):
        index.search(queries, 3, exclude=(torch.tensor([1, 2]), torch.tensor([1, 2])))
    with pytest.raises(ShapeMismatchError, match="lengths has 3 entries but there are 2 queries"):
        index.search(queries, 3, exclude=(torch.tensor([1, 2]), torch.tensor([1, 1, 0])))
    with pytest.raises(InvalidDtypeError, match="integer dtype"):
        index.search(queries, 3, exclude=[[1.0], []])


def test_a_refused_build_keeps_the_old_contents():
    index = _filled(ExactIndex)
    bad = np.ones((5, 4), np.float32)
    bad[2, 1] = np.nan
    with pytest.raises(DataFormatError):
        index.build(bad)
    with pytest.raises(InvalidIdError):
        index.build(np.ones((2, 4), np.float32), ids=[1, 1])
    assert len(index) == 20
    assert index.search(np.ones((1, 4), np.float32), 20)[1].sort().values.tolist() == [list(range(20))]
