"""The training state shared by Word2Vec and Item2Vec: vocabulary, weights, train loop, files.

:class:`NegativeSamplingModel` holds the vocabulary, the input vectors (exposed as the
:class:`~recembed.seq2vec.keyed_vectors.KeyedVectors` ``wv``), the output vectors
``syn1neg`` and the sampling tables, and trains them with the numba kernels. Subclasses
only choose their constructor signature and context rule (a sliding window, or the whole
sequence).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from recembed.errors import CheckpointError, ConfigError
from recembed.seq2vec.corpus import EncodedCorpus, build_corpus, encode_corpus
from recembed.seq2vec.formats import NATIVE_VERSION, atomic_write
from recembed.seq2vec.kernels import WINDOW
from recembed.seq2vec.keyed_vectors import KeyedVectors
from recembed.seq2vec.sampling import alias_table, keep_thresholds
from recembed.seq2vec.training import TrainingPlan, TrainingStats, run_training
from recembed.seq2vec.vocabulary import Vocabulary

__all__ = ["NegativeSamplingModel"]

logger = logging.getLogger("recembed.seq2vec")

_MODEL_FORMAT = "recembed.seq2vec.model"
_SEED_MASK = (1 << 63) - 1


def _check_int(name: str, value: Any, minimum: int, allowed: str | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}{allowed or ''}, got {value!r}")
    return int(value)


def _check_optional_int(name: str, value: Any, minimum: int) -> int | None:
    return None if value is None else _check_int(name, value, minimum, " or None")


def _check_flag(name: str, value: Any) -> bool:
    if value not in (0, 1) or not isinstance(value, (bool, int, np.integer)):
        raise ConfigError(f"{name} must be 0 or 1, got {value!r}")
    return bool(value)


def _check_float(name: str, value: Any, *, positive: bool = False, low: float = 0.0, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not np.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if positive and value <= 0.0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    if value < low or (high is not None and value >= high):
        bound = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be {bound}, got {value!r}")
    return value


class NegativeSamplingModel:
    """Base of :class:`Word2Vec` and :class:`Item2Vec`; see those for the parameters.

    Attributes:
        wv: the trained :class:`KeyedVectors` (its ``vectors`` are the ``(V, D)`` input weights).
        syn1neg: ``(V, D)`` float32 output weights.
        vocabulary: keys with their corpus counts.
        corpus_count / corpus_total_words: sentences and tokens of the vocabulary corpus.
        training_stats: :class:`TrainingStats` of the last :meth:`train` call.
    """

    context_rule: int = WINDOW

    def __init__(self, *, vector_size: int, alpha: float, window: int, min_count: int,
                 max_vocab_size: int | None, sample: float, seed: int, workers: int, min_alpha: float,
                 sg: int, hs: int, negative: int, ns_exponent: float, cbow_mean: int, epochs: int,
                 max_final_vocab: int | None, shrink_windows: bool, progress: bool | None) -> None:
        self.vector_size = _check_int("vector_size", vector_size, 1)
        self.alpha = _check_float("alpha", alpha, positive=True)
        self.window = _check_int("window", window, 1)
        self.min_count = _check_int("min_count", min_count, 0)
        self.max_vocab_size = _check_optional_int("max_vocab_size", max_vocab_size, 1)
        self.sample = _check_float("sample", sample, high=1.0)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"seed must be an int, got {seed!r}")
        self.seed = int(seed)
        self.workers = _check_int("workers", workers, 1)
        self.min_alpha = _check_float("min_alpha", min_alpha)
        self.sg = int(_check_flag("sg", sg))
        if _check_flag("hs", hs):
            raise ConfigError("hs=1 (hierarchical softmax) is not supported; use hs=0 with negative sampling "
                              "(negative > 0)")
        self.hs = 0
        self.negative = _check_int("negative", negative, 0)
        if self.negative == 0:
            raise ConfigError("negative=0 leaves nothing to train (hierarchical softmax is not supported); "
                              "use negative >= 1, typically 5-20")
        self.ns_exponent = _check_float("ns_exponent", ns_exponent, low=-np.inf)
        self.cbow_mean = int(_check_flag("cbow_mean", cbow_mean))
        self.epochs = _check_int("epochs", epochs, 1)
        self.max_final_vocab = _check_optional_int("max_final_vocab", max_final_vocab, 1)
        self.shrink_windows = _check_flag("shrink_windows", shrink_windows)
        if progress not in (None, True, False):
            raise ConfigError(f"progress must be True, False or None (auto), got {progress!r}")
        self.progress = progress
        self.wv = KeyedVectors([], np.zeros((0, self.vector_size), dtype=np.float32))
        self.syn1neg = np.zeros((0, self.vector_size), dtype=np.float32)
        self.vocabulary = Vocabulary(keys=[], counts=np.zeros(0, dtype=np.int64))
        self.corpus_count = 0
        self.corpus_total_words = 0
        self.training_stats: TrainingStats | None = None
        self._encoded: EncodedCorpus | None = None
        self._encoded_source: object = None
        self._tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- parameters kept by save(); subclasses list their constructor's ---------------------
    def _constructor_params(self) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab={len(self.wv)}, vector_size={self.vector_size}, sg={self.sg})"

    # -- vocabulary ------------------------------------------------------------------------
    def build_vocab(self, corpus_iterable: Iterable | None = None, corpus_file: str | os.PathLike | None = None,
                    update: bool = False) -> NegativeSamplingModel:
        """Read the corpus once, build the vocabulary, encode the corpus and initialise weights.

        ``corpus_iterable``: iterable of token sequences, 2-D integer array, or list of
        1-D integer arrays; ``corpus_file``: a text file, one sentence per line.
        """
        if update:
            raise ConfigError("build_vocab(update=True) is not supported; build the vocabulary from the "
                              "whole corpus at once")
        encoded, vocab = build_corpus(corpus_iterable, corpus_file=corpus_file, min_count=self.min_count,
                                      max_vocab_size=self.max_vocab_size, max_final_vocab=self.max_final_vocab)
        self.vocabulary = vocab
        rng = np.random.default_rng(self.seed & _SEED_MASK)
        syn0 = rng.random((len(vocab), self.vector_size), dtype=np.float32)
        syn0 -= 0.5
        syn0 /= self.vector_size
        self.wv = KeyedVectors(vocab.keys, syn0, key_to_index=vocab.key_to_index)
        self.syn1neg = np.zeros((len(vocab), self.vector_size), dtype=np.float32)
        self.corpus_count = encoded.num_sentences
        self.corpus_total_words = encoded.raw_tokens
        self._encoded = encoded
        self._encoded_source = corpus_iterable if corpus_file is None else os.fspath(corpus_file)
        self._tables = None
        logger.info("vocabulary: %d keys kept of the corpus's %d tokens in %d sentences (%d tokens in vocabulary)",
                    len(vocab), encoded.raw_tokens, encoded.num_sentences, encoded.num_tokens)
        return self

    def _sampling_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._tables is None:
            counts = self.vocabulary.counts
            keep = keep_thresholds(counts, self.sample)
            noise_threshold, noise_alias = alias_table(counts, self.ns_exponent)
            self._tables = (keep, noise_threshold, noise_alias)
        return self._tables

    # -- training --------------------------------------------------------------------------
    def _encoded_corpus(self, corpus_iterable: Iterable | None, corpus_file: str | os.PathLike | None) -> EncodedCorpus:
        if corpus_iterable is None and corpus_file is None:
            if self._encoded is None:
                raise ConfigError("train() needs a corpus: pass corpus_iterable or corpus_file")
            return self._encoded
        source = corpus_iterable if corpus_file is None else os.fspath(corpus_file)
        if self._encoded is not None and (source is self._encoded_source or
                                          (isinstance(source, str) and source == self._encoded_source)):
            return self._encoded
        return encode_corpus(corpus_iterable, self.vocabulary, corpus_file=corpus_file)

    def train(self, corpus_iterable: Iterable | None = None, corpus_file: str | os.PathLike | None = None,
              total_examples: int | None = None, total_words: int | None = None, epochs: int | None = None,
              start_alpha: float | None = None, end_alpha: float | None = None) -> tuple[int, int]:
        """Train for ``epochs`` (default: the model's) over the corpus; returns ``(effective, raw)`` word counts.

        The learning rate decays linearly from ``start_alpha`` (default ``alpha``) to
        ``end_alpha`` (default ``min_alpha``) over all epochs of this call. The corpus given
        to :meth:`build_vocab` is reused without re-reading it; ``total_examples`` and
        ``total_words`` are accepted for gensim compatibility and not needed (exact counts
        are known once the corpus is encoded).
        """
        if len(self.wv) == 0:
            raise ConfigError("the model has no vocabulary: call build_vocab(corpus) before train()")
        epochs = self.epochs if epochs is None else _check_int("epochs", epochs, 1)
        alpha_start = self.alpha if start_alpha is None else _check_float("start_alpha", start_alpha, positive=True)
        alpha_end = self.min_alpha if end_alpha is None else _check_float("end_alpha", end_alpha)
        corpus = self._encoded_corpus(corpus_iterable, corpus_file)
        if corpus.num_tokens == 0:
            raise ConfigError("the corpus has no in-vocabulary tokens: nothing to train on")
        self._ensure_trainable_weights()
        keep, noise_threshold, noise_alias = self._sampling_tables()
        plan = TrainingPlan(
            skip_gram=bool(self.sg), cbow_mean=bool(self.cbow_mean), window=self.window,
            shrink_windows=self.shrink_windows, context_rule=self.context_rule, negative=self.negative,
            alpha_start=alpha_start, alpha_end=alpha_end, epochs=epochs, workers=self.workers,
            seed=self.seed & _SEED_MASK, keep_threshold=keep, noise_threshold=noise_threshold,
            noise_alias=noise_alias, progress=self.progress,
        )
        stats = run_training(self.wv.vectors, self.syn1neg, corpus, plan)
        self.wv.invalidate_norms()
        if not np.isfinite(self.wv.vectors).all():
            warnings.warn(f"training diverged: some vectors are NaN or infinite (alpha={alpha_start}); "
                          "lower alpha (0.025 is the usual start)", RuntimeWarning, stacklevel=2)
        self.training_stats = stats
        logger.info("trained %d epochs: %d effective words (%d raw) in %.2fs, %.0f effective words/s",
                    epochs, stats.effective_words, stats.raw_words, stats.seconds, stats.effective_words_per_second)
        return stats.effective_words, stats.raw_words

    def _ensure_trainable_weights(self) -> None:
        vectors = self.wv.vectors
        if not (vectors.flags.c_contiguous and vectors.flags.writeable and vectors.dtype == np.float32):
            self.wv.vectors = np.array(vectors, dtype=np.float32, order="C")
        if not (self.syn1neg.flags.c_contiguous and self.syn1neg.flags.writeable):
            self.syn1neg = np.array(self.syn1neg, dtype=np.float32, order="C")

    def release_corpus(self) -> None:
        """Drop the encoded corpus kept since :meth:`build_vocab` (frees its memory)."""
        self._encoded = None
        self._encoded_source = None

    # -- files -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Save the whole model (parameters, vocabulary counts, both weight matrices).

        Writes ``path`` (JSON), ``path.wv`` + ``path.wv.vectors.npy`` (the KeyedVectors),
        ``path.syn1neg.npy`` and ``path.counts.npy``; each file atomically, the JSON last.
        """
        path = os.fspath(path)
        self.wv.save(path + ".wv")
        with atomic_write(path + ".syn1neg.npy") as out:
            np.save(out, np.ascontiguousarray(self.syn1neg, dtype=np.float32), allow_pickle=False)
        with atomic_write(path + ".counts.npy") as out:
            np.save(out, self.vocabulary.counts.astype(np.int64), allow_pickle=False)
        meta = {"format": _MODEL_FORMAT, "version": NATIVE_VERSION, "class": type(self).__name__,
                "params": self._constructor_params(), "corpus_count": self.corpus_count,
                "corpus_total_words": self.corpus_total_words}
        with atomic_write(path, "w") as out:
            json.dump(meta, out)

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: str | None = None):
        """Load a model written by :meth:`save`; training it again copies memory-mapped weights."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as handle:
                meta = json.load(handle)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot read the model file ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != _MODEL_FORMAT:
            raise CheckpointError(f"{path}: not a recembed seq2vec model file")
        if meta.get("class") != cls.__name__:
            raise CheckpointError(f"{path}: holds a {meta.get('class')}, not a {cls.__name__}; "
                                  f"load it with {meta.get('class')}.load")
        model = cls(**meta["params"])
        wv = KeyedVectors.load(path + ".wv", mmap=mmap)
        try:
            syn1neg = np.load(path + ".syn1neg.npy", mmap_mode=mmap, allow_pickle=False)
            counts = np.load(path + ".counts.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: missing or unreadable weight file ({exc})") from exc
        if syn1neg.shape != wv.vectors.shape or counts.shape != (len(wv),):
            raise CheckpointError(f"{path}: shapes disagree: vectors {wv.vectors.shape}, "
                                  f"syn1neg {syn1neg.shape}, counts {counts.shape}")
        model.wv = wv
        model.syn1neg = syn1neg
        model.vocabulary = Vocabulary(keys=wv.index_to_key, counts=counts, key_to_index=wv.key_to_index)
        model.corpus_count = int(meta.get("corpus_count", 0))
        model.corpus_total_words = int(meta.get("corpus_total_words", 0))
        return model
