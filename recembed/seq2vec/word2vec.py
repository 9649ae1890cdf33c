"""Word2Vec: skip-gram and CBOW with negative sampling, with gensim's keyword names.

A gensim user switches by changing the import::

    from recembed.seq2vec import Word2Vec
    model = Word2Vec(sentences, vector_size=100, window=5, min_count=5, sg=1, workers=2)
    model.wv.most_similar("king")

Random walks (Node2Vec, DeepWalk) go in as a 2-D integer array without a Python loop::

    model = Word2Vec(sentences=walks, vector_size=64, window=5, min_count=1, sg=1)   # walks: (W, L) int64
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from recembed.seq2vec.kernels import WINDOW
from recembed.seq2vec.model import NegativeSamplingModel

__all__ = ["Word2Vec"]


class Word2Vec(NegativeSamplingModel):
    """Word2Vec (Mikolov et al. 2013) with negative sampling; trains at once when given a corpus.

    Args:
        sentences: iterable of token sequences (tokens str or int; may be a one-shot
            generator - it is read once), a 2-D integer array (rows are sentences), or a
            list of 1-D integer arrays.
        corpus_file: instead of ``sentences``, a UTF-8 text file, one sentence per line.
        vector_size: dimension ``D`` of the vectors.
        alpha, min_alpha: learning rate, decayed linearly from ``alpha`` to ``min_alpha``
            over all epochs.
        window: largest distance between the center and a context token.
        min_count: drop tokens seen fewer times. ``max_vocab_size``: bound on distinct keys
            held while counting (rarer keys are pruned, as in gensim).
            ``max_final_vocab``: keep at most this many keys.
        sample: subsampling threshold for frequent tokens (0 disables).
        seed: random seed. ``workers``: training threads (``workers=1`` is deterministic).
        sg: 1 for skip-gram, 0 for CBOW. ``hs``: must be 0 (hierarchical softmax is not
            supported). ``negative``: noise words per positive (>= 1).
        ns_exponent: exponent of the unigram noise distribution.
        cbow_mean: 1 to average the context vectors in CBOW, 0 to sum them.
        epochs: passes over the corpus. ``shrink_windows``: draw each center's window
            uniformly from 1..window (word2vec's "dynamic window").
        progress: tqdm bar (True), log lines only (False), or auto (None: a bar for long
            runs on a terminal). Log lines go to the ``recembed.seq2vec`` logger.

    Attributes:
        wv: the trained :class:`~recembed.seq2vec.KeyedVectors` of shape ``(V, vector_size)``.
    """

    context_rule = WINDOW

    def __init__(self, sentences: Iterable | None = None, corpus_file: str | os.PathLike | None = None,
                 vector_size: int = 100, alpha: float = 0.025, window: int = 5, min_count: int = 5,
                 max_vocab_size: int | None = None, sample: float = 1e-3, seed: int = 1, workers: int = 3,
                 min_alpha: float = 0.0001, sg: int = 0, hs: int = 0, negative: int = 5,
                 ns_exponent: float = 0.75, cbow_mean: int = 1, epochs: int = 5,
                 max_final_vocab: int | None = None, shrink_windows: bool = True,
                 progress: bool | None = None) -> None:
        super().__init__(vector_size=vector_size, alpha=alpha, window=window, min_count=min_count,
                         max_vocab_size=max_vocab_size, sample=sample, seed=seed, workers=workers,
                         min_alpha=min_alpha, sg=sg, hs=hs, negative=negative, ns_exponent=ns_exponent,
                         cbow_mean=cbow_mean, epochs=epochs, max_final_vocab=max_final_vocab,
                         shrink_windows=shrink_windows, progress=progress)
        if sentences is not None or corpus_file is not None:
            self.build_vocab(sentences, corpus_file=corpus_file)
            self.train()
            self.release_corpus()

    def _constructor_params(self) -> dict[str, Any]:
        return {"vector_size": self.vector_size, "alpha": self.alpha, "window": self.window,
                "min_count": self.min_count, "max_vocab_size": self.max_vocab_size, "sample": self.sample,
                "seed": self.seed, "workers": self.workers, "min_alpha": self.min_alpha, "sg": self.sg,
                "hs": self.hs, "negative": self.negative, "ns_exponent": self.ns_exponent,
                "cbow_mean": self.cbow_mean, "epochs": self.epochs, "max_final_vocab": self.max_final_vocab,
                "shrink_windows": self.shrink_windows, "progress": self.progress}
