"""Encode a corpus of token sequences into one flat int32 array plus sentence offsets.

The corpus is read once. Streaming input (any iterable of token sequences, or a text
file with one whitespace-tokenised sentence per line) is encoded on the fly to
provisional ids in a compact ``array('i')`` while the keys are counted; when the
vocabulary is final, the provisional ids are remapped with one numpy gather and
out-of-vocabulary tokens are dropped. No second Python copy of the corpus is made.

Integer corpora take a fast path with no Python loop over tokens: a 2-D integer array
(rows are sentences, e.g. random walks) or a list of 1-D integer arrays.

Example:
    >>> corpus, vocab = build_corpus([["a", "b"], ["b", "c"]], min_count=1)
    >>> vocab.keys, corpus.tokens.tolist(), corpus.offsets.tolist()
    (['b', 'a', 'c'], [1, 0, 0, 2], [0, 2, 4])
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from recembed.errors import ConfigError, DataFormatError
from recembed.seq2vec.kernels import drop_negative_tokens
from recembed.seq2vec.vocabulary import Vocabulary, finalize_vocabulary

__all__ = ["EncodedCorpus", "build_corpus", "encode_corpus", "is_integer_corpus", "read_corpus_file"]


@dataclass
class EncodedCorpus:
    """A corpus as vocabulary rows.

    Attributes:
        tokens: ``(N,)`` int32 row ids of in-vocabulary tokens, sentences back to back.
        offsets: ``(S + 1,)`` int64; sentence ``s`` is ``tokens[offsets[s]:offsets[s + 1]]``.
        raw_tokens: tokens read, out-of-vocabulary ones included.
    """

    tokens: np.ndarray
    offsets: np.ndarray
    raw_tokens: int

    @property
    def num_sentences(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def longest_sentence(self) -> int:
        return int(np.diff(self.offsets).max()) if self.num_sentences else 0


def read_corpus_file(path: str | os.PathLike) -> Iterator[list[str]]:
    """Yield the whitespace-separated tokens of each line of a UTF-8 text file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFormatError("corpus_file does not exist or is not a file", path=path)
    # Binary lines decoded one by one, so a decoding error names its line.
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFormatError(f"not valid UTF-8 ({exc.reason})", path=path, line=line_number) from exc
            yield line.split()


def is_integer_corpus(corpus: object) -> bool:
    """True for the fast paths: a 2-D integer ndarray, or a list/tuple of 1-D integer ndarrays."""
    if isinstance(corpus, np.ndarray):
        return corpus.ndim == 2 and np.issubdtype(corpus.dtype, np.integer)
    if isinstance(corpus, (list, tuple)) and corpus:
        return all(isinstance(s, np.ndarray) and s.ndim == 1 and np.issubdtype(s.dtype, np.integer)
                   for s in corpus)
    return False


def _flatten_integer_corpus(corpus: np.ndarray | list) -> tuple[np.ndarray, np.ndarray]:
    """Flat int64 values and int64 offsets of an integer corpus (no copy for C-ordered 2-D input)."""
    if isinstance(corpus, np.ndarray):
        rows, cols = corpus.shape
        flat = np.ascontiguousarray(corpus).reshape(-1)
        offsets = np.arange(rows + 1, dtype=np.int64) * cols
        return flat, offsets
    lengths = np.fromiter((s.shape[0] for s in corpus), dtype=np.int64, count=len(corpus))
    offsets = np.zeros(len(corpus) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(corpus) if offsets[-1] else np.zeros(0, dtype=np.int64)
    return flat, offsets


def _integer_keys_and_ids(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values, their counts, and the (N,) candidate index of every token."""
    if flat.size and flat.min() >= 0 and flat.max() < max(4 * flat.size, 1 << 20):
        # Dense ids (node ids, item ids): counting beats sorting.
        counts_all = np.bincount(flat)
        values = np.flatnonzero(counts_all)
        lookup = np.full(counts_all.shape[0], -1, dtype=np.int64)
        lookup[values] = np.arange(values.shape[0])
        return values, counts_all[values], lookup[flat]
    values, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    return values, counts, inverse.reshape(-1)


def _compact(tokens: np.ndarray, offsets: np.ndarray, raw_tokens: int) -> EncodedCorpus:
    """Drop the -1 (out-of-vocabulary) entries of int32 ``tokens`` and fix the offsets."""
    offsets = offsets.astype(np.int64, copy=True)
    if tokens.size and tokens.min() < 0:
        tokens, offsets = drop_negative_tokens(tokens, offsets)
    return EncodedCorpus(tokens=tokens, offsets=offsets, raw_tokens=raw_tokens)


def _remap(candidate_ids: np.ndarray, candidate_to_row: np.ndarray, offsets: np.ndarray,
           raw_tokens: int) -> EncodedCorpus:
    """Gather final rows for candidate ids (-1 = dropped) and compact the corpus."""
    tokens = candidate_to_row.astype(np.int32, copy=False)[candidate_ids]
    return _compact(tokens, offsets, raw_tokens)


class _FirstSeenIndex(dict):
    """key -> provisional id, assigning the next id to a key on first sight."""

    def __init__(self) -> None:
        super().__init__()
        self.keys_by_id: list = []

    def __missing__(self, key: Hashable) -> int:
        new_id = len(self.keys_by_id)
        self[key] = new_id
        self.keys_by_id.append(key)
        return new_id


def _check_sentence(sentence: object, number: int, source: str) -> None:
    if isinstance(sentence, (str, bytes)):
        raise DataFormatError(
            f"sentence {number} of {source} is a {type(sentence).__name__}, expected a sequence of "
            "tokens; pass a list of token lists (e.g. [text.split()]), not a flat list of strings"
        )


def _scan_stream(sentences: Iterable, max_vocab_size: int | None, source: str):
    """Read a token stream once: provisional ids, sentence lengths, keys, and live flags."""
    index = _FirstSeenIndex()
    ids = array("i")
    lengths = array("q")
    dead: set[int] = set()
    min_reduce = 1
    assign = index.__getitem__
    for number, sentence in enumerate(sentences):
        _check_sentence(sentence, number, source)
        before = len(ids)
        try:
            ids.extend(map(assign, sentence))
        except TypeError as exc:
            raise DataFormatError(f"sentence {number} of {source} has an unusable token: {exc}") from exc
        lengths.append(len(ids) - before)
        if max_vocab_size is not None and len(index) > max_vocab_size:
            # Bound memory as gensim does: forget keys rarer than a rising threshold. A
            # forgotten key that reappears gets a fresh id and count, so kept counts are
            # lower bounds; its earlier occurrences are still encoded if it is kept.
            counts = np.bincount(np.frombuffer(ids, dtype=np.int32), minlength=len(index.keys_by_id))
            for key, pid in list(index.items()):
                if counts[pid] < min_reduce:
                    del index[key]
                    dead.add(pid)
            min_reduce += 1
    if len(index.keys_by_id) >= 2**31 - 1:
        raise ConfigError(f"{source} has {len(index.keys_by_id)} distinct keys, more than int32 row ids hold")
    flat = np.frombuffer(ids, dtype=np.int32) if len(ids) else np.zeros(0, dtype=np.int32)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    if len(lengths):
        np.cumsum(np.frombuffer(lengths, dtype=np.int64), out=offsets[1:])
    counts = np.bincount(flat, minlength=len(index.keys_by_id)).astype(np.int64)
    if dead:
        counts[np.fromiter(dead, dtype=np.int64)] = 0
    return flat, offsets, index.keys_by_id, counts


def _empty_error(source: str, what: str, min_count: int) -> ConfigError:
    return ConfigError(
        f"{source} {what}: nothing to train on (min_count={min_count}); "
        "pass a non-empty corpus or lower min_count"
    )


def _describe(corpus_file: str | os.PathLike | None) -> str:
    if corpus_file is not None:
        return f"corpus_file {os.fspath(corpus_file)!r}"
    return "the corpus"


def _resolve(corpus: Iterable | None, corpus_file: str | os.PathLike | None) -> Iterable:
    if (corpus is None) == (corpus_file is None):
        raise ConfigError("pass exactly one of a corpus (sentences) or corpus_file")
    if corpus_file is not None:
        return read_corpus_file(corpus_file)
    if isinstance(corpus, (str, bytes)):
        raise ConfigError("the corpus is a single string; pass an iterable of token sequences "
                          "(or corpus_file=path for a text file)")
    return corpus


def build_corpus(
    corpus: Iterable | None = None,
    *,
    corpus_file: str | os.PathLike | None = None,
    min_count: int = 5,
    max_vocab_size: int | None = None,
    max_final_vocab: int | None = None,
) -> tuple[EncodedCorpus, Vocabulary]:
    """Read a corpus once; return it encoded together with the vocabulary built from it.

    Args:
        corpus: iterable of token sequences (tokens str or int), a 2-D integer array, or
            a list of 1-D integer arrays; or ``corpus_file``: path of a text file.
        min_count, max_vocab_size, max_final_vocab: as in gensim's ``Word2Vec``.

    Raises:
        ConfigError: the corpus, or its vocabulary after ``min_count``, is empty.
    """
    source = _describe(corpus_file)
    corpus = _resolve(corpus, corpus_file)
    if is_integer_corpus(corpus):
        flat, offsets = _flatten_integer_corpus(corpus)
        values, counts, candidate_ids = _integer_keys_and_ids(flat)
        vocab = finalize_vocabulary(values, counts, min_count=min_count,
                                    max_final_vocab=max_final_vocab, max_vocab_size=max_vocab_size)
        candidate_keys = values
    else:
        candidate_ids, offsets, candidate_keys, counts = _scan_stream(corpus, max_vocab_size, source)
        vocab = finalize_vocabulary(candidate_keys, counts, min_count=min_count,
                                    max_final_vocab=max_final_vocab)
    if offsets[-1] == 0:
        raise _empty_error(source, "has no tokens", min_count)
    if len(vocab) == 0:
        raise _empty_error(source, f"has no key that occurs at least min_count={min_count} times", min_count)
    candidate_to_row = np.fromiter((vocab.key_to_index.get(k, -1) for k in _plain_iter(candidate_keys)),
                                   dtype=np.int32, count=len(candidate_keys))
    encoded = _remap(candidate_ids, candidate_to_row, offsets, raw_tokens=int(offsets[-1]))
    return encoded, vocab


def _plain_iter(keys) -> Iterator:
    if isinstance(keys, np.ndarray):
        return iter(keys.tolist())
    return iter(keys)


def encode_corpus(
    corpus: Iterable | None,
    vocab: Vocabulary,
    *,
    corpus_file: str | os.PathLike | None = None,
) -> EncodedCorpus:
    """Encode a corpus with a fixed vocabulary; unknown tokens are dropped."""
    source = _describe(corpus_file)
    corpus = _resolve(corpus, corpus_file)
    lookup = vocab.key_to_index
    if is_integer_corpus(corpus):
        flat, offsets = _flatten_integer_corpus(corpus)
        values, _, candidate_ids = _integer_keys_and_ids(flat)
        rows = np.fromiter((lookup.get(v, -1) for v in values.tolist()), dtype=np.int32, count=values.shape[0])
        return _remap(candidate_ids, rows, offsets, raw_tokens=int(offsets[-1]))
    ids = array("i")
    lengths = array("q")
    get = lookup.get
    for number, sentence in enumerate(corpus):
        _check_sentence(sentence, number, source)
        before = len(ids)
        try:
            ids.extend(map(get, sentence, repeat(-1)))
        except TypeError as exc:
            raise DataFormatError(f"sentence {number} of {source} has an unusable token: {exc}") from exc
        lengths.append(len(ids) - before)
    tokens = np.frombuffer(ids, dtype=np.int32) if len(ids) else np.zeros(0, dtype=np.int32)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    if len(lengths):
        np.cumsum(np.frombuffer(lengths, dtype=np.int64), out=offsets[1:])
    return _compact(tokens, offsets, raw_tokens=int(offsets[-1]))
