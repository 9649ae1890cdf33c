"""The record of a training run: the loss of each step and the metrics of each epoch."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from recembed.errors import CheckpointError, ConfigError, DataFormatError, UnknownKeyError
from recembed.train._atomic import atomic_writer

__all__ = ["History"]

_JSON_FORMAT = "recembed-history"
# Strict JSON has no NaN/Infinity, and a diverged run produces them; they are written as
# these strings and read back as floats.
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _number(value: object, what: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{what} = {value!r}; expected a number, not a bool")
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        raise ConfigError(f"{what} is a tensor of shape {tuple(value.shape)}; expected one number")
    try:
        return float(value)  # also accepts 0-d tensors and numpy scalars
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} = {value!r} is not a number") from exc


def _to_json_number(x: float) -> float | str:
    return x if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))


def _from_json_number(x: object, where: str) -> float:
    if isinstance(x, str):
        if x not in _NON_FINITE:
            raise ConfigError(f"{where} = {x!r}; expected a number or one of {list(_NON_FINITE)}")
        return _NON_FINITE[x]
    return _number(x, where)


class History:
    """Per-step training losses and per-epoch metric dicts.

    Example:
        >>> history = History()
        >>> history.log_step(1, 0.69)
        >>> history.log_step(2, 0.52)
        >>> history.log_epoch({"auc": 0.71, "log_loss": 0.55})
        >>> history.log_epoch({"auc": 0.74, "log_loss": 0.51})
        >>> history.metric("auc")
        [0.71, 0.74]
        >>> History.from_dict(history.to_dict()).step_losses
        [0.69, 0.52]
    """

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.step_losses: list[float] = []
        self.epochs: list[dict[str, float]] = []

    def log_step(self, step: int, loss: float) -> None:
        """Record the training loss of global step ``step`` (a float or a 0-d tensor)."""
        if isinstance(step, bool) or not isinstance(step, int):
            raise ConfigError(f"step = {step!r}; it must be an integer")
        self.steps.append(step)
        self.step_losses.append(_number(loss, f"loss at step {step}"))

    def log_epoch(self, metrics: Mapping[str, float]) -> None:
        """Record the metrics of the next epoch, e.g. ``{"train_loss": .., "auc": ..}``."""
        if not isinstance(metrics, Mapping):
            raise ConfigError(
                f"epoch metrics must be a dict of name -> number, got {type(metrics).__name__}"
            )
        record = {}
        for name, value in metrics.items():
            if not isinstance(name, str):
                raise ConfigError(f"metric name {name!r} must be a string")
            record[name] = _number(value, f"metric {name!r} of epoch {len(self.epochs)}")
        self.epochs.append(record)

    @property
    def metric_names(self) -> list[str]:
        """Every metric name seen in any epoch, in first-seen order."""
        names: dict[str, None] = {}
        for record in self.epochs:
            names.update(dict.fromkeys(record))
        return list(names)

    def metric(self, name: str) -> list[float]:
        """The per-epoch series of one metric; NaN in epochs that did not record it."""
        if name not in self.metric_names:
            raise UnknownKeyError(
                f"no epoch recorded metric {name!r}; recorded: {self.metric_names}"
            )
        return [record.get(name, math.nan) for record in self.epochs]

    def best(self, name: str, mode: str = "max") -> tuple[int, float]:
        """``(epoch index, value)`` of the best value of ``name``; NaNs are ignored."""
        if mode not in ("max", "min"):
            raise ConfigError(f"mode = {mode!r}; it must be 'max' or 'min'")
        series = [(i, v) for i, v in enumerate(self.metric(name)) if not math.isnan(v)]
        if not series:
            raise ConfigError(f"metric {name!r} has no non-NaN value")
        pick = max if mode == "max" else min
        return pick(series, key=lambda pair: pair[1])

    def __len__(self) -> int:
        return len(self.epochs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    # -- JSON ----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-ready dict (non-finite numbers become the strings "nan", "inf", "-inf")."""
        return {
            "format": _JSON_FORMAT,
            "steps": list(self.steps),
            "step_losses": [_to_json_number(x) for x in self.step_losses],
            "epochs": [{k: _to_json_number(v) for k, v in r.items()} for r in self.epochs],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> History:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or data.get("format") != _JSON_FORMAT:
            raise ConfigError(
                f"not a recembed history: expected a dict with format {_JSON_FORMAT!r}"
            )
        history = cls()
        steps, losses = list(data.get("steps", [])), list(data.get("step_losses", []))
        if len(steps) != len(losses):
            raise ConfigError(f"history has {len(steps)} steps but {len(losses)} step losses")
        for i, (step, loss) in enumerate(zip(steps, losses)):
            history.log_step(step, _from_json_number(loss, f"step_losses[{i}]"))
        for i, record in enumerate(data.get("epochs", [])):
            if not isinstance(record, Mapping):
                raise ConfigError(f"epochs[{i}] must be a dict, got {type(record).__name__}")
            history.log_epoch(
                {k: _from_json_number(v, f"epochs[{i}][{k!r}]") for k, v in record.items()}
            )
        return history

    def save_json(self, path: str | os.PathLike) -> Path:
        """Write the history as strict JSON, atomically."""
        path = Path(path)
        with atomic_writer(path, "w", durable=False) as handle:
            json.dump(self.to_dict(), handle, indent=1, allow_nan=False)
        return path

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> History:
        """Read a file written by :meth:`save_json`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DataFormatError("history file does not exist", path=str(path)) from exc
        except json.JSONDecodeError as exc:
            raise DataFormatError(
                f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno
            ) from exc
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise DataFormatError(str(exc), path=str(path)) from exc

    # -- checkpoint state ----------------------------------------------------------------

    def state_dict(self) -> dict:
        """Plain data for :func:`recembed.train.save_checkpoint`; step data as compact tensors."""
        return {
            "steps": torch.tensor(self.steps, dtype=torch.int64),
            "step_losses": torch.tensor(self.step_losses, dtype=torch.float64),
            "epochs": [dict(record) for record in self.epochs],
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Replace this history with :meth:`state_dict` output."""
        try:
            steps = [int(s) for s in state["steps"].tolist()]
            losses = [float(x) for x in state["step_losses"].tolist()]
            epochs = [{str(k): float(v) for k, v in record.items()} for record in state["epochs"]]
        except (KeyError, AttributeError, TypeError, ValueError) as exc:
            raise CheckpointError(f"history state is malformed: {exc!r}") from exc
        if len(steps) != len(losses):
            raise CheckpointError(f"history state has {len(steps)} steps but {len(losses)} losses")
        self.steps, self.step_losses, self.epochs = steps, losses, epochs
