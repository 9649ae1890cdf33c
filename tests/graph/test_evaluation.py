import numpy as np
import pytest

from recembed.errors import ConfigError, ShapeMismatchError
from recembed.graph.evaluation import kmeans, normalized_mutual_info
from recembed.graph.generators import chung_lu_edges, planted_partition_edges


def test_nmi_known_values():
    assert normalized_mutual_info([0, 0, 1, 1], [5, 5, 9, 9]) == pytest.approx(1.0)
    assert normalized_mutual_info([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0)
    # a = [0,0,0,1], b = [0,0,1,1]: I = 0.5 log 2 + 0.25 log(4/3)... computed by hand:
    a, b = [0, 0, 0, 1], [0, 0, 1, 1]
    h_a = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    h_b = np.log(2)
    mutual = 0.5 * np.log(0.5 / (0.75 * 0.5)) + 0.25 * np.log(0.25 / (0.75 * 0.5)) + 0.25 * np.log(0.25 / (0.25 * 0.5))
    assert normalized_mutual_info(a, b) == pytest.approx(mutual / ((h_a + h_b) / 2))
    with pytest.raises(ShapeMismatchError):
        normalized_mutual_info([0, 1], [0])


def test_kmeans_separates_blobs():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10]])
    truth = np.repeat(np.arange(3), 30)
    x = centers[truth] + rng.normal(scale=0.5, size=(90, 2))
    assert normalized_mutual_info(kmeans(x, 3, seed=1), truth) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="k must be"):
        kmeans(x, 0)


def test_planted_partition_density():
    src, dst, labels = planted_partition_edges(2, 100, p_in=0.3, p_out=0.02, seed=1)
    assert (src < dst).all()
    same = labels[src] == labels[dst]
    within_pairs, across_pairs = 2 * 100 * 99 / 2, 100 * 100
    assert same.sum() / within_pairs == pytest.approx(0.3, abs=0.03)
    assert (~same).sum() / across_pairs == pytest.approx(0.02, abs=0.01)


def test_chung_lu_degrees_are_heavy_tailed():
    src, dst = chung_lu_edges(2000, 20000, exponent=2.5, seed=0)
    degree = np.bincount(np.concatenate([src, dst]), minlength=2000)
    assert src.shape == (20000,) and degree.sum() == 40000
    assert degree.max() > 20 * np.median(degree)
