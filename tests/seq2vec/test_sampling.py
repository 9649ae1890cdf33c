import numpy as np
import pytest

from recembed.errors import ConfigError
from recembed.seq2vec.sampling import (
    SCALE_32,
    alias_table,
    keep_probabilities,
    keep_thresholds,
    noise_distribution,
)


def test_keep_probability_follows_word2vec_formula():
    counts = np.array([10_000, 1_000, 100, 10, 1])
    sample = 1e-3
    t = sample * counts.sum()  # 11.111
    expected = np.minimum((np.sqrt(counts / t) + 1) * t / counts, 1.0)
    np.testing.assert_allclose(keep_probabilities(counts, sample), expected)
    # The most frequent token is kept rarely, the rare ones always.
    assert keep_probabilities(counts, sample)[0] == pytest.approx((np.sqrt(10_000 / t) + 1) * t / 10_000)
    assert keep_probabilities(counts, sample)[0] < 0.05
    assert keep_probabilities(counts, sample)[-1] == 1.0


def test_sample_zero_keeps_everything_and_bad_sample_is_rejected():
    assert keep_probabilities(np.array([5, 500]), 0.0).tolist() == [1.0, 1.0]
    assert keep_thresholds(np.array([5, 500]), 0.0).tolist() == [2**32, 2**32]
    with pytest.raises(ConfigError, match="sample"):
        keep_probabilities(np.array([1]), -0.1)


def test_noise_distribution_is_count_to_the_075():
    counts = np.array([81, 16, 1])
    np.testing.assert_allclose(noise_distribution(counts, 0.75), np.array([27, 8, 1]) / 36)


def _alias_probabilities(threshold: np.ndarray, alias: np.ndarray) -> np.ndarray:
    """The exact distribution an alias table samples from."""
    size = threshold.shape[0]
    accept = threshold / SCALE_32
    prob = accept / size
    np.add.at(prob, alias, (1.0 - accept) / size)
    return prob


def test_alias_table_reproduces_the_noise_distribution_exactly():
    counts = np.random.default_rng(0).integers(1, 10_000, size=500)
    threshold, alias = alias_table(counts, 0.75)
    expected = counts**0.75 / (counts**0.75).sum()
    np.testing.assert_allclose(_alias_probabilities(threshold, alias), expected, atol=1e-9)


def test_alias_draws_follow_count_to_the_075_empirically():
    counts = np.array([1000, 300, 50, 5, 1])
    threshold, alias = alias_table(counts, 0.75)
    rng = np.random.default_rng(1)
    n = 400_000
    column = rng.integers(0, counts.shape[0], size=n)
    draws = np.where(rng.integers(0, 2**32, size=n, dtype=np.uint64) < threshold[column], column, alias[column])
    freq = np.bincount(draws, minlength=counts.shape[0]) / n
    np.testing.assert_allclose(freq, counts**0.75 / (counts**0.75).sum(), atol=0.004)
