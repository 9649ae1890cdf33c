"""Pointwise metrics against brute-force references on small random data (ties included)."""

import math

import numpy as np
import pytest
import torch

from recembed.errors import ConfigError, InvalidDtypeError, ShapeMismatchError, UnknownKeyError
from recembed.train.metrics import MetricAccumulator, auc, log_loss, mae, rmse


def pairwise_auc(scores, labels):
    """O(n^2) definition: P(score_pos > score_neg) + 0.5 P(tie)."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return total / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(8))
def test_auc_matches_pairwise_count_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    scores = rng.integers(0, 6, size=n).astype(np.float32)  # only 6 distinct values: heavy ties
    labels = rng.integers(0, 2, size=n)
    labels[0], labels[1] = 0, 1
    expected = pairwise_auc(scores.tolist(), labels.tolist())
    assert auc(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(
        expected, abs=1e-12
    )


def test_auc_continuous_scores_and_input_forms():
    rng = np.random.default_rng(42)
    scores = rng.normal(size=500)
    labels = (rng.random(500) < 0.3).astype(np.int64)
    expected = pairwise_auc(scores.tolist(), labels.tolist())
    assert auc(scores, labels) == pytest.approx(expected, abs=1e-12)  # numpy in
    assert auc(
        torch.tensor(scores).reshape(-1, 1), torch.tensor(labels, dtype=torch.bool)
    ) == pytest.approx(expected, abs=1e-12)


def test_auc_hand_values():
    assert auc(torch.tensor([0.1, 0.4, 0.4, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.875
    assert auc([1.0, 2.0], [0, 1]) == 1.0
    assert auc([2.0, 1.0], [0, 1]) == 0.0
    assert auc([5.0, 5.0, 5.0], [0, 1, 1]) == 0.5
    assert auc([-math.inf, math.inf], [0, 1]) == 1.0


def test_auc_nan_scores_give_nan():
    assert math.isnan(auc([0.1, float("nan")], [0, 1]))


def test_auc_errors():
    with pytest.raises(ConfigError, match="both classes.*all 3 labels are 1"):
        auc([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ShapeMismatchError, match="3 elements but labels has 2"):
        auc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ConfigError, match=r"labels\[1\] = 2"):
        auc([0.1, 0.2], [0, 2])
    with pytest.raises(ConfigError, match="zero samples"):
        auc([], [])
    with pytest.raises(InvalidDtypeError):
        auc(["a", "b"], [0, 1])


def test_log_loss_matches_formula_and_logits_path():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3, size=200)
    labels = rng.integers(0, 2, size=200).astype(np.float64)
    probs = 1 / (1 + np.exp(-logits))
    expected = -np.mean(labels * np.log(probs) + (1 - labels) * np.log(1 - probs))
    assert log_loss(probs, labels) == pytest.approx(expected, rel=1e-9)
    assert log_loss(logits, labels, from_logits=True) == pytest.approx(expected, rel=1e-9)
    assert log_loss(torch.tensor([0.9, 0.2]), torch.tensor([1, 0])) == pytest.approx(
        -(math.log(0.9) + math.log(0.8)) / 2
    )


def test_log_loss_clipping_soft_labels_and_extreme_logits():
    assert log_loss([0.0], [1.0], eps=1e-7) == pytest.approx(-math.log(1e-7))
    assert log_loss([0.25], [0.5]) == pytest.approx(-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)))
    # softplus form stays finite and exact where 1 - sigmoid(x) underflows
    assert log_loss([100.0], [0.0], from_logits=True) == pytest.approx(100.0)


def test_log_loss_errors():
    with pytest.raises(ConfigError, match=r"probs\[1\] = 1.5.*from_logits=True"):
        log_loss([0.5, 1.5], [0, 1])
    with pytest.raises(ConfigError, match=r"labels\[0\] = -1"):
        log_loss([0.5], [-1])
    with pytest.raises(ConfigError, match="eps"):
        log_loss([0.5], [1], eps=0.7)
    with pytest.raises(ShapeMismatchError, match="probs has 2 elements but labels has 1"):
        log_loss([0.5, 0.5], [1])


def test_rmse_mae():
    p, t = torch.tensor([1.0, 3.0, -2.0]), torch.tensor([2.0, 5.0, -2.0])
    assert rmse(p, t) == pytest.approx(math.sqrt(5 / 3))
    assert mae(p, t) == pytest.approx(1.0)
    with pytest.raises(ShapeMismatchError, match="predictions has 3 elements but targets has 2"):
        rmse(p, t[:2])


def test_accumulator_equals_one_shot_metrics():
    rng = np.random.default_rng(3)
    logits = torch.tensor(rng.normal(size=301))
    labels = torch.tensor(rng.integers(0, 2, size=301))
    acc = MetricAccumulator(["auc", "log_loss", "rmse", "mae"], from_logits=True)
    for start in range(0, 301, 64):
        acc.update(logits[start : start + 64].float().unsqueeze(1), labels[start : start + 64])
    assert acc.num_samples == 301
    got = acc.compute()
    probs = torch.sigmoid(logits.float().double())
    assert got["auc"] == pytest.approx(auc(logits, labels), abs=1e-12)
    assert got["log_loss"] == pytest.approx(
        log_loss(logits.float(), labels, from_logits=True), rel=1e-12
    )
    assert got["rmse"] == pytest.approx(rmse(probs, labels), rel=1e-12)
    assert got["mae"] == pytest.approx(mae(probs, labels), rel=1e-12)
    acc.reset()
    assert acc.num_samples == 0
    with pytest.raises(ConfigError, match="before any update"):
        acc.compute()


def test_accumulator_errors():
    with pytest.raises(UnknownKeyError, match="'recall'.*available"):
        MetricAccumulator(["auc", "recall"])
    acc = MetricAccumulator()
    acc.update([0.1], [0])
    with pytest.raises(ShapeMismatchError, match="batch 1: scores has 2 elements but labels has 3"):
        acc.update([0.1, 0.2], [0, 1, 1])
