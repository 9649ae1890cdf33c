import numpy as np
import pytest

from recembed.data import criteo_column_names, criteo_spec, make_ctr_dataset, read_criteo, write_criteo_tsv
from recembed.data.encoding import hash_tokens
from recembed.errors import ConfigError, DataFormatError


def _line(label="1", dense=("1",) * 3, cats=("a1", "b2")):
    return "\t".join([label, *dense, *cats]) + "\n"


def _read(path, **kw):
    return read_criteo(path, num_dense=3, num_categorical=2, num_buckets=100, **kw)


def test_column_names_and_spec():
    assert criteo_column_names(2, 1) == ["label", "I1", "I2", "C1"]
    spec = criteo_spec()
    assert len(spec.dense) == 13 and len(spec.sparse) == 26
    assert spec.num_rows()["C26"] == 100_000
    assert criteo_spec(num_dense=1, num_categorical=2, num_buckets=[10, 20]).num_rows() == {"C1": 10, "C2": 20}
    with pytest.raises(ConfigError, match="2 categorical"):
        criteo_spec(num_categorical=2, num_buckets=[10])


def test_missing_values_log1p_and_hashing(tmp_path, collect):
    path = tmp_path / "day.tsv"
    path.write_text(_line("1", ("0", "", "-3"), ("a1", "")) + _line("0", ("9", "1", ""), ("", "b2")))
    got = collect(_read(path))
    assert got["labels"].tolist() == [1.0, 0.0]
    np.testing.assert_allclose(got["dense"], [[0, 0, 0], [np.log1p(9), np.log1p(1), 0]], rtol=1e-6)
    a1, b2 = hash_tokens(["a1", "b2"], 100).tolist()
    assert got["sparse"] == {"C1": [[a1], [0]], "C2": [[0], [b2]]}


def test_generated_dataset_round_trips_through_tsv(tmp_path, collect):
    data = make_ctr_dataset(3000, num_sparse=4, num_dense=3, seed=5)
    path = tmp_path / "synthetic.tsv"
    data.write_criteo_tsv(path)
    reader = read_criteo(path, num_dense=3, num_categorical=4, vocab="build", batch_size=700, chunk_rows=1000)
    got = collect(reader)
    np.testing.assert_array_equal(got["labels"], data.labels)
    np.testing.assert_allclose(got["dense"], data.dense, rtol=1e-6)
    for name in ["C1", "C2", "C3", "C4"]:
        ids = data.sparse[name][1]
        rows = np.array([r[0] for r in got["sparse"][name]])
        # A vocabulary relabels ids one-to-one, most frequent first.
        pairs = set(zip(ids.tolist(), rows.tolist()))
        assert len(pairs) == len(set(ids.tolist())) == len(set(rows.tolist()))
        assert rows.min() == 1 and reader.num_rows[name] == len(set(ids.tolist())) + 1
        top_id = np.bincount(ids).argmax()
        assert rows[ids == top_id][0] == 1


def test_written_missing_fields_read_as_missing(tmp_path, collect):
    data = make_ctr_dataset(500, num_sparse=3, num_dense=2, seed=1)
    path = tmp_path / "holes.tsv"
    data.write_criteo_tsv(path, missing_fraction=0.3, seed=2)
    text = path.read_text().splitlines()
    empty_cats = sum(field == "" for line in text for field in line.split("\t")[3:])
    got = collect(read_criteo(path, num_dense=2, num_categorical=3, num_buckets=1 << 16))
    zero_rows = sum(r == [0] for name in ["C1", "C2", "C3"] for r in got["sparse"][name])
    assert empty_cats > 0 and zero_rows == empty_cats
    np.testing.assert_array_equal(got["labels"], data.labels)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("1\t1\t1\n", r"day\.tsv:2: expected 6 fields, found 3"),
        (_line(dense=("1", "x", "1")), r"day\.tsv:2: dense feature 'I2' is 'x', not a number"),
        (_line(label="-1"), r"day\.tsv:2: label 'label' is '-1'; a binary label must be 0 or 1"),
        (_line(dense=("NaN", "1", "1")), r"day\.tsv:2: dense feature 'I1' is 'NaN'"),
    ],
)
def test_malformed_lines(tmp_path, collect, bad, message):
    path = tmp_path / "day.tsv"
    path.write_text(_line() + bad + _line())
    with pytest.raises(DataFormatError, match=message):
        collect(_read(path))
    reader = _read(path, on_error="skip")
    with pytest.warns(RuntimeWarning, match="skipped 1 malformed"):
        assert len(collect(reader)["labels"]) == 2
    assert reader.skipped == 1


def test_empty_file(tmp_path, collect):
    path = tmp_path / "empty.tsv"
    path.write_text("")
    with pytest.raises(DataFormatError, match=r"empty\.tsv: the file is empty"):
        collect(_read(path))


def test_writer_checks_inputs(tmp_path):
    with pytest.raises(ConfigError, match="0 or 1"):
        write_criteo_tsv(tmp_path / "x.tsv", np.array([2]), np.zeros((1, 1)), np.array([["a"]]))
    with pytest.raises(ConfigError, match="multi-hot"):
        make_ctr_dataset(100, num_sparse=2, num_dense=1, multi_hot=(1,)).write_criteo_tsv(tmp_path / "m.tsv")


def test_crlf_blank_lines_and_no_final_newline(tmp_path, collect):
    path = tmp_path / "day.tsv"
    text = _line("1").replace("\n", "\r\n") + "\r\n" + _line("0").rstrip("\n")
    path.write_bytes(text.encode())
    got = collect(_read(path))
    assert got["labels"].tolist() == [1.0, 0.0]
    np.testing.assert_allclose(got["dense"], np.log1p(np.ones((2, 3))), rtol=1e-6)
    # Line numbers count blank lines too.
    path.write_text(_line() + "\n" + _line(label="x"))
    with pytest.raises(DataFormatError, match=r"day\.tsv:3: label 'label' is 'x', not a number"):
        collect(_read(path))
