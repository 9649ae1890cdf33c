import numpy as np
import pytest

from recembed.errors import ConfigError, InvalidDtypeError, ShapeMismatchError
from recembed.retrieval import ExactIndex, FaissIndex, HnswlibIndex, LSHIndex, index_factory, recall_at_k
from recembed.retrieval.factory import parse_spec


def test_specs_build_the_right_index_with_the_right_parameters():
    exact = index_factory("exact", dim=8, metric="cosine")
    assert type(exact) is ExactIndex and exact.metric == "cosine" and exact.dim == 8
    assert index_factory("exact:chunk_size=1024", 8).chunk_size == 1024
    lsh = index_factory("lsh:tables=16,bits=12,probes=8", dim=64, metric="cosine")
    assert isinstance(lsh, LSHIndex)
    assert (lsh.num_tables, lsh.num_bits, lsh.num_probes, lsh.metric) == (16, 12, 8, "cosine")
    assert index_factory("LSH: num_tables = 3 , seed=5", 4).get_params()["seed"] == 5
    faiss = index_factory("faiss:IVF16,Flat", 8)
    assert isinstance(faiss, FaissIndex) and faiss.spec == "IVF16,Flat"
    hnsw = index_factory("hnswlib:M=12,ef=30", 8)
    assert isinstance(hnsw, HnswlibIndex) and (hnsw.M, hnsw.ef_search) == (12, 30)
    assert parse_spec("exact:flag=true,x=0.5,name=abc") == ("exact", {"flag": True, "x": 0.5, "name": "abc"})


def test_factory_dim_is_enforced():
    index = index_factory("exact", dim=8)
    with pytest.raises(ShapeMismatchError, match="dimension 4 but the index holds vectors of dimension 8"):
        index.build(np.zeros((3, 4), np.float32))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("annoy", "unknown index 'annoy'"),
        ("lsh:tablez=3", r"LSHIndex has no parameter 'tablez'; valid parameters: \['num_bits'"),
        ("lsh:tables", "expected key=value"),
        ("lsh:tables=3,tables=4", "given twice"),
        ("lsh:metric=dot", "not inside the spec"),
        ("faiss:", "needs a faiss factory string"),
        ("", "non-empty string"),
        ("lsh:tables=0", r"num_tables must be in \[1, 1024\], got 0"),
    ],
)
def test_bad_specs_raise(spec, message):
    with pytest.raises(ConfigError, match=message):
        index_factory(spec, dim=4)


def test_bad_factory_arguments_raise():
    with pytest.raises(ConfigError, match="metric must be one of"):
        index_factory("exact", 4, metric="l2")
    with pytest.raises(ConfigError, match="dim must be a positive int"):
        index_factory("exact", 0)


def test_recall_at_k():
    found = np.array([[1, 2, 3], [4, 5, -1], [7, 8, 9]])
    true = np.array([[3, 2, 9], [4, 6, 7], [-1, -1, -1]])
    assert recall_at_k(found, true) == pytest.approx((2 / 3 + 1 / 3) / 2)  # the all -1 query is skipped
    assert recall_at_k(found[:, :1], true[:, :1]) == 0.5
    assert recall_at_k([[1, 1]], [[1, 2]]) == 0.5  # a repeated find counts once
    assert np.isnan(recall_at_k(np.zeros((0, 3), np.int64), np.zeros((0, 3), np.int64)))
    with pytest.raises(ShapeMismatchError, match="2 queries but true_ids has 1"):
        recall_at_k(found[:2], true[:1])
    with pytest.raises(InvalidDtypeError):
        recall_at_k(found.astype(float), true)
