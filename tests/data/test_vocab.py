import json

import pytest

from recembed.data import OOV_ROW, Vocabulary, VocabularyBuilder
from recembed.errors import ConfigError, DataFormatError


def test_frequency_order_ties_by_token_and_min_count():
    v = Vocabulary.build(["b", "c", "a", "b", "c", "d", "b"], min_count=2)
    assert v.tokens == ["b", "c"]  # b x3, c x2; a and d seen once
    assert v.counts == [3, 2]
    assert len(v) == 3
    assert v.lookup(["c", "a", "b", None, ""]).tolist() == [2, OOV_ROW, 1, OOV_ROW, OOV_ROW]
    assert v["c"] == 2 and v.token(2) == "c" and v.token(0) is None


def test_ties_do_not_depend_on_input_order():
    assert Vocabulary.build(["y", "x", "z"]).tokens == Vocabulary.build(["z", "x", "y"]).tokens == ["x", "y", "z"]


def test_builder_counts_over_chunks_and_ignores_missing():
    builder = VocabularyBuilder(name="genre")
    builder.update(["a", "", "b"])
    builder.update([None, "a"])
    v = builder.build(max_size=1)
    assert v.tokens == ["a"] and v.name == "genre"


def test_save_load_round_trip(tmp_path):
    v = Vocabulary.build(["ü", "x", "ü"], name="f")
    path = tmp_path / "vocab.json"
    v.save(path)
    loaded = Vocabulary.load(path)
    assert loaded == v and loaded.counts == [2, 1] and loaded.name == "f"
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temp file left behind


def test_load_rejects_foreign_and_broken_files(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"tokens": ["a"]}))
    with pytest.raises(DataFormatError, match="not a recembed vocabulary"):
        Vocabulary.load(other)
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": ')
    with pytest.raises(DataFormatError, match="broken.json:1"):
        Vocabulary.load(broken)


def test_invalid_vocabularies():
    with pytest.raises(ConfigError, match="appears twice"):
        Vocabulary(["a", "a"])
    with pytest.raises(ConfigError, match="empty string"):
        Vocabulary(["a", ""])
    with pytest.raises(ConfigError, match="min_count"):
        Vocabulary.build(["a"], min_count=0)
