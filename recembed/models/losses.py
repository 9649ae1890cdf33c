"""Training losses for scoring models: pointwise, pairwise (BPR) and sampled softmax.

All losses return the mean over the batch as a scalar tensor. Shape errors raise
:class:`~recembed.errors.ShapeMismatchError` rather than broadcasting silently.

Example:
    >>> pos, neg = model(pos_kjt), model(neg_kjt)
    >>> loss = bpr_loss(pos, neg)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recembed.errors import ShapeMismatchError

__all__ = ["mse_loss", "bpr_loss", "sampled_softmax_loss", "binary_cross_entropy_with_logits"]


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, names: str, owner: str) -> None:
    if a.shape != b.shape:
        raise ShapeMismatchError(f"{owner}: {names} have shapes {tuple(a.shape)} and {tuple(b.shape)}; they must match")


def mse_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error for explicit ratings. ``predictions``, ``targets``: (B,) -> scalar."""
    _check_same_shape(predictions, targets, "predictions and targets", "mse_loss")
    return F.mse_loss(predictions, targets.to(predictions.dtype))


def binary_cross_entropy_with_logits(
    logits: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Log loss on raw logits (click prediction). ``logits``, ``labels`` (0/1): (B,) -> scalar.

    A pass-through to ``torch.nn.functional.binary_cross_entropy_with_logits`` with a shape
    check, so a ``(B, 1)`` logit against ``(B,)`` labels fails instead of broadcasting to (B, B).
    """
    _check_same_shape(logits, labels, "logits and labels", "binary_cross_entropy_with_logits")
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=pos_weight)


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking: ``-mean(log sigmoid(pos - neg))`` (Rendle et al. 2009).

    Args:
        pos_scores: ``(B,)`` scores of the observed items.
        neg_scores: ``(B,)`` one negative per positive, or ``(B, K)`` K negatives each
            (every pair counts once in the mean).
    Returns:
        scalar loss.
    """
    if pos_scores.dim() != 1:
        raise ShapeMismatchError(f"bpr_loss: pos_scores must be (B,), got {tuple(pos_scores.shape)}")
    if neg_scores.dim() == 1:
        _check_same_shape(pos_scores, neg_scores, "pos_scores and neg_scores", "bpr_loss")
        diff = pos_scores - neg_scores
    elif neg_scores.dim() == 2 and neg_scores.shape[0] == pos_scores.shape[0]:
        diff = pos_scores.unsqueeze(1) - neg_scores
    else:
        raise ShapeMismatchError(
            f"bpr_loss: neg_scores must be (B,) or (B, K) with B={pos_scores.shape[0]}, got {tuple(neg_scores.shape)}"
        )
    # -log(sigmoid(x)) == softplus(-x), stable for large |x|.
    return F.softplus(-diff).mean()


def sampled_softmax_loss(
    pos_scores: torch.Tensor,
    neg_scores: torch.Tensor,
    log_q_pos: torch.Tensor | None = None,
    log_q_neg: torch.Tensor | None = None,
    neg_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy of each positive against its K sampled negatives.

    ``logits = [pos - log_q_pos, neg_1 - log_q_neg_1, ..., neg_K - log_q_neg_K]`` and the
    loss is ``-log softmax(logits)[0]``, averaged over the batch. Subtracting the log
    sampling probability (log-Q correction, Bengio & Senecal 2008) makes the sampled
    softmax an unbiased-in-the-limit estimate of the full softmax when negatives are
    drawn non-uniformly (e.g. by popularity). Only differences matter, so ``log q`` and
    ``log(K q)`` give the same loss as long as positives and negatives use the same one;
    with uniform sampling the correction is a constant and can be left out.

    Args:
        pos_scores: ``(B,)``.
        neg_scores: ``(B, K)``.
        log_q_pos: ``(B,)`` log sampling probability of each positive, or None.
        log_q_neg: ``(B, K)`` or ``(K,)`` (negatives shared by the batch), or None.
        neg_mask: ``(B, K)`` bool, True where a negative must be ignored (e.g. it is the
            positive itself: an "accidental hit").
    Returns:
        scalar loss.

    Example:
        >>> items, log_q = sampler.sample(batch_size, 20)
        >>> loss = sampled_softmax_loss(pos, scores_of(items), sampler.log_q(pos_items), log_q)
    """
    if pos_scores.dim() != 1:
        raise ShapeMismatchError(f"sampled_softmax_loss: pos_scores must be (B,), got {tuple(pos_scores.shape)}")
    batch = pos_scores.shape[0]
    if neg_scores.dim() != 2 or neg_scores.shape[0] != batch:
        raise ShapeMismatchError(
            f"sampled_softmax_loss: neg_scores must be (B, K) with B={batch}, got {tuple(neg_scores.shape)}"
        )
    pos = pos_scores
    neg = neg_scores
    if log_q_pos is not None:
        _check_same_shape(pos_scores, log_q_pos, "pos_scores and log_q_pos", "sampled_softmax_loss")
        pos = pos - log_q_pos
    if log_q_neg is not None:
        if log_q_neg.shape not in (neg_scores.shape, neg_scores.shape[1:]):
            raise ShapeMismatchError(
                f"sampled_softmax_loss: log_q_neg must be (B, K) or (K,) for neg_scores {tuple(neg_scores.shape)}, "
                f"got {tuple(log_q_neg.shape)}"
            )
        neg = neg - log_q_neg
    if neg_mask is not None:
        _check_same_shape(neg_scores, neg_mask, "neg_scores and neg_mask", "sampled_softmax_loss")
        neg = neg.masked_fill(neg_mask.to(torch.bool), float("-inf"))
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()
