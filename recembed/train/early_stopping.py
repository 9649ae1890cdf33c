"""Stop training when a validation metric has stopped improving."""

from __future__ import annotations

import math
from collections.abc import Mapping

from recembed.errors import CheckpointError, ConfigError, UnknownKeyError

__all__ = ["EarlyStopping"]

_MODES = ("max", "min")


class EarlyStopping:
    """Tracks the best value of one metric and says when patience has run out.

    A value improves on the best if it is larger than ``best + min_delta`` (mode "max") or
    smaller than ``best - min_delta`` (mode "min"); the first finite value always improves.
    A NaN value never improves (a diverged model uses up patience). Once
    ``num_bad_epochs > patience``, :meth:`step` returns True and :attr:`should_stop` stays
    True.

    Args:
        metric: the key to read from the metrics dict passed to :meth:`step`.
        mode: "max" for metrics like AUC or NDCG, "min" for losses.
        patience: evaluations without improvement that are tolerated (0 stops at the first).
        min_delta: the smallest change that counts as an improvement, >= 0.

    Example:
        >>> stopper = EarlyStopping("auc", mode="max", patience=1)
        >>> [stopper.step({"auc": v}) for v in (0.70, 0.72, 0.71, 0.72)]
        [False, False, False, True]
        >>> stopper.best, stopper.best_epoch
        (0.72, 1)
    """

    def __init__(self, metric: str, mode: str = "max", patience: int = 5, min_delta: float = 0.0):
        if not isinstance(metric, str) or not metric:
            raise ConfigError(f"metric = {metric!r}; it must be a non-empty metric name")
        if mode not in _MODES:
            raise ConfigError(f"mode = {mode!r}; it must be one of {list(_MODES)}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ConfigError(f"patience = {patience!r}; it must be an integer >= 0")
        if (
            isinstance(min_delta, bool)
            or not isinstance(min_delta, (int, float))
            or not min_delta >= 0
        ):
            raise ConfigError(f"min_delta = {min_delta!r}; it must be a number >= 0")
        self.metric = metric
        self.mode = mode
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.num_bad_epochs = 0
        self.num_steps = 0
        self.should_stop = False
        self.improved = False

    def is_improvement(self, value: float) -> bool:
        """Whether ``value`` would count as a new best (without recording it)."""
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def step(self, metrics: Mapping[str, float] | float, epoch: int | None = None) -> bool:
        """Record one evaluation; return True if training should stop now.

        Args:
            metrics: a dict containing :attr:`metric`, or the metric's value itself.
            epoch: the epoch (or step) to record as :attr:`best_epoch` on improvement;
                defaults to the number of previous calls (0, 1, 2, ...).
        """
        if isinstance(metrics, Mapping):
            if self.metric not in metrics:
                raise UnknownKeyError(
                    f"early stopping watches {self.metric!r}, but the metrics are {sorted(metrics)}"
                )
            raw = metrics[self.metric]
        else:
            raw = metrics
        try:
            value = float(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.metric} = {raw!r} is not a number") from exc
        self.improved = self.is_improvement(value)
        if self.improved:
            self.best = value
            self.best_epoch = self.num_steps if epoch is None else int(epoch)
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        self.num_steps += 1
        if self.num_bad_epochs > self.patience:
            self.should_stop = True
        return self.should_stop

    def state_dict(self) -> dict:
        """The counters and best value, as plain data for a checkpoint."""
        return {
            "metric": self.metric,
            "mode": self.mode,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "num_bad_epochs": self.num_bad_epochs,
            "num_steps": self.num_steps,
            "should_stop": self.should_stop,
            "improved": self.improved,
        }

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore :meth:`state_dict` output, so a resumed run stops exactly where it would have.

        ``patience`` and ``min_delta`` come from the constructor, so a resumed run may change
        them; ``metric`` and ``mode`` must match, since the saved best value means nothing
        for another metric.
        """
        missing = [key for key in self.state_dict() if key not in state]
        if missing:
            raise CheckpointError(f"early stopping state lacks {missing}")
        if state["metric"] != self.metric or state["mode"] != self.mode:
            raise CheckpointError(
                f"early stopping state was saved for metric {state['metric']!r} (mode "
                f"{state['mode']!r}) but this one watches {self.metric!r} (mode {self.mode!r})"
            )
        self.best = None if state["best"] is None else float(state["best"])
        self.best_epoch = None if state["best_epoch"] is None else int(state["best_epoch"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.num_steps = int(state["num_steps"])
        self.should_stop = bool(state["should_stop"])
        self.improved = bool(state["improved"])

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(metric={self.metric!r}, mode={self.mode!r}, patience={self.patience}, "
            f"best={self.best}, num_bad_epochs={self.num_bad_epochs})"
        )
