import numpy as np
import pytest

from recembed.errors import ConfigError, DataFormatError
from recembed.seq2vec.corpus import build_corpus, encode_corpus
from recembed.seq2vec.kernels import chunk_boundaries, drop_negative_tokens
from recembed.seq2vec.vocabulary import finalize_vocabulary

SENTENCES = [["a", "b", "a", "c"], ["b", "a", "d"], ["e"], ["a", "b", "c"]]
# counts: a 4, b 3, c 2, d 1, e 1


def decode(corpus, vocab):
    return [[vocab.keys[t] for t in corpus.tokens[a:b]] for a, b in zip(corpus.offsets[:-1], corpus.offsets[1:])]


def test_counts_order_and_min_count():
    corpus, vocab = build_corpus(SENTENCES, min_count=2)
    assert vocab.keys == ["a", "b", "c"]
    assert vocab.counts.tolist() == [4, 3, 2]
    assert vocab.count("b") == 3
    # Rare tokens are dropped from the sentences; empty sentences stay (as empty).
    assert decode(corpus, vocab) == [["a", "b", "a", "c"], ["b", "a"], [], ["a", "b", "c"]]
    assert corpus.tokens.dtype == np.int32 and corpus.offsets.dtype == np.int64
    assert corpus.raw_tokens == 11 and corpus.num_tokens == 9


def test_ties_keep_first_seen_order_and_min_count_one_keeps_all():
    _, vocab = build_corpus(SENTENCES, min_count=1)
    assert vocab.keys == ["a", "b", "c", "d", "e"]


def test_max_final_vocab_raises_the_cut_off_and_drops_ties():
    _, vocab = build_corpus(SENTENCES, min_count=1, max_final_vocab=3)
    assert vocab.keys == ["a", "b", "c"]
    # Keeping 2 would cut between b (3) and c (2): fine; keeping 4 would split the tie d/e.
    _, vocab = build_corpus(SENTENCES, min_count=1, max_final_vocab=4)
    assert vocab.keys == ["a", "b", "c"]


def test_max_vocab_size_prunes_rare_keys_while_streaming():
    sentences = [["common", f"rare{i}"] for i in range(50)] + [["common", "other"]] * 3
    _, vocab = build_corpus(sentences, min_count=1, max_vocab_size=10)
    assert vocab.keys[0] == "common" and vocab.counts[0] == 53
    assert "other" in vocab.key_to_index
    assert len(vocab) <= 11
    assert sum(k.startswith("rare") for k in vocab.keys) < 10


def test_finalize_vocabulary_in_memory_max_vocab_size():
    vocab = finalize_vocabulary(["x", "y", "z"], np.array([1, 9, 5]), min_count=1, max_vocab_size=2)
    assert vocab.keys == ["y", "z"]


def test_integer_fast_paths_match_the_streaming_path():
    walks = np.array([[3, 1, 3, 7], [1, 3, 9, 9], [7, 3, 1, 1]], dtype=np.int64)
    corpus_2d, vocab_2d = build_corpus(walks, min_count=2)
    corpus_list, vocab_list = build_corpus([row for row in walks], min_count=2)
    corpus_py, vocab_py = build_corpus(walks.tolist(), min_count=2)
    assert vocab_2d.counts.tolist() == vocab_py.counts.tolist() == [4, 4, 2, 2]
    assert set(vocab_2d.keys[:2]) == {1, 3} and set(vocab_2d.keys[2:]) == {7, 9}
    assert all(type(k) is int for k in vocab_2d.keys)
    for corpus, vocab in ((corpus_2d, vocab_2d), (corpus_list, vocab_list), (corpus_py, vocab_py)):
        assert decode(corpus, vocab) == walks.tolist()


def test_negative_and_huge_integer_ids_use_the_sorting_path():
    walks = np.array([[-5, 10**12, -5], [10**12, -5, 3]])
    corpus, vocab = build_corpus(walks, min_count=2)
    assert sorted(vocab.keys) == [-5, 10**12]
    assert decode(corpus, vocab) == [[-5, 10**12, -5], [10**12, -5]]


def test_encode_with_fixed_vocabulary_drops_unknown():
    _, vocab = build_corpus(SENTENCES, min_count=2)
    corpus = encode_corpus([["a", "zzz", "c"], ["q"]], vocab)
    assert decode(corpus, vocab) == [["a", "c"], []]
    assert corpus.raw_tokens == 4
    corpus = encode_corpus(np.array([[1, 2]]), vocab)
    assert corpus.num_tokens == 0


def test_corpus_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("a b a c\nb a d\n\ne\na b  c\n", encoding="utf-8")
    corpus, vocab = build_corpus(corpus_file=path, min_count=2)
    assert vocab.keys == ["a", "b", "c"]
    assert decode(corpus, vocab) == [["a", "b", "a", "c"], ["b", "a"], [], [], ["a", "b", "c"]]


def test_one_shot_generator_is_read_once():
    reads = []

    def stream():
        reads.append(1)
        yield from SENTENCES

    _, vocab = build_corpus(stream(), min_count=1)
    assert len(vocab) == 5 and reads == [1]


def test_bad_corpora_raise_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="no tokens"):
        build_corpus([[], []], min_count=1)
    with pytest.raises(ConfigError, match="min_count=5"):
        build_corpus(SENTENCES, min_count=5)
    with pytest.raises(DataFormatError, match="sentence 0 .* str"):
        build_corpus(["a b c", "d e"], min_count=1)
    with pytest.raises(DataFormatError, match="sentence 1 .*unusable token"):
        build_corpus([["a"], [["nested"]]], min_count=1)
    with pytest.raises(DataFormatError, match="does not exist"):
        build_corpus(corpus_file=tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="exactly one"):
        build_corpus(SENTENCES, corpus_file=tmp_path / "x.txt")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok line\n\xff\xfe bad\n")
    with pytest.raises(DataFormatError, match="bad.txt:2"):
        build_corpus(corpus_file=bad, min_count=1)


def test_drop_negative_tokens_and_chunks():
    tokens = np.array([0, -1, 2, -1, -1, 5, 6], dtype=np.int32)
    offsets = np.array([0, 3, 5, 7], dtype=np.int64)
    kept, new_offsets = drop_negative_tokens(tokens, offsets)
    assert kept.tolist() == [0, 2, 5, 6] and new_offsets.tolist() == [0, 2, 2, 4]
    offsets = np.array([0, 4, 8, 9, 20, 21, 30], dtype=np.int64)
    bounds = chunk_boundaries(offsets, 8)
    assert bounds[0] == 0 and bounds[-1] == 6 and np.all(np.diff(bounds) >= 1)
    assert bounds.tolist() == [0, 2, 4, 6]  # cuts at the first sentence starting at or past 8, 16, 24
