"""Pointwise evaluation metrics: ROC AUC, log loss, RMSE, MAE, and a streaming accumulator.

All functions take 1-D tensors (anything reshapeable to ``(N,)``: a ``(N, 1)`` model output
works), compute in float64, and return a Python ``float``. A NaN among the scores gives a
NaN result rather than an error, so a diverged model shows up in the logs instead of
crashing the evaluation.

Ranking metrics (Recall@K, NDCG@K, ...) live in :mod:`recembed.train.ranking`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from recembed.errors import ConfigError, InvalidDtypeError, ShapeMismatchError, UnknownKeyError

__all__ = ["auc", "log_loss", "rmse", "mae", "MetricAccumulator", "POINTWISE_METRICS"]

DEFAULT_EPS = 1e-7
POINTWISE_METRICS: tuple[str, ...] = ("auc", "log_loss", "rmse", "mae")


def _as_flat(x: object, name: str) -> torch.Tensor:
    """Return ``x`` as a detached 1-D CPU tensor; accepts tensors, numpy arrays and lists."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        try:
            t = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InvalidDtypeError(
                f"{name} must be a tensor, numpy array or list of numbers, got {type(x).__name__}"
            ) from exc
    if t.is_complex() or not (t.is_floating_point() or t.dtype == torch.bool or _is_integer(t)):
        raise InvalidDtypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    return t.cpu().reshape(-1)


def _is_integer(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def _paired(predictions: object, targets: object, pred_name: str, target_name: str):
    """Flatten two inputs and check that they have the same, non-zero length."""
    p = _as_flat(predictions, pred_name)
    t = _as_flat(targets, target_name)
    if p.numel() != t.numel():
        raise ShapeMismatchError(
            f"{pred_name} has {p.numel()} elements but {target_name} has {t.numel()}; "
            "they must have one entry per sample"
        )
    if p.numel() == 0:
        raise ConfigError(f"cannot compute a metric over zero samples ({pred_name} is empty)")
    return p.to(torch.float64), t.to(torch.float64)


def _check_binary(labels: torch.Tensor, name: str = "labels") -> torch.Tensor:
    """Return a bool tensor; raise if any label is not exactly 0 or 1."""
    bad = (labels != 0) & (labels != 1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ConfigError(
            f"{name}[{i}] = {labels[i].item()!r}; binary metrics need labels that are 0 or 1"
        )
    return labels == 1


def auc(scores: object, labels: object) -> float:
    """Area under the ROC curve, exact, with tied scores counted as half a correct pair.

    Computed from average ranks (the Mann-Whitney U statistic): with ``P`` positives,
    ``N`` negatives and ``R`` the sum of the (tie-averaged, 1-based) ranks of the positives,
    ``AUC = (R - P(P+1)/2) / (P N)``. Twice every average rank is an integer, so the sum is
    exact in int64; the only rounding is the final division.

    Args:
        scores: ``(N,)`` real scores; higher means "more likely positive". Any monotone
            transform (logits or probabilities) gives the same AUC.
        labels: ``(N,)`` 0/1 labels (bool, int or float).

    Returns:
        AUC in [0, 1]; NaN if any score is NaN.

    Raises:
        ShapeMismatchError: lengths differ. ConfigError: empty input, a label not in {0, 1},
        or only one class present (AUC is undefined then).

    Example:
        >>> auc(torch.tensor([0.1, 0.4, 0.4, 0.8]), torch.tensor([0, 0, 1, 1]))
        0.875
    """
    s, y = _paired(scores, labels, "scores", "labels")
    positive = _check_binary(y)
    num_pos = int(positive.sum())
    num_neg = positive.numel() - num_pos
    if num_pos == 0 or num_neg == 0:
        only = "1 (positive)" if num_neg == 0 else "0 (negative)"
        raise ConfigError(f"AUC needs both classes, but all {positive.numel()} labels are {only}")
    if bool(torch.isnan(s).any()):
        return float("nan")
    sorted_scores, order = torch.sort(s)
    _, group_sizes = torch.unique_consecutive(sorted_scores, return_counts=True)
    group_ends = torch.cumsum(group_sizes, 0)  # 1-based rank of each group's last member
    group_starts = group_ends - group_sizes  # 0-based position of each group's first member
    # Members of a tie group share the mean of ranks start+1 .. end, i.e. (start+1+end)/2.
    twice_rank = torch.repeat_interleave(group_starts + group_ends + 1, group_sizes)
    twice_rank_sum = int(twice_rank[positive[order]].sum())
    return (twice_rank_sum - num_pos * (num_pos + 1)) / (2 * num_pos * num_neg)


def log_loss(
    probs_or_logits: object,
    labels: object,
    from_logits: bool = False,
    eps: float = DEFAULT_EPS,
) -> float:
    """Mean binary cross-entropy ``-mean(y log p + (1 - y) log(1 - p))`` in nats.

    Args:
        probs_or_logits: ``(N,)`` probabilities in [0, 1], or logits when ``from_logits``.
        labels: ``(N,)`` targets in [0, 1] (soft labels are allowed).
        from_logits: compute from logits with the stable form ``softplus(x) - y x``
            (no clipping needed, so ``eps`` is ignored).
        eps: probabilities are clipped to ``[eps, 1 - eps]`` so that a confident wrong
            prediction costs ``-log(eps)`` instead of infinity. The default 1e-7 suits
            float32 model outputs, whose rounding makes smaller margins meaningless.

    Example:
        >>> round(log_loss(torch.tensor([0.9, 0.2]), torch.tensor([1, 0])), 6)
        0.164252
    """
    p, y = _paired(probs_or_logits, labels, "logits" if from_logits else "probs", "labels")
    bad = (y < 0) | (y > 1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ConfigError(f"labels[{i}] = {y[i].item()!r}; log loss needs labels in [0, 1]")
    if from_logits:
        return float((torch.nn.functional.softplus(p) - y * p).mean())
    if not (isinstance(eps, (int, float)) and 0 < eps < 0.5):
        raise ConfigError(f"eps = {eps!r}; it must be a number in (0, 0.5)")
    bad = (p < 0) | (p > 1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ConfigError(
            f"probs[{i}] = {p[i].item()!r} is not a probability in [0, 1]; "
            "pass from_logits=True if these are logits"
        )
    p = p.clamp(eps, 1 - eps)
    return float(-(y * torch.log(p) + (1 - y) * torch.log1p(-p)).mean())


def rmse(predictions: object, targets: object) -> float:
    """Root mean squared error ``sqrt(mean((pred - target)^2))``.

    Args: predictions, targets: ``(N,)`` real numbers.

    Example:
        >>> rmse(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 5.0]))
        1.5811388300841898
    """
    p, t = _paired(predictions, targets, "predictions", "targets")
    return float(torch.sqrt(((p - t) ** 2).mean()))


def mae(predictions: object, targets: object) -> float:
    """Mean absolute error ``mean(|pred - target|)``.

    Args: predictions, targets: ``(N,)`` real numbers.

    Example:
        >>> mae(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 5.0]))
        1.5
    """
    p, t = _paired(predictions, targets, "predictions", "targets")
    return float((p - t).abs().mean())


class MetricAccumulator:
    """Collects ``(scores, labels)`` batch by batch and computes pointwise metrics at the end.

    Scores and labels are kept (as float64 on the CPU), so every metric is exact over the
    whole evaluation set -- AUC in particular cannot be averaged over batches.

    Args:
        metrics: names from ``POINTWISE_METRICS`` ("auc", "log_loss", "rmse", "mae").
        from_logits: the scores are logits. Log loss then uses the stable logit form, and
            RMSE/MAE compare ``sigmoid(scores)`` with the labels; AUC is unaffected.
        eps: probability clipping for log loss (see :func:`log_loss`).

    Example:
        >>> acc = MetricAccumulator(["auc", "log_loss"])
        >>> acc.update(torch.tensor([0.2, 0.7]), torch.tensor([0, 1]))
        >>> acc.update(torch.tensor([0.6]), torch.tensor([0]))
        >>> acc.compute()["auc"]
        1.0
    """

    def __init__(
        self,
        metrics: Sequence[str] = ("auc", "log_loss"),
        *,
        from_logits: bool = False,
        eps: float = DEFAULT_EPS,
    ) -> None:
        if isinstance(metrics, str):
            metrics = (metrics,)
        names = tuple(metrics)
        if not names:
            raise ConfigError(f"metrics is empty; choose from {list(POINTWISE_METRICS)}")
        for name in names:
            if name not in POINTWISE_METRICS:
                raise UnknownKeyError(
                    f"unknown metric {name!r}; available: {list(POINTWISE_METRICS)}"
                )
        self.metrics = names
        self.from_logits = bool(from_logits)
        self.eps = eps
        self._scores: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._count = 0

    @property
    def num_samples(self) -> int:
        """Number of samples seen since construction or the last :meth:`reset`."""
        return self._count

    def update(self, scores: object, labels: object) -> None:
        """Add one batch: ``scores`` and ``labels`` of shape ``(B,)`` (or ``(B, 1)``)."""
        s = _as_flat(scores, "scores")
        y = _as_flat(labels, "labels")
        if s.numel() != y.numel():
            raise ShapeMismatchError(
                f"batch {len(self._scores)}: scores has {s.numel()} elements but labels has "
                f"{y.numel()}; they must have one entry per sample"
            )
        self._scores.append(s.to(torch.float64))
        self._labels.append(y.to(torch.float64))
        self._count += s.numel()

    def compute(self) -> dict[str, float]:
        """Return ``{metric name: value}`` over every sample added so far."""
        if self._count == 0:
            raise ConfigError("MetricAccumulator.compute() called before any update()")
        scores = torch.cat(self._scores)
        labels = torch.cat(self._labels)
        results: dict[str, float] = {}
        for name in self.metrics:
            if name == "auc":
                results[name] = auc(scores, labels)
            elif name == "log_loss":
                results[name] = log_loss(scores, labels, from_logits=self.from_logits, eps=self.eps)
            else:
                predictions = torch.sigmoid(scores) if self.from_logits else scores
                results[name] = (rmse if name == "rmse" else mae)(predictions, labels)
        return results

    def reset(self) -> None:
        """Forget every sample (call at the start of each evaluation)."""
        self._scores.clear()
        self._labels.clear()
        self._count = 0
