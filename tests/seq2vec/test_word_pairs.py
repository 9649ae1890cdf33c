import math

import numpy as np
import pytest

from recembed.seq2vec import KeyedVectors, evaluate_word_pairs, spearman_correlation
from recembed.seq2vec.evaluation import average_ranks


def test_average_ranks_share_ties():
    assert average_ranks(np.array([10.0, 20.0, 10.0, 5.0])).tolist() == [2.5, 4.0, 2.5, 1.0]


def test_spearman_known_values():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman_correlation(x, x**3) == pytest.approx(1.0)
    assert spearman_correlation(x, -x) == pytest.approx(-1.0)
    # d = rank differences (0, 0, -1, 1, 0): rho = 1 - 6 * 2 / (5 * 24) = 0.9
    assert spearman_correlation(x, np.array([1.0, 2.0, 4.0, 3.0, 5.0])) == pytest.approx(0.9)
    # With ties: Pearson of average ranks [1, 2.5, 2.5, 4] and [1, 2, 3, 4].
    ra = np.array([1, 2.5, 2.5, 4]) - 2.5
    rb = np.array([1, 2, 3, 4]) - 2.5
    expected = (ra * rb).sum() / math.sqrt((ra * ra).sum() * (rb * rb).sum())
    assert spearman_correlation(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(expected)
    assert math.isnan(spearman_correlation(np.array([1.0]), np.array([2.0])))


def test_evaluate_word_pairs_skips_unknown_keys():
    kv = KeyedVectors(["a", "b", "c"], np.array([[1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32))
    pairs = [("a", "b", 9.0), ("a", "c", 1.0), ("b", "c", 5.0), ("a", "zzz", 3.0)]
    result = evaluate_word_pairs(kv, pairs)
    assert result.evaluated == 3 and result.skipped == 1
    assert result.spearman == pytest.approx(1.0)  # cosines 0.8, 0.0, 0.6 order like 9, 1, 5
