"""Sampling tables that the training kernels read: subsampling and negative-sampling noise.

Both are plain numpy, computed once from the vocabulary counts, so they can be tested
without training anything.

* :func:`keep_probabilities` - word2vec's frequent-token subsampling. A token whose count
  is ``c`` out of ``T`` retained tokens is kept with probability
  ``(sqrt(c / (sample * T)) + 1) * (sample * T) / c``, capped at 1 (Mikolov et al. 2013,
  as implemented in the original word2vec tool).
* :func:`alias_table` - Walker's alias method for drawing negatives from the unigram
  distribution raised to ``ns_exponent``: one uniform index and one uniform threshold per
  draw, O(1) regardless of vocabulary size.

Thresholds are stored as integers scaled by 2**32 so the kernels compare them with the
upper 32 bits of their random state, with no float conversion in the inner loop.

Example:
    >>> import numpy as np
    >>> keep = keep_probabilities(np.array([1000, 10, 1]), sample=1e-3)
    >>> threshold, alias = alias_table(np.array([100, 10, 1]), exponent=0.75)
"""

from __future__ import annotations

import numpy as np

from recembed.errors import ConfigError

__all__ = ["SCALE_32", "alias_table", "keep_probabilities", "keep_thresholds", "noise_distribution"]

#: Probabilities are stored as ``round(p * SCALE_32)`` and compared with a uniform uint32.
SCALE_32 = float(2**32)


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """Probability of keeping each token under frequent-token subsampling.

    Args:
        counts: ``(V,)`` occurrence counts of the retained vocabulary.
        sample: threshold as a fraction of the total count; ``0`` disables subsampling.

    Returns:
        ``(V,)`` float64 probabilities in ``(0, 1]``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if not 0.0 <= sample < 1.0:
        raise ConfigError(f"sample must be in [0, 1) (0 disables subsampling), got {sample!r}")
    if counts.size == 0 or sample == 0.0:
        return np.ones(counts.shape, dtype=np.float64)
    threshold_count = sample * counts.sum()
    with np.errstate(divide="ignore"):
        prob = (np.sqrt(counts / threshold_count) + 1.0) * (threshold_count / counts)
    return np.minimum(prob, 1.0)


def keep_thresholds(counts: np.ndarray, sample: float) -> np.ndarray:
    """:func:`keep_probabilities` scaled to integers: keep when ``uint32_random < threshold``.

    Returns:
        ``(V,)`` uint64 thresholds in ``[0, 2**32]`` (``2**32`` means always keep).
    """
    prob = keep_probabilities(counts, sample)
    return np.round(prob * SCALE_32).astype(np.uint64)


def noise_distribution(counts: np.ndarray, exponent: float) -> np.ndarray:
    """The negative-sampling distribution ``count**exponent / sum(count**exponent)``.

    Returns:
        ``(V,)`` float64 probabilities summing to 1.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size == 0:
        raise ConfigError("the vocabulary is empty: cannot build a negative-sampling distribution")
    if not np.isfinite(exponent):
        raise ConfigError(f"ns_exponent must be finite, got {exponent!r}")
    weights = counts**exponent
    total = weights.sum()
    if not np.isfinite(total) or total <= 0.0:
        raise ConfigError(f"ns_exponent={exponent!r} gives a degenerate noise distribution for these counts")
    return weights / total


def alias_table(counts: np.ndarray, exponent: float) -> tuple[np.ndarray, np.ndarray]:
    """Alias tables for O(1) draws from ``noise_distribution(counts, exponent)``.

    A draw picks a column ``i`` uniformly, then returns ``i`` if a uniform uint32 is below
    ``threshold[i]`` and ``alias[i]`` otherwise.

    Returns:
        ``threshold`` ``(V,)`` uint64 in ``[0, 2**32]`` and ``alias`` ``(V,)`` int32.
    """
    prob = noise_distribution(counts, exponent)
    size = prob.size
    scaled = prob * size
    alias = np.arange(size, dtype=np.int32)
    accept = np.ones(size, dtype=np.float64)
    small = [i for i in np.flatnonzero(scaled < 1.0)]
    large = [i for i in np.flatnonzero(scaled >= 1.0)]
    # Vose's pairing: each under-full column is topped up by one over-full column.
    while small and large:
        s = small.pop()
        g = large[-1]
        accept[s] = scaled[s]
        alias[s] = g
        scaled[g] -= 1.0 - scaled[s]
        if scaled[g] < 1.0:
            large.pop()
            small.append(g)
    # Columns left over are full up to rounding error.
    threshold = np.round(np.clip(accept, 0.0, 1.0) * SCALE_32).astype(np.uint64)
    return threshold, alias
