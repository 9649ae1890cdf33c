import math

import pytest
import torch

from recembed.errors import ShapeMismatchError
from recembed.models import binary_cross_entropy_with_logits, bpr_loss, mse_loss, sampled_softmax_loss


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_mse_loss():
    assert float(mse_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))) == pytest.approx(2.5)
    with pytest.raises(ShapeMismatchError, match=r"\(2, 1\) and \(2,\)"):
        mse_loss(torch.zeros(2, 1), torch.zeros(2))


def test_bce_passthrough_and_shape_guard():
    logits, labels = torch.tensor([0.5, -1.0]), torch.tensor([1, 0])
    expected = -(math.log(sigmoid(0.5)) + math.log(1 - sigmoid(-1.0))) / 2
    assert float(binary_cross_entropy_with_logits(logits, labels)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ShapeMismatchError):
        binary_cross_entropy_with_logits(torch.zeros(2, 1), torch.zeros(2))


def test_bpr_loss_one_and_many_negatives():
    pos = torch.tensor([2.0, 0.0])
    neg = torch.tensor([1.0, 1.0])
    expected = -(math.log(sigmoid(1.0)) + math.log(sigmoid(-1.0))) / 2
    assert float(bpr_loss(pos, neg)) == pytest.approx(expected, rel=1e-6)
    neg_k = torch.tensor([[1.0, 3.0], [0.0, -2.0]])
    diffs = [1.0, -1.0, 0.0, 2.0]
    expected_k = -sum(math.log(sigmoid(d)) for d in diffs) / 4
    assert float(bpr_loss(pos, neg_k)) == pytest.approx(expected_k, rel=1e-6)
    with pytest.raises(ShapeMismatchError, match="neg_scores"):
        bpr_loss(pos, torch.zeros(3, 2))
    # stable where a naive log(sigmoid) would underflow to -inf
    assert math.isfinite(float(bpr_loss(torch.tensor([-200.0]), torch.tensor([200.0]))))


def test_sampled_softmax_matches_hand_computation_with_log_q():
    pos = torch.tensor([1.0, 0.5])
    neg = torch.tensor([[0.2, -0.3, 0.8], [1.5, 0.0, -1.0]])
    log_q_pos = torch.log(torch.tensor([0.5, 0.1]))
    log_q_neg = torch.log(torch.tensor([[0.2, 0.2, 0.1], [0.4, 0.05, 0.05]]))
    expected = 0.0
    for b in range(2):
        logits = [float(pos[b] - log_q_pos[b])] + [float(neg[b, k] - log_q_neg[b, k]) for k in range(3)]
        expected += -(logits[0] - math.log(sum(math.exp(v) for v in logits)))
    expected /= 2
    loss = sampled_softmax_loss(pos, neg, log_q_pos, log_q_neg)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_sampled_softmax_shared_log_q_and_mask():
    pos = torch.tensor([1.0, 0.5])
    neg = torch.tensor([[0.2, -0.3], [1.5, 0.0]])
    shared = torch.tensor([-1.0, -2.0])
    assert torch.allclose(
        sampled_softmax_loss(pos, neg, log_q_neg=shared),
        sampled_softmax_loss(pos, neg, log_q_neg=shared.expand(2, 2)),
    )
    # masking a negative is the same as never having drawn it
    mask = torch.tensor([[False, True], [False, True]])
    assert torch.allclose(sampled_softmax_loss(pos, neg, neg_mask=mask), sampled_softmax_loss(pos, neg[:, :1]))
    # uniform log-Q is a constant shift of every logit: no effect
    const = torch.full((2,), -3.0)
    assert torch.allclose(sampled_softmax_loss(pos, neg, const, const.view(2, 1).expand(2, 2)), sampled_softmax_loss(pos, neg))


def test_sampled_softmax_shape_errors():
    with pytest.raises(ShapeMismatchError, match="neg_scores must be"):
        sampled_softmax_loss(torch.zeros(2), torch.zeros(3, 4))
    with pytest.raises(ShapeMismatchError, match="log_q_neg"):
        sampled_softmax_loss(torch.zeros(2), torch.zeros(2, 4), log_q_neg=torch.zeros(3))
