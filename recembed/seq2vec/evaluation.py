"""Intrinsic evaluation of keyed vectors against human (or ground-truth) similarity scores.

Example:
    >>> result = evaluate_word_pairs(kv, [("cat", "dog", 8.5), ("cat", "car", 1.0)])  # doctest: +SKIP
    >>> result.spearman, result.skipped  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import numpy as np

from recembed.errors import ConfigError

__all__ = ["WordPairResult", "average_ranks", "evaluate_word_pairs", "spearman_correlation"]


@dataclass(frozen=True)
class WordPairResult:
    """Spearman correlation between model cosines and reference scores.

    ``evaluated`` pairs had both keys in the vocabulary; ``skipped`` pairs did not.
    ``spearman`` is NaN when fewer than two pairs could be evaluated.
    """

    spearman: float
    evaluated: int
    skipped: int

    def __float__(self) -> float:
        return self.spearman


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    ranks = np.empty(values.shape[0], dtype=np.float64)
    # Runs of equal values: [start, end) in sorted order.
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [values.shape[0]]))
    for start, end in zip(starts.tolist(), ends.tolist()):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return ranks


def spearman_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (Pearson correlation of average ranks); NaN if undefined."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"spearman_correlation needs two 1-D arrays of equal length, got {x.shape} and {y.shape}")
    if x.shape[0] < 2:
        return float("nan")
    rx = average_ranks(x) - (x.shape[0] + 1) / 2.0
    ry = average_ranks(y) - (y.shape[0] + 1) / 2.0
    denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    if denominator == 0.0:
        return float("nan")
    return float((rx * ry).sum() / denominator)


def evaluate_word_pairs(kv, pairs: Iterable[tuple[Hashable, Hashable, float]]) -> WordPairResult:
    """Spearman correlation of ``kv.similarity(w1, w2)`` with the pairs' scores.

    Args:
        kv: a :class:`~recembed.seq2vec.KeyedVectors`.
        pairs: ``(key1, key2, score)`` triples; pairs with a key missing from ``kv`` are
            skipped and counted in the result.
    """
    model_scores: list[float] = []
    reference: list[float] = []
    skipped = 0
    for number, pair in enumerate(pairs):
        try:
            first, second, score = pair
            score = float(score)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"pair {number} must be (key1, key2, score), got {pair!r}") from exc
        if first not in kv or second not in kv:
            skipped += 1
            continue
        model_scores.append(kv.similarity(first, second))
        reference.append(score)
    rho = spearman_correlation(np.array(model_scores), np.array(reference))
    return WordPairResult(spearman=rho, evaluated=len(model_scores), skipped=skipped)
