import numpy as np
import pytest

from recembed.errors import (
    ConfigError,
    DataFormatError,
    IdOutOfRangeError,
    InvalidDtypeError,
    InvalidIdError,
    ShapeMismatchError,
    UnknownKeyError,
)
from recembed.graph import Graph


def test_undirected_csr_rows_are_sorted_and_symmetric():
    g = Graph.from_edges([2, 0, 0, 3], [0, 1, 3, 1])
    assert g.indptr.tolist() == [0, 3, 5, 6, 8]
    assert g.indices.tolist() == [1, 2, 3, 0, 3, 0, 0, 1]
    assert g.indptr.dtype == np.int64 and g.indices.dtype == np.int32
    assert g.weights is None and not g.directed
    assert (g.num_nodes, g.num_edges, g.num_arcs) == (4, 4, 8)
    assert g.degrees().tolist() == [3, 2, 1, 2]
    assert g.has_edge(1, 3) and g.has_edge(3, 1) and not g.has_edge(1, 2)


def test_directed_csr_keeps_arc_direction():
    g = Graph.from_edges([0, 0, 2], [2, 1, 0], directed=True)
    assert g.neighbors(0).tolist() == [1, 2]
    assert g.neighbors(1).tolist() == []
    assert g.neighbors(2).tolist() == [0]
    assert g.num_edges == 3 and g.has_edge(2, 0) and not g.has_edge(1, 0)


def test_self_loops_dropped_and_duplicates_merged_with_summed_weights():
    g = Graph.from_edges([0, 1, 0, 1, 2], [1, 0, 1, 1, 0], weights=[1.0, 2.0, 0.5, 9.0, 4.0])
    # 0-1 appears three times (both directions): weights 1 + 2 + 0.5; the loop 1-1 is dropped.
    assert g.num_self_loops_dropped == 1
    assert g.indices.tolist() == [1, 2, 0, 0]
    assert g.weights.dtype == np.float32
    assert g.weights.tolist() == [3.5, 4.0, 3.5, 4.0]


def test_directed_duplicates_merge_per_direction():
    g = Graph.from_edges([0, 0, 1], [1, 1, 0], directed=True)
    assert g.indices.tolist() == [1, 0] and g.num_edges == 2


def test_num_nodes_adds_isolated_nodes():
    g = Graph.from_edges([0], [1], num_nodes=4)
    assert g.num_nodes == 4 and g.degrees().tolist() == [1, 1, 0, 0]


def test_cumulative_weights_run_over_all_arcs():
    g = Graph.from_edges([0, 0, 1], [1, 2, 2], weights=[1.0, 2.0, 4.0], directed=True)
    np.testing.assert_allclose(g.cumulative_weights(), [1.0, 3.0, 7.0])
    with pytest.raises(ConfigError, match="weighted"):
        Graph.from_edges([0], [1]).cumulative_weights()


def test_index_of_and_node_keys():
    g = Graph.from_edges([0, 1], [1, 2], node_ids=np.array(["a", "b", "c"]))
    assert g.node_keys() == ["a", "b", "c"]
    assert g.index_of("c") == 2 and g.index_of(np.str_("b")) == 1
    with pytest.raises(UnknownKeyError, match="'z'"):
        g.index_of("z")
    plain = Graph.from_edges([0], [1])
    assert plain.node_keys() == [0, 1] and plain.index_of(1) == 1
    with pytest.raises(UnknownKeyError):
        plain.index_of(2)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(src=[0, -1], dst=[1, 2]), InvalidIdError, r"src\[1\] = -1 is negative"),
        (dict(src=[0, 1], dst=[1, 5], num_nodes=3), IdOutOfRangeError, r"dst\[1\] = 5 is out of range"),
        (dict(src=[0.0, 1.0], dst=[1, 2]), InvalidDtypeError, "integer node ids"),
        (dict(src=[0, 1], dst=[1]), ShapeMismatchError, "same length"),
        (dict(src=[0, 1], dst=[1, 2], weights=[1.0]), ShapeMismatchError, "weights"),
        (dict(src=[0, 1], dst=[1, 2], weights=[1.0, -2.0]), DataFormatError, r"weights\[1\] = -2.0"),
        (dict(src=[0, 1], dst=[1, 2], weights=[1.0, np.nan]), DataFormatError, "finite"),
        (dict(src=[0, 1], dst=[1, 2], weights=[0.0, 1.0]), DataFormatError, "> 0"),
        (dict(src=[], dst=[]), ConfigError, "empty"),
        (dict(src=[0], dst=[1], num_nodes=0), ConfigError, "num_nodes = 0"),
    ],
)
def test_bad_edges_raise_named_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        Graph.from_edges(**kwargs)


def test_neighbors_rejects_bad_index():
    g = Graph.from_edges([0], [1])
    with pytest.raises(IdOutOfRangeError, match="0..1"):
        g.neighbors(2)
    with pytest.raises(InvalidIdError):
        g.neighbors(-1)
