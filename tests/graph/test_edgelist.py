import numpy as np
import pytest

from recembed.errors import ConfigError, DataFormatError
from recembed.graph import Graph
from recembed.graph import edgelist
from recembed.graph.edgelist import read_edgelist


def write(tmp_path, text, name="g.txt", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return str(path)


def test_integer_ids_map_to_sorted_indices(tmp_path):
    path = write(tmp_path, "# header\n10 20\n\n20\t5   # trailing comment\n-3 10\n")
    edges = read_edgelist(path)
    assert edges.node_ids.tolist() == [-3, 5, 10, 20]
    assert edges.node_ids.dtype == np.int64
    assert edges.src.tolist() == [2, 3, 0]
    assert edges.dst.tolist() == [3, 1, 2]
    assert edges.weights is None


def test_sparse_large_integer_ids(tmp_path):
    path = write(tmp_path, "1000000000000 5\n5 -7\n-7 1000000000000\n")
    edges = read_edgelist(path)
    assert edges.node_ids.tolist() == [-7, 5, 10**12]
    assert edges.src.tolist() == [2, 1, 0] and edges.dst.tolist() == [1, 0, 2]


def test_string_ids_and_weights(tmp_path):
    path = write(tmp_path, "alice bob 1.5\nbob carol 2e-1\ncarol 7 3\n")
    edges = read_edgelist(path)
    assert edges.node_ids.tolist() == ["7", "alice", "bob", "carol"]
    assert edges.src.tolist() == [1, 2, 3] and edges.dst.tolist() == [2, 3, 0]
    np.testing.assert_allclose(edges.weights, [1.5, 0.2, 3.0])


def test_delimiter_strips_spaces_and_allows_spaces_inside_ids(tmp_path):
    path = write(tmp_path, "new york, boston ,2\r\nboston,paris,1\n")
    edges = read_edgelist(path, delimiter=",")
    assert edges.node_ids.tolist() == ["boston", "new york", "paris"]
    np.testing.assert_allclose(edges.weights, [2.0, 1.0])


def test_utf8_ids_and_bom(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf" + "zoë émile\némile zoë\n".encode("utf-8"))
    edges = read_edgelist(path)
    assert edges.node_ids.tolist() == ["zoë", "émile"]


def test_last_line_without_newline(tmp_path):
    edges = read_edgelist(write(tmp_path, "1 2\n2 3"))
    assert edges.src.tolist() == [0, 1] and edges.dst.tolist() == [1, 2]


def test_small_blocks_give_the_same_result_and_line_numbers(tmp_path, monkeypatch):
    lines = [f"node{i % 13} node{(i * 7) % 13} {i + 1}" for i in range(40)]
    path = write(tmp_path, "# c\n" + "\n".join(lines) + "\n")
    expected = read_edgelist(path)
    monkeypatch.setattr(edgelist, "_BLOCK_BYTES", 5)  # shorter than a line
    got = read_edgelist(path)
    assert got.node_ids.tolist() == expected.node_ids.tolist()
    assert np.array_equal(got.src, expected.src) and np.array_equal(got.dst, expected.dst)
    assert np.array_equal(got.weights, expected.weights)
    bad = write(tmp_path, "# c\n" + "\n".join(lines[:30]) + "\na b c d\n", name="bad.txt")
    with pytest.raises(DataFormatError, match=r"bad.txt:32: expected 3 fields"):
        read_edgelist(bad)


@pytest.mark.parametrize(
    "text, kwargs, message",
    [
        ("1 2\n2 3 4\n", {}, r":2: expected 2 fields \('u v'\) but found 3"),
        ("1 2 1\n2 3\n", {}, r":2: expected 3 fields \('u v w'\) but found 2"),
        ("1\n", {}, r":1: the first edge line has 1 fields"),
        ("1 2\n", {"weighted": True}, r":1: expected 3 fields"),
        ("1 2 3\n", {"weighted": False}, r":1: expected 2 fields"),
        ("1 2 1\n\n2 3 heavy\n", {}, r":3: weight 'heavy' is not a number"),
        ("1 2 1\n2 3 -1\n", {}, r":2: weight -1.0 is not allowed"),
        ("1 2 0\n", {}, r":1: weight 0.0 is not allowed"),
        ("1 2 inf\n", {}, r":1: weight inf is not allowed"),
        ("1,,2\n", {"delimiter": ","}, r":1: empty field"),
        ("# only comments\n\n", {}, "no edges found"),
    ],
)
def test_malformed_files_name_the_line_and_reason(tmp_path, text, kwargs, message):
    path = write(tmp_path, text)
    with pytest.raises(DataFormatError, match=message) as info:
        read_edgelist(path, **kwargs)
    assert info.value.path == path


def test_missing_file_is_a_data_format_error(tmp_path):
    with pytest.raises(DataFormatError, match="cannot open"):
        read_edgelist(str(tmp_path / "absent.txt"))


@pytest.mark.parametrize("kwargs", [{"delimiter": "::"}, {"comments": ""}, {"delimiter": "#"}, {"weighted": 1}])
def test_bad_reader_options(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        read_edgelist(write(tmp_path, "1 2\n"), **kwargs)


def test_graph_from_edgelist_file_keeps_the_id_map(tmp_path):
    path = write(tmp_path, "b a 2\na c 1\nc c 5\n")
    g = Graph.from_edgelist_file(path, directed=True)
    assert g.node_keys() == ["a", "b", "c"]
    assert g.directed and g.num_self_loops_dropped == 1
    assert g.neighbors(g.index_of("b")).tolist() == [g.index_of("a")]
    assert g.weights.tolist() == [1.0, 2.0]
