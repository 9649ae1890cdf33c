import gzip

import numpy as np
import pytest

from recembed.data import (
    DenseFeature,
    FeatureSpec,
    LabelSpec,
    SparseFeature,
    TabularReader,
    Vocabulary,
    read_csv,
)
from recembed.data.encoding import hash_tokens
from recembed.data.row_parsing import RowParser
from recembed.errors import ConfigError, DataFormatError, UnknownKeyError

CSV = """clicked,userId,age,genres,ts
1,u1,3,a|b,100
0,u2,,c,101
1,u1,10,,102
0,u3,0.5,b|b|c,103
"""


def _spec(**kw):
    parts = dict(
        sparse=[
            SparseFeature("user", "userId"),
            SparseFeature("genres", separator="|", vocab="hash", num_buckets=1000),
        ],
        dense=[DenseFeature("age", transform="log1p", fill=-1.0)],
        label=LabelSpec("clicked"),
        timestamp="ts",
    )
    parts.update(kw)
    return FeatureSpec(**parts)


def test_csv_values_vocab_hash_and_multi_id_lengths(collect, write):
    reader = read_csv(write("clicks.csv", CSV), _spec(), batch_size=3)
    got = collect(reader)
    assert got["labels"].tolist() == [1, 0, 1, 0]
    np.testing.assert_allclose(got["dense"][:, 0], [np.log1p(3), -1.0, np.log1p(10), np.log1p(0.5)], rtol=1e-6)
    assert got["timestamps"].tolist() == [100, 101, 102, 103]
    # u1 is most frequent -> row 1; u2/u3 tie on count and sort by token.
    assert reader.vocabularies["user"].tokens == ["u1", "u2", "u3"]
    assert got["sparse"]["user"] == [[1], [2], [1], [3]]
    a, b, c = hash_tokens(["a", "b", "c"], 1000).tolist()
    assert got["sparse"]["genres"] == [[a, b], [c], [], [b, b, c]]
    assert all(1 <= r < 1000 for r in (a, b, c))
    assert reader.num_rows == {"user": 4, "genres": 1000}


def test_batches_have_requested_size_and_drop_last(write):
    path = write("clicks.csv", CSV)
    assert [len(b) for b in read_csv(path, _spec(), batch_size=3)] == [3, 1]
    assert [len(b) for b in read_csv(path, _spec(), batch_size=3, drop_last=True)] == [3]


def test_prebuilt_vocabulary_maps_unknown_tokens_to_row_0(collect, write):
    vocab = {"user": Vocabulary(["u3"])}
    reader = read_csv(write("clicks.csv", CSV), _spec(), vocabularies=vocab)
    assert collect(reader)["sparse"]["user"] == [[0], [0], [0], [1]]
    assert reader.num_rows["user"] == 2


def test_single_valued_missing_field_goes_to_row_0(collect, write):
    path = write("m.csv", "y,f\n1,x\n0,\n")
    spec = FeatureSpec(sparse=[SparseFeature("f", vocab="hash", num_buckets=8)], label=LabelSpec("y"))
    rows = collect(read_csv(path, spec))["sparse"]["f"]
    assert rows[1] == [0] and rows[0][0] >= 1


def test_hash_vs_vocabulary_rows(collect, write):
    path = write("h.csv", "y,f,g\n1,x,x\n0,y,y\n1,x,x\n")
    spec = FeatureSpec(
        sparse=[SparseFeature("f", vocab="hash", num_buckets=50, hash_seed=3), SparseFeature("g", "g")],
        label=LabelSpec("y"),
    )
    got = collect(read_csv(path, spec))["sparse"]
    assert got["g"] == [[1], [2], [1]]  # vocabulary: frequency order
    hx, hy = hash_tokens(["x", "y"], 50, seed=3).tolist()
    assert got["f"] == [[hx], [hy], [hx]]  # hashing: a fixed function of the token


def test_tsv_fast_path_equals_row_by_row_path(collect, write, monkeypatch):
    rng = np.random.default_rng(0)
    lines = [f"{rng.integers(0, 2)}\t{rng.integers(0, 50)}\tid{rng.integers(0, 9)}" for _ in range(300)]
    spec = FeatureSpec(
        sparse=[SparseFeature("f", vocab="hash", num_buckets=97)],
        dense=[DenseFeature("x", transform="log1p")],
        label=LabelSpec("y"),
    )
    options = dict(format="tsv", header=False, column_names=["y", "x", "f"], chunk_rows=64, batch_size=50)
    calls = []
    original = RowParser.parse_rows
    monkeypatch.setattr(RowParser, "parse_rows", lambda self, rows: calls.append(1) or original(self, rows))
    clean = collect(TabularReader(write("clean.tsv", "\n".join(lines) + "\n"), spec, **options))
    assert calls == []  # clean chunks take the vectorised path
    # A bad line in every chunk forces the row-by-row path everywhere.
    dirty_lines = []
    for i, line in enumerate(lines):
        dirty_lines.append(line)
        if i % 60 == 0:
            dirty_lines.append("1\tnot-a-number\tid0")
    reader = TabularReader(write("dirty.tsv", "\n".join(dirty_lines) + "\n"), spec, on_error="skip", **options)
    with pytest.warns(RuntimeWarning, match="skipped 5 malformed"):
        dirty = collect(reader)
    # Only the 4 chunks of 64 lines that hold a bad line are re-read row by row.
    assert reader.skipped == 5 and len(calls) == 4
    np.testing.assert_array_equal(clean["labels"], dirty["labels"])
    np.testing.assert_array_equal(clean["dense"], dirty["dense"])
    assert clean["sparse"] == dirty["sparse"]


def test_quoted_csv_and_gzip(collect, tmp_path):
    path = tmp_path / "q.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write('y,name,x\n1,"a,b",2\n0,c,"3"\n')
    spec = FeatureSpec(sparse=[SparseFeature("name")], dense=[DenseFeature("x")], label=LabelSpec("y"))
    reader = read_csv(path, spec)
    got = collect(reader)
    assert reader.vocabularies["name"].tokens == ["a,b", "c"]
    assert got["dense"][:, 0].tolist() == [2.0, 3.0]


def test_shuffle_is_seeded_permutation_and_changes_per_epoch(collect, write):
    lines = "".join(f"{i % 2},{i}\n" for i in range(200))
    path = write("s.csv", "y,x\n" + lines)
    spec = FeatureSpec(sparse=[], dense=[DenseFeature("x")], label=LabelSpec("y"))

    def order(reader):
        return collect(reader)["dense"][:, 0].astype(int).tolist()

    r1 = read_csv(path, spec, batch_size=16, shuffle=True, seed=7, chunk_rows=32, shuffle_buffer=64)
    r2 = read_csv(path, spec, batch_size=16, shuffle=True, seed=7, chunk_rows=32, shuffle_buffer=64)
    first, again = order(r1), order(r2)
    assert first == again
    assert sorted(first) == list(range(200)) and first != list(range(200))
    second_epoch = order(r1)
    assert second_epoch != first and sorted(second_epoch) == list(range(200))
    r1.set_epoch(0)
    assert order(r1) == first
    other_seed = order(read_csv(path, spec, batch_size=16, shuffle=True, seed=8, chunk_rows=32, shuffle_buffer=64))
    assert other_seed != first
    assert order(read_csv(path, spec, batch_size=16)) == list(range(200))


# ------------------------------------------------------------------ bad input
BAD_CASES = [
    ("wrong field count", "y,x,f\n1,2,a\n0,3\n", r"bad\.csv:3: expected 3 fields, found 2"),
    ("non-numeric dense", "y,x,f\n1,2,a\n0,abc,b\n", r"bad\.csv:3: dense feature 'x' is 'abc', not a number"),
    ("label outside 0/1", "y,x,f\n1,2,a\n2,3,b\n", r"bad\.csv:3: label 'y' is '2'; a binary label must be 0 or 1"),
    ("empty label", "y,x,f\n,2,a\n", r"bad\.csv:2: label 'y' is empty"),
    ("nan dense", "y,x,f\n1,2,a\n1,nan,a\n", r"bad\.csv:3: dense feature 'x' is 'nan'; values must be finite"),
    ("inf dense", "y,x,f\n1,inf,a\n", r"bad\.csv:2: dense feature 'x' is 'inf'; values must be finite"),
    ("float32 overflow", "y,x,f\n1,1e300,a\n", r"bad\.csv:2: .*finite float32"),
]


@pytest.mark.parametrize("name, text, message", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_malformed_rows_name_file_line_and_reason(collect, write, name, text, message):
    spec = FeatureSpec(sparse=[SparseFeature("f", vocab="hash", num_buckets=8)], dense=[DenseFeature("x")], label=LabelSpec("y"))
    with pytest.raises(DataFormatError, match=message) as info:
        collect(read_csv(write("bad.csv", text), spec))
    assert info.value.path.endswith("bad.csv") and info.value.line is not None


def test_bad_timestamp_and_rating_labels(collect, write):
    spec = FeatureSpec(sparse=[], label=LabelSpec("r", kind="rating"), timestamp="t")
    got = collect(read_csv(write("ok.csv", "r,t\n3.5,10\n-1,11\n"), spec))
    assert got["labels"].tolist() == [3.5, -1.0]
    with pytest.raises(DataFormatError, match=r"t\.csv:3: timestamp 't' is '1.5', not an integer"):
        collect(read_csv(write("t.csv", "r,t\n3.5,10\n4,1.5\n"), spec))


def test_skip_counts_and_warns_once(collect, write):
    text = "y,x,f\n1,2,a\n0,abc,b\n1\n5,1,c\n0,4,d\n"
    spec = FeatureSpec(sparse=[SparseFeature("f")], dense=[DenseFeature("x")], label=LabelSpec("y"))
    reader = read_csv(write("skip.csv", text), spec, on_error="skip")
    with pytest.warns(RuntimeWarning) as record:
        got = collect(reader)
    assert reader.skipped == 3
    assert len(record) == 1
    message = str(record[0].message)
    assert "skip.csv: skipped 3 malformed row(s)" in message and "line 3:" in message and "line 5:" in message
    assert got["labels"].tolist() == [1.0, 0.0] and got["dense"][:, 0].tolist() == [2.0, 4.0]


def test_empty_header_only_and_all_bad_files(collect, write):
    spec = FeatureSpec(sparse=[], dense=[DenseFeature("x")], label=LabelSpec("y"))
    with pytest.raises(DataFormatError, match=r"empty\.csv: the file is empty"):
        collect(read_csv(write("empty.csv", ""), spec))
    with pytest.raises(DataFormatError, match="no data rows"):
        collect(read_csv(write("header.csv", "y,x\n"), spec))
    reader = read_csv(write("allbad.csv", "y,x\n7,1\n8,1\n"), spec, on_error="skip")
    with pytest.raises(DataFormatError, match="all 2 data rows are malformed"):
        collect(reader)


def test_missing_column_lists_present_columns(collect, write):
    spec = FeatureSpec(sparse=[SparseFeature("item", "movieId")], label=LabelSpec("y"))
    with pytest.raises(UnknownKeyError, match=r"column 'movieId' named by feature 'item' is not in the file; columns present: \['y', 'itemId'\]"):
        collect(read_csv(write("cols.csv", "y,itemId\n1,5\n"), spec))


def test_reader_option_errors(write):
    path = write("x.csv", "y\n1\n")
    spec = FeatureSpec(sparse=[], label=LabelSpec("y"))
    with pytest.raises(ConfigError, match="on_error"):
        read_csv(path, spec, on_error="ignore")
    with pytest.raises(ConfigError, match="column_names"):
        read_csv(path, spec, header=False)
    with pytest.raises(ConfigError, match="batch_size"):
        read_csv(path, spec, batch_size=0)


# -------------------------------------------------------------------- parquet
def test_parquet_round_trip_with_nulls_and_lists(collect, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "y": [1, 0, 1],
            "x": [2.0, None, 7.0],
            "user": [10, 11, 10],
            "tags": [["a", "b"], [], None],
            "ts": [5, 6, 7],
        }
    )
    path = tmp_path / "d.parquet"
    pq.write_table(table, path)
    spec = FeatureSpec(
        sparse=[SparseFeature("user"), SparseFeature("tags", separator="|", vocab="hash", num_buckets=32)],
        dense=[DenseFeature("x", fill=-5.0)],
        label=LabelSpec("y"),
        timestamp="ts",
    )
    reader = TabularReader(path, spec, batch_size=2)
    got = collect(reader)
    assert reader.format == "parquet"
    assert got["labels"].tolist() == [1, 0, 1]
    assert got["dense"][:, 0].tolist() == [2.0, -5.0, 7.0]
    assert reader.vocabularies["user"].tokens == ["10", "11"]
    assert got["sparse"]["user"] == [[1], [2], [1]]
    a, b = hash_tokens(["a", "b"], 32).tolist()
    assert got["sparse"]["tags"] == [[a, b], [], []]
    assert got["timestamps"].tolist() == [5, 6, 7]

    # The same data as CSV gives the same batches.
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("y,x,user,tags,ts\n1,2,10,a|b,5\n0,,11,,6\n1,7,10,,7\n")
    from_csv = collect(read_csv(csv_path, spec))
    assert from_csv["sparse"] == got["sparse"]
    np.testing.assert_array_equal(from_csv["dense"], got["dense"])


def test_parquet_errors_name_row_and_columns(collect, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"y": [1, 3], "x": [1.0, 2.0]}), path)
    spec = FeatureSpec(sparse=[], dense=[DenseFeature("x")], label=LabelSpec("y"))
    with pytest.raises(DataFormatError, match=r"bad\.parquet:2: label 'y' is 3"):
        collect(TabularReader(path, spec))
    missing = FeatureSpec(sparse=[], dense=[DenseFeature("z")], label=LabelSpec("y"))
    with pytest.raises(UnknownKeyError, match=r"columns present: \['y', 'x'\]"):
        collect(TabularReader(path, missing))
    not_parquet = tmp_path / "fake.parquet"
    not_parquet.write_text("y,x\n1,2\n")
    with pytest.raises(DataFormatError, match="cannot be read as Parquet"):
        collect(TabularReader(not_parquet, spec))


def test_parquet_fast_path_and_nan_detection(tmp_path, collect, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    spec = FeatureSpec(
        sparse=[SparseFeature("user", vocab="hash", num_buckets=64)], dense=[DenseFeature("x")], label=LabelSpec("y")
    )
    clean = tmp_path / "clean.parquet"
    pq.write_table(pa.table({"y": [1.0, 0.0], "x": [1.5, None], "user": ["a", None]}), clean)
    calls = []
    original = RowParser.parse_rows
    monkeypatch.setattr(RowParser, "parse_rows", lambda self, rows: calls.append(1) or original(self, rows))
    got = collect(TabularReader(clean, spec))
    assert calls == []  # whole columns converted through Arrow
    assert got["dense"][:, 0].tolist() == [1.5, 0.0]
    assert got["sparse"]["user"] == [hash_tokens(["a"], 64).tolist(), [0]]
    nan = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"y": [1, 0, 1], "x": [1.0, 2.0, float("nan")], "user": [1, 2, 3]}), nan)
    with pytest.raises(DataFormatError, match=r"nan\.parquet:3: dense feature 'x' is nan; values must be finite"):
        collect(TabularReader(nan, spec))


def test_parquet_without_pyarrow_names_the_extra(tmp_path, collect, monkeypatch):
    import sys

    from recembed.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    spec = FeatureSpec(sparse=[], label=LabelSpec("y"))
    with pytest.raises(MissingDependencyError, match=r"recembed\[parquet\]"):
        collect(TabularReader(tmp_path / "x.parquet", spec))


def test_byte_order_mark_before_the_header_is_ignored(tmp_path, collect):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffy,x\n1,2\n".encode("utf-8"))
    spec = FeatureSpec(sparse=[], dense=[DenseFeature("x")], label=LabelSpec("y"))
    assert collect(read_csv(path, spec))["dense"].tolist() == [[2.0]]
