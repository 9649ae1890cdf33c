"""Embeddings learned from sequences: Word2Vec (skip-gram / CBOW) and Item2Vec.

Layers, bottom up: ``sampling`` (subsampling and noise tables) and ``kernels`` (numba
training loops) know nothing of keys; ``vocabulary`` and ``corpus`` turn token streams
into int32 arrays; ``training`` runs the kernels on threads; ``model`` holds the training
state that ``word2vec`` and ``item2vec`` expose; ``keyed_vectors`` and ``formats`` are the
trained vectors and their files; ``evaluation`` scores them.

Example:
    >>> from recembed.seq2vec import Word2Vec
    >>> model = Word2Vec([["a", "b", "c"]] * 50, vector_size=8, min_count=1, workers=1)
    >>> model.wv["a"].shape
    (8,)
"""

from recembed.seq2vec.evaluation import (
    WordPairResult,
    evaluate_word_pairs,
    spearman_correlation,
)
from recembed.seq2vec.item2vec import Item2Vec
from recembed.seq2vec.keyed_vectors import KeyedVectors
from recembed.seq2vec.word2vec import Word2Vec

__all__ = ["Item2Vec", "KeyedVectors", "Word2Vec", "WordPairResult", "evaluate_word_pairs", "spearman_correlation"]
