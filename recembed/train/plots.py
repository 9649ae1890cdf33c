"""Training curves as a PNG file, drawn off-screen with matplotlib's Agg renderer."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from recembed.errors import ConfigError, require
from recembed.train._atomic import atomic_writer
from recembed.train.history import History

__all__ = ["plot_history"]

HistoryLike = History | Mapping[str, Sequence[float]] | Sequence[Mapping[str, float]]

STEP_SERIES = "step_loss"  # in the dict form, the one series plotted against steps


def _series(history: HistoryLike) -> list[tuple[str, list[float], list[float], str]]:
    """``(title, x, y, x label)`` for each panel."""
    panels: list[tuple[str, list[float], list[float], str]] = []
    if isinstance(history, History):
        if history.step_losses:
            panels.append(("loss per step", list(history.steps), list(history.step_losses), "step"))
        epochs = [dict(record) for record in history.epochs]
    elif isinstance(history, Mapping):
        epochs = []
        for name, values in history.items():
            ys = [_as_float(v, f"{name}[{i}]") for i, v in enumerate(values)]
            if not ys:
                continue
            if name == STEP_SERIES:
                panels.append(("loss per step", list(range(1, len(ys) + 1)), ys, "step"))
            else:
                panels.append((str(name), list(range(1, len(ys) + 1)), ys, "epoch"))
        return panels
    elif isinstance(history, Sequence) and not isinstance(history, (str, bytes)):
        epochs = []
        for i, record in enumerate(history):
            if not isinstance(record, Mapping):
                raise ConfigError(
                    f"history[{i}] is a {type(record).__name__}; expected a dict of metrics"
                )
            epochs.append(dict(record))
    else:
        raise ConfigError(
            f"history is a {type(history).__name__}; pass a History, a dict of name -> values, "
            "or a list of per-epoch metric dicts"
        )
    names: dict[str, None] = {}
    for record in epochs:
        names.update(dict.fromkeys(record))
    x = list(range(1, len(epochs) + 1))
    for name in names:
        ys = [_as_float(r.get(name, math.nan), f"epoch {i} {name}") for i, r in enumerate(epochs)]
        panels.append((str(name), x, ys, "epoch"))
    return panels


def _as_float(value: object, what: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} = {value!r} is not a number") from exc


def _moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` finite values (NaN/inf are left out)."""
    y = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(y)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, y, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    ends = np.arange(1, len(y) + 1)
    starts = np.maximum(ends - window, 0)
    n = counts[ends] - counts[starts]
    with np.errstate(invalid="ignore", divide="ignore"):
        return list(np.where(n > 0, (sums[ends] - sums[starts]) / n, np.nan))


def plot_history(
    history: HistoryLike, path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Draw one panel per series -- loss per step, then each metric per epoch -- to a PNG.

    Args:
        history: a :class:`History`; or a dict ``{name: values}`` where every series is
            per epoch except ``"step_loss"``, which is per step; or a list of per-epoch
            dicts such as ``[{"loss": 0.6, "auc": 0.7}, ...]`` (missing values leave gaps).
        path: the PNG file to write (atomically); its folder must exist.
        title: optional figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> curves = {"step_loss": [0.9, 0.7, 0.6], "auc": [0.70, 0.74]}
        >>> plot_history(curves, "curves.png")  # doctest: +SKIP
        PosixPath('curves.png')
    """
    require("matplotlib", "train", "plot_history")
    # Figure + the Agg canvas directly: no pyplot, so no global backend switch and no window.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = _series(history)
    if not panels:
        raise ConfigError("history is empty: there is nothing to plot")
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.5 * columns, 3.2 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    for index, (name, xs, ys, x_label) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        if x_label == "step" and len(ys) > 50:
            # Per-step losses are noisy; a moving average shows the trend.
            axes.plot(xs, ys, linewidth=0.6, alpha=0.35, label="raw")
            axes.plot(
                xs,
                _moving_average(ys, max(5, len(ys) // 50)),
                linewidth=1.5,
                label="moving average",
            )
            axes.legend(fontsize="small")
        else:
            axes.plot(xs, ys, marker="o" if len(ys) <= 30 else None, linewidth=1.5)
        axes.set_title(name)
        axes.set_xlabel(x_label)
        axes.grid(True, alpha=0.3)
    if title:
        figure.suptitle(title)

    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: folder {path.parent} does not exist")
    with atomic_writer(path, "wb", durable=False) as handle:
        figure.savefig(handle, format="png")
    return path
