"""The compiled TSV scanner must give exactly what the numpy and row-by-row paths give."""

import numpy as np
import pytest

from recembed.data import DenseFeature, FeatureSpec, LabelSpec, SparseFeature, TabularReader, make_ctr_dataset, read_criteo
from recembed.data.fast_tsv import TsvPlan
from recembed.data.row_parsing import RowParser
from recembed.errors import DataFormatError


def _same(a, b):
    np.testing.assert_array_equal(a["labels"], b["labels"])
    np.testing.assert_array_equal(a["dense"], b["dense"])
    assert a["sparse"] == b["sparse"]
    if a["timestamps"] is not None or b["timestamps"] is not None:
        np.testing.assert_array_equal(a["timestamps"], b["timestamps"])


@pytest.mark.parametrize("vocab", ["hash", "build"])
def test_compiled_equals_numpy_path_on_generated_criteo(tmp_path, collect, monkeypatch, vocab):
    data = make_ctr_dataset(1500, num_sparse=5, num_dense=4, seed=3)
    path = tmp_path / "day.tsv"
    data.write_criteo_tsv(path, missing_fraction=0.1, seed=1)
    options = dict(num_dense=4, num_categorical=5, vocab=vocab, num_buckets=257 if vocab == "hash" else None, chunk_rows=400)
    options = {k: v for k, v in options.items() if v is not None}
    calls = []
    original = RowParser.parse_columns
    monkeypatch.setattr(RowParser, "parse_columns", lambda self, cols: calls.append(1) or original(self, cols))
    compiled_reader = read_criteo(path, **options)
    compiled = collect(compiled_reader)
    assert calls == []  # every chunk went through the compiled scanner
    plain_reader = read_criteo(path, compiled=False, **options)
    plain = collect(plain_reader)
    # 1500 rows in chunks of 400; a built vocabulary takes one more pass.
    assert len(calls) == (4 if vocab == "hash" else 8)
    _same(compiled, plain)
    if vocab == "build":
        assert compiled_reader.vocabularies == plain_reader.vocabularies
        assert compiled_reader.vocabularies["C1"].counts == plain_reader.vocabularies["C1"].counts


@pytest.mark.parametrize(
    "text",
    [
        "1\t2.5\tab\t7\n0\t\tcd\t8\n",  # a decimal: numpy path
        "1\t+3\tab\t7\r\n\r\n0\t-4\t\t8\r\n",  # signs, CRLF and a blank line
        "1\t3\tx|y\t7\n0\t1\tü\t8",  # non-ASCII token, no final newline
        "1\t99999999999999999\tab\t7\n",  # too many digits for the scanner
    ],
)
def test_unusual_files_give_the_same_result(tmp_path, collect, text):
    path = tmp_path / "f.tsv"
    path.write_bytes(text.encode("utf-8"))
    spec = FeatureSpec(
        sparse=[SparseFeature("tok", vocab="hash", num_buckets=1000)],
        dense=[DenseFeature("x", transform="log1p")],
        label=LabelSpec("y"),
        timestamp="t",
    )
    options = dict(format="tsv", header=False, column_names=["y", "x", "tok", "t"])
    _same(collect(TabularReader(path, spec, **options)), collect(TabularReader(path, spec, compiled=False, **options)))


def test_errors_still_name_the_line(tmp_path, collect):
    path = tmp_path / "day.tsv"
    path.write_text("1\t1\ta\n0\t2\tb\n1\tx\tc\n")
    with pytest.raises(DataFormatError, match=r"day\.tsv:3: dense feature 'I1' is 'x', not a number"):
        collect(read_criteo(path, num_dense=1, num_categorical=1, num_buckets=10))


def test_plan_declines_what_it_does_not_handle():
    spec = FeatureSpec(sparse=[SparseFeature("a", separator="|")], label=LabelSpec("y"))
    assert TsvPlan.build(spec, {"y": 0, "a": 1}, 2, "\t") is None
    shared = FeatureSpec(sparse=[SparseFeature("a", "c")], dense=[DenseFeature("b", "c")], label=LabelSpec("y"))
    assert TsvPlan.build(shared, {"y": 0, "c": 1}, 2, "\t") is None
    plain = FeatureSpec(sparse=[SparseFeature("a")], label=LabelSpec("y"))
    assert TsvPlan.build(plain, {"y": 0, "a": 1}, 2, "::") is None
    assert TsvPlan.build(plain, {"y": 0, "a": 1}, 2, "\t") is not None
