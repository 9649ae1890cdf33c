import numpy as np
import pytest

from recembed.errors import CheckpointError, ConfigError
from recembed.seq2vec import KeyedVectors, Word2Vec

from .corpora import topic_separation

FAST = {"vector_size": 16, "window": 3, "min_count": 1, "sample": 0.0, "epochs": 10, "workers": 1, "seed": 7}


@pytest.mark.parametrize("sg", [1, 0])
def test_same_topic_words_end_up_closer(planted_corpus, sg):
    sentences, topics = planted_corpus
    model = Word2Vec(sentences, sg=sg, **FAST)
    same, cross = topic_separation(model.wv, topics)
    assert same > cross + 0.4, (same, cross)
    # Every word's nearest neighbours come from its own topic.
    for words in topics:
        neighbours = [key for key, _ in model.wv.most_similar(words[0], topn=len(words) - 1)]
        assert set(neighbours) == set(words[1:])


def test_two_workers_train_as_well(planted_corpus):
    sentences, topics = planted_corpus
    model = Word2Vec(sentences, sg=1, **{**FAST, "workers": 2})
    same, cross = topic_separation(model.wv, topics)
    assert same > cross + 0.4


def test_one_worker_is_deterministic(planted_corpus):
    sentences, _ = planted_corpus
    params = {**FAST, "sample": 1e-2, "epochs": 2}
    first = Word2Vec(sentences, sg=1, **params).wv.vectors
    second = Word2Vec(sentences, sg=1, **params).wv.vectors
    other_seed = Word2Vec(sentences, sg=1, **{**params, "seed": 8}).wv.vectors
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other_seed)


def test_random_walk_array_path_for_node2vec():
    # Walks over two communities (nodes 0-9 and 10-19) that never mix.
    rng = np.random.default_rng(0)
    walks = np.concatenate([rng.integers(0, 10, (150, 12)), rng.integers(10, 20, (150, 12))]).astype(np.int64)
    model = Word2Vec(sentences=walks, vector_size=16, window=3, min_count=1, sg=1, negative=5, epochs=20,
                     workers=2, seed=3)
    kv = model.wv
    assert isinstance(kv, KeyedVectors) and len(kv) == 20 and kv.vectors.shape == (20, 16)
    assert all(type(k) is int for k in kv.index_to_key)
    inside = np.mean([kv.similarity(a, b) for a in range(10) for b in range(10) if a != b])
    across = np.mean([kv.similarity(a, b) for a in range(10) for b in range(10, 20)])
    assert inside > across + 0.4


def test_build_vocab_then_train_reuses_the_encoded_corpus(planted_corpus):
    sentences, _ = planted_corpus
    model = Word2Vec(**{**FAST, "epochs": 3})
    assert len(model.wv) == 0
    model.build_vocab(sentences)
    assert model.corpus_count == 600 and model.corpus_total_words == 6000
    effective, raw = model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs)
    assert raw == 3 * 6000 and effective == raw  # sample=0 keeps every token
    assert model.training_stats.raw_words == raw
    # A new corpus is encoded with the existing vocabulary; unknown words are skipped.
    effective, raw = model.train([["t0w0", "unknown", "t0w1"]], epochs=1)
    assert raw == 2


def test_subsampling_reduces_effective_words(planted_corpus):
    sentences, _ = planted_corpus
    model = Word2Vec(sentences, sg=1, **{**FAST, "sample": 1e-3, "epochs": 1})
    stats = model.training_stats
    # Each of 32 equally common words has count 187.5 on average: keep ~ (sqrt(187.5/6) + 1) * 6 / 187.5 = 0.21.
    assert 0.15 < stats.effective_words / stats.raw_words < 0.27


def test_corpus_file_training(tmp_path, planted_corpus):
    sentences, topics = planted_corpus
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(" ".join(s) for s in sentences) + "\n", encoding="utf-8")
    model = Word2Vec(corpus_file=str(path), sg=1, **FAST)
    same, cross = topic_separation(model.wv, topics)
    assert same > cross + 0.4


@pytest.mark.parametrize("name, value", [
    ("vector_size", 0), ("window", 0), ("negative", -1), ("epochs", 0), ("alpha", 0.0), ("alpha", -0.1),
    ("workers", 0), ("sample", 1.5), ("min_count", -1), ("sg", 2), ("vector_size", 3.5),
])
def test_bad_parameters_name_themselves(name, value):
    with pytest.raises(ConfigError, match=name):
        Word2Vec(**{name: value})


def test_unsupported_and_empty_inputs():
    with pytest.raises(ConfigError, match="hierarchical softmax"):
        Word2Vec(hs=1)
    with pytest.raises(ConfigError, match="negative"):
        Word2Vec(negative=0)
    with pytest.raises(ConfigError, match="no tokens"):
        Word2Vec([], min_count=1)
    with pytest.raises(ConfigError, match="min_count=5"):
        Word2Vec([["rare", "words"]])
    with pytest.raises(ConfigError, match="build_vocab"):
        Word2Vec().train([["a"]])


def test_divergence_warns_instead_of_crashing():
    with pytest.warns(RuntimeWarning, match="diverged"):
        Word2Vec([["a", "b", "c", "d"]] * 200, vector_size=8, min_count=1, workers=1, alpha=1e6, sample=0.0)


def test_model_save_load_and_continue_training(tmp_path, planted_corpus):
    sentences, topics = planted_corpus
    model = Word2Vec(sentences, sg=1, **{**FAST, "epochs": 2})
    path = tmp_path / "w2v.model"
    model.save(path)
    loaded = Word2Vec.load(path, mmap="r")
    np.testing.assert_array_equal(loaded.wv.vectors, model.wv.vectors)
    np.testing.assert_array_equal(loaded.syn1neg, model.syn1neg)
    assert loaded.wv.index_to_key == model.wv.index_to_key
    assert loaded.vocabulary.counts.tolist() == model.vocabulary.counts.tolist()
    assert loaded.window == 3 and loaded.vector_size == 16
    loaded.train(sentences, epochs=3)  # memory-mapped weights are copied before training
    same, cross = topic_separation(loaded.wv, topics)
    assert same > cross + 0.4
    with pytest.raises(CheckpointError, match="Word2Vec"):
        from recembed.seq2vec import Item2Vec

        Item2Vec.load(path)


def test_training_reports_progress_on_the_logger(caplog, planted_corpus):
    sentences, _ = planted_corpus
    with caplog.at_level("INFO", logger="recembed.seq2vec"):
        Word2Vec(sentences, **{**FAST, "epochs": 1})
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("vocabulary: 32 keys") for m in messages)
    assert any("training 100.0% done" in m for m in messages)
    assert any(m.startswith("trained 1 epochs: 6000 effective words (6000 raw)") for m in messages)
