import numpy as np
import pytest

from recembed.errors import (
    ConfigError,
    DataFormatError,
    ShapeMismatchError,
    UnknownKeyError,
)
from recembed.seq2vec import KeyedVectors


@pytest.fixture
def kv():
    vectors = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.9, 0.3], [-1.0, 0.0, 0.0]],
                       dtype=np.float32)
    return KeyedVectors(["cat", "kitten", "car", "truck", "anti-cat"], vectors)


def test_lookups(kv):
    assert len(kv) == 5 and kv.vector_size == 3
    assert "car" in kv and "boat" not in kv and [1] not in kv
    assert kv.get_index("car") == 2 and kv.get_index("boat", default=-1) == -1
    np.testing.assert_array_equal(kv["truck"], np.array([0.0, 0.9, 0.3], dtype=np.float32))
    assert kv[["cat", "car"]].shape == (2, 3)
    np.testing.assert_array_equal(kv[["cat", "car"]][1], kv["car"])
    assert kv.key_to_index["anti-cat"] == 4 and kv.index_to_key[1] == "kitten"


def test_unknown_key_is_named(kv):
    with pytest.raises(UnknownKeyError, match="'boat'"):
        kv["boat"]
    with pytest.raises(UnknownKeyError, match="'boat'"):
        kv[["cat", "boat"]]
    with pytest.raises(UnknownKeyError, match="'boat'"):
        kv.most_similar("boat")
    with pytest.raises(KeyError):  # UnknownKeyError is a KeyError, as gensim users expect
        kv.similarity("cat", "boat")


def test_similarity_and_normed_vectors(kv):
    assert kv.similarity("cat", "anti-cat") == pytest.approx(-1.0)
    assert kv.similarity("car", "truck") == pytest.approx(0.9 / np.sqrt(0.9**2 + 0.3**2))
    np.testing.assert_allclose(np.linalg.norm(kv.get_normed_vectors(), axis=1), 1.0, rtol=1e-6)


def test_most_similar_excludes_query_and_ranks_by_cosine(kv):
    result = kv.most_similar("cat", topn=3)
    assert [k for k, _ in result] == ["kitten", "car", "truck"]
    assert result[0][1] == pytest.approx(0.9 / np.sqrt(0.82))
    # Vector queries exclude nothing; several positives and negatives combine.
    assert kv.most_similar(np.array([1.0, 0.0, 0.0]), topn=1)[0][0] == "cat"
    assert kv.most_similar(positive=["car", "kitten"], negative=["cat"], topn=1)[0][0] == "truck"
    everything = kv.most_similar("cat", topn=None)
    assert everything.shape == (5,) and everything[0] == pytest.approx(1.0)
    assert len(kv.most_similar("cat", topn=100)) == 4
    with pytest.raises(ConfigError, match="topn"):
        kv.most_similar("cat", topn=0)
    with pytest.raises(ShapeMismatchError, match="dimension 2"):
        kv.most_similar(np.zeros(2, dtype=np.float32))


def test_constructor_checks():
    with pytest.raises(ShapeMismatchError, match="3 keys for 2"):
        KeyedVectors(["a", "b", "c"], np.zeros((2, 4)))
    with pytest.raises(ConfigError, match="not unique"):
        KeyedVectors(["a", "a"], np.zeros((2, 4)))


def test_native_save_and_mmap_load(tmp_path, kv):
    path = tmp_path / "vectors.kv"
    kv.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.kv", "vectors.kv.vectors.npy"]
    loaded = KeyedVectors.load(path, mmap="r")
    assert isinstance(loaded.vectors, np.memmap) and not loaded.vectors.flags.writeable
    np.testing.assert_array_equal(loaded.vectors, kv.vectors)
    assert loaded.index_to_key == kv.index_to_key
    assert loaded.most_similar("cat", topn=1)[0][0] == "kitten"
    # The vectors file is a plain .npy that numpy maps by itself.
    assert np.load(str(path) + ".vectors.npy", mmap_mode="r").shape == (5, 3)


def test_integer_keys_survive_native_format(tmp_path):
    kv = KeyedVectors([10, 3, 7], np.eye(3, dtype=np.float32))
    kv.save(tmp_path / "ints.kv")
    loaded = KeyedVectors.load(tmp_path / "ints.kv")
    assert loaded.index_to_key == [10, 3, 7] and loaded.get_index(3) == 1


def test_nan_vectors_are_rejected_on_load(tmp_path, kv):
    bad = kv.vectors.copy()
    bad[3, 1] = np.nan
    KeyedVectors(kv.index_to_key, bad).save(tmp_path / "bad.kv")
    with pytest.raises(DataFormatError, match="row 3"):
        KeyedVectors.load(tmp_path / "bad.kv", mmap="r")
    KeyedVectors(kv.index_to_key, bad).save_word2vec_format(tmp_path / "bad.txt")
    with pytest.raises(DataFormatError, match="row 3"):
        KeyedVectors.load_word2vec_format(tmp_path / "bad.txt")


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_format_round_trip(tmp_path, kv, binary):
    path = tmp_path / ("v.bin" if binary else "v.txt")
    kv.save_word2vec_format(path, binary=binary)
    data = path.read_bytes()
    assert data.startswith(b"5 3\n")
    if binary:
        # key, space, 3 little-endian float32, newline
        assert data[4:8] == b"cat " and np.frombuffer(data[8:20], "<f4").tolist() == [1.0, 0.0, 0.0]
        assert data[20:21] == b"\n"
    else:
        assert data.split(b"\n")[1] == b"cat 1 0 0"
    loaded = KeyedVectors.load_word2vec_format(path, binary=binary)
    assert loaded.index_to_key == kv.index_to_key
    np.testing.assert_array_equal(loaded.vectors, kv.vectors)  # exact: 9 significant digits


def test_word2vec_format_errors(tmp_path):
    path = tmp_path / "broken.txt"
    path.write_text("2 3\na 1 2 3\nb 1 2\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="broken.txt:3"):
        KeyedVectors.load_word2vec_format(path)
    path.write_text("two three\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="header"):
        KeyedVectors.load_word2vec_format(path)
    with pytest.raises(DataFormatError, match="whitespace"):
        KeyedVectors(["a b"], np.zeros((1, 2))).save_word2vec_format(tmp_path / "x.txt")
    binary = tmp_path / "short.bin"
    binary.write_bytes(b"2 2\na " + np.zeros(2, "<f4").tobytes())
    with pytest.raises(DataFormatError, match="entry 2 of 2"):
        KeyedVectors.load_word2vec_format(binary, binary=True)


def test_gensim_reads_ours_and_we_read_gensims(tmp_path, kv):
    gensim_models = pytest.importorskip("gensim.models")
    for binary in (False, True):
        ours = tmp_path / f"ours{int(binary)}"
        kv.save_word2vec_format(ours, binary=binary)
        theirs = gensim_models.KeyedVectors.load_word2vec_format(str(ours), binary=binary)
        assert list(theirs.index_to_key) == kv.index_to_key
        np.testing.assert_array_equal(theirs.vectors, kv.vectors)

        native = gensim_models.KeyedVectors(vector_size=3)
        native.add_vectors(["x", "y"], np.array([[0.5, -1.25, 3.0], [1e-7, 2.5, -0.1]], dtype=np.float32))
        written = tmp_path / f"theirs{int(binary)}"
        native.save_word2vec_format(str(written), binary=binary)
        back = KeyedVectors.load_word2vec_format(written, binary=binary)
        assert back.index_to_key == ["x", "y"]
        np.testing.assert_allclose(back.vectors, native.vectors, rtol=1e-6)


def test_to_pretrained_weight(kv):
    torch = pytest.importorskip("torch")
    weight, key_to_index = kv.to_pretrained_weight()
    assert weight.dtype == torch.float32 and tuple(weight.shape) == (5, 3)
    assert torch.equal(weight[key_to_index["truck"]], torch.tensor([0.0, 0.9, 0.3]))
    weight[0, 0] = 42.0  # the tensor owns its memory
    assert kv["cat"][0] == 1.0


def test_to_embedding_bag(kv):
    torch = pytest.importorskip("torch")
    try:
        from recembed.tables import EmbeddingBag  # noqa: F401
    except ImportError:
        pytest.skip("recembed.tables is not available")
    bag = kv.to_embedding_bag(freeze=True, mode="mean")
    weight = bag.weight if hasattr(bag, "weight") else next(bag.parameters())
    assert torch.equal(weight.detach(), torch.tensor(kv.vectors))
    assert not weight.requires_grad
    rows = [kv.get_index("car"), kv.get_index("truck")]
    pooled = bag(torch.tensor([rows]))
    torch.testing.assert_close(pooled[0], torch.tensor(kv[["car", "truck"]].mean(axis=0)))


def test_word2vec_format_count_mismatch_and_missing_file(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("3 2\na 1 2\n\nb 3 4\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="announces 3 vectors, the file has 2"):
        KeyedVectors.load_word2vec_format(path)
    path.write_text("1 2\na 1 2\nb 3 4\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="short.txt:3: header announces 1"):
        KeyedVectors.load_word2vec_format(path)
    with pytest.raises(DataFormatError, match="no such file"):
        KeyedVectors.load_word2vec_format(tmp_path / "absent.bin", binary=True)
