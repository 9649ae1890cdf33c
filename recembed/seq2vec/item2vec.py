"""Item2Vec (Barkan & Koenigstein 2016): item embeddings from sessions or baskets.

Word2Vec's skip-gram with negative sampling where a basket is a set, not a sequence:
every other item of the basket is a context of each item (no window). Same kernels and
same :class:`~recembed.seq2vec.KeyedVectors` as :class:`~recembed.seq2vec.Word2Vec`.

Example::

    baskets = [["milk", "bread", "butter"], ["beer", "chips"], ...]   # or item ids
    model = Item2Vec(baskets, vector_size=32, epochs=20)
    model.wv.most_similar("milk")
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from recembed.seq2vec.kernels import WHOLE_SEQUENCE
from recembed.seq2vec.model import NegativeSamplingModel

__all__ = ["Item2Vec"]


class Item2Vec(NegativeSamplingModel):
    """Item embeddings in which all items of a basket are each other's context.

    Args:
        sessions: iterable of baskets (item keys str or int), a 2-D integer array, or a
            list of 1-D integer arrays. Trains at once when given.
        min_count: drop items seen fewer times (default 1: catalogs are long-tailed and
            every item usually needs a vector; raise it to drop noisy rare items).
        sg: 1 (default) pairs each item with every other item of its basket, as in the
            paper; 0 predicts each item from the mean (``cbow_mean=1``) of the others.
        other arguments: as in :class:`~recembed.seq2vec.Word2Vec`. Baskets of ``n`` kept
            items cost ``n * (n - 1)`` updates per epoch with ``sg=1``.
    """

    context_rule = WHOLE_SEQUENCE

    def __init__(self, sessions: Iterable | None = None, vector_size: int = 100, alpha: float = 0.025,
                 min_count: int = 1, max_vocab_size: int | None = None, sample: float = 1e-3, seed: int = 1,
                 workers: int = 3, min_alpha: float = 0.0001, sg: int = 1, hs: int = 0, negative: int = 5,
                 ns_exponent: float = 0.75, cbow_mean: int = 1, epochs: int = 5,
                 max_final_vocab: int | None = None, progress: bool | None = None) -> None:
        # The window is unused by the whole-basket context rule; 1 passes validation.
        super().__init__(vector_size=vector_size, alpha=alpha, window=1, min_count=min_count,
                         max_vocab_size=max_vocab_size, sample=sample, seed=seed, workers=workers,
                         min_alpha=min_alpha, sg=sg, hs=hs, negative=negative, ns_exponent=ns_exponent,
                         cbow_mean=cbow_mean, epochs=epochs, max_final_vocab=max_final_vocab,
                         shrink_windows=False, progress=progress)
        if sessions is not None:
            self.build_vocab(sessions)
            self.train()
            self.release_corpus()

    def _constructor_params(self) -> dict[str, Any]:
        return {"vector_size": self.vector_size, "alpha": self.alpha, "min_count": self.min_count,
                "max_vocab_size": self.max_vocab_size, "sample": self.sample, "seed": self.seed,
                "workers": self.workers, "min_alpha": self.min_alpha, "sg": self.sg, "hs": self.hs,
                "negative": self.negative, "ns_exponent": self.ns_exponent, "cbow_mean": self.cbow_mean,
                "epochs": self.epochs, "max_final_vocab": self.max_final_vocab, "progress": self.progress}
