"""Progress reporting: a tqdm bar on a terminal, a periodic plain line elsewhere (CI, logs).

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> with ProgressBar(total=4, desc="epoch 1", backend="plain", file=out, min_interval=0) as bar:
    ...     bar.update(2, loss=0.5)
    >>> "epoch 1: 2/4 samples (50.0%)" in out.getvalue()
    True
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TextIO, TypeVar

from recembed.errors import ConfigError, require

__all__ = ["ProgressBar", "progress"]

T = TypeVar("T")
_BACKENDS = ("auto", "tqdm", "plain", "none")


def _format_postfix(postfix: dict[str, object]) -> str:
    parts = []
    for key, value in postfix.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def _tqdm_available() -> bool:
    try:
        import tqdm  # noqa: F401  (only asked for when a bar is made, never at import time)
    except ImportError:
        return False
    return True


class ProgressBar(Generic[T]):
    """Counts units of work (samples by default) and shows rate and postfix values.

    Args:
        iterable: optional; iterating the bar yields its items and advances the count by
            ``weight(item)`` after each one (1 per item if ``weight`` is None).
        total: expected number of units, if known.
        desc: label shown before the count.
        unit: name of the unit ("samples", "batches", ...).
        backend: "tqdm", "plain" (a line to ``file`` every ``min_interval`` seconds and
            at close), "none", or "auto": tqdm when it is installed and ``file`` is a
            terminal, else plain.
        file: stream to write to; standard error by default.
        min_interval: seconds between plain lines.
        weight: units contributed by each item of ``iterable`` (e.g. ``len``).

    Example:
        >>> bar = ProgressBar(total=1000, desc="train", backend="none")
        >>> bar.update(256, loss=0.61, samples_per_s=5e4)
        >>> bar.count
        256
        >>> bar.close()
    """

    def __init__(
        self,
        iterable: Iterable[T] | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "samples",
        backend: str = "auto",
        file: TextIO | None = None,
        min_interval: float = 10.0,
        weight: Callable[[T], int] | None = None,
    ) -> None:
        if backend not in _BACKENDS:
            raise ConfigError(f"backend = {backend!r}; it must be one of {list(_BACKENDS)}")
        if total is not None and (
            isinstance(total, bool) or not isinstance(total, int) or total < 0
        ):
            raise ConfigError(f"total = {total!r}; it must be an integer >= 0 or None")
        if not min_interval >= 0:
            raise ConfigError(f"min_interval = {min_interval!r}; it must be >= 0 seconds")
        self.file = file if file is not None else sys.stderr
        if backend == "auto":
            is_tty = bool(getattr(self.file, "isatty", lambda: False)())
            backend = "tqdm" if is_tty and _tqdm_available() else "plain"
        self.backend = backend
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.min_interval = float(min_interval)
        self.weight = weight
        self.count = 0
        self.postfix: dict[str, object] = {}
        self.closed = False
        self._start = time.monotonic()
        self._last_print = self._start
        self._tqdm = None
        if backend == "tqdm":
            tqdm = require("tqdm", "train", "the tqdm progress bar")
            # "1.2M samples" beats "1234567 samples", but "4.00/10.0" is worse than "4/10".
            scale = total is None or total >= 10_000
            self._tqdm = tqdm.tqdm(
                total=total,
                desc=desc or None,
                unit=unit,
                unit_scale=scale,
                file=self.file,
                dynamic_ncols=True,
            )

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was created."""
        return time.monotonic() - self._start

    @property
    def rate(self) -> float:
        """Units per second so far."""
        elapsed = self.elapsed
        return self.count / elapsed if elapsed > 0 else 0.0

    def update(self, n: int = 1, **postfix: object) -> None:
        """Advance by ``n`` units and optionally replace shown values (``loss=0.42``)."""
        if self.closed:
            raise ConfigError(f"progress bar {self.desc!r} is closed; create a new one")
        self.count += n
        if postfix:
            self.postfix = dict(postfix)
        if self._tqdm is not None:
            if postfix:
                self._tqdm.set_postfix(postfix, refresh=False)
            self._tqdm.update(n)
        elif self.backend == "plain":
            now = time.monotonic()
            if now - self._last_print >= self.min_interval:
                self._last_print = now
                self._print_line()

    def set_postfix(self, **postfix: object) -> None:
        """Replace the values shown after the count, e.g. ``loss`` and ``samples_per_s``."""
        self.postfix = dict(postfix)
        if self._tqdm is not None:
            self._tqdm.set_postfix(postfix)

    def status_line(self) -> str:
        """The plain one-line summary, e.g. ``train: 512/1000 samples (51.2%), 300 samples/s``."""
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            count = (
                f"{self.count}/{self.total} {self.unit} ({100.0 * self.count / self.total:.1f}%)"
            )
        else:
            count = f"{self.count} {self.unit}"
        line = f"{head}{count}, {self.rate:.4g} {self.unit}/s, {self.elapsed:.1f}s"
        if self.postfix:
            line += f", {_format_postfix(self.postfix)}"
        return line

    def _print_line(self) -> None:
        print(self.status_line(), file=self.file, flush=True)

    def close(self) -> None:
        """Finish the bar (prints the final plain line); calling it twice is harmless."""
        if self.closed:
            return
        self.closed = True
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.backend == "plain":
            self._print_line()

    def __iter__(self) -> Iterator[T]:
        if self.iterable is None:
            raise ConfigError("this progress bar was created without an iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1 if self.weight is None else self.weight(item))
        finally:
            self.close()

    def __enter__(self) -> ProgressBar[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    iterable: Iterable[T],
    total: int | None = None,
    desc: str = "",
    unit: str = "samples",
    *,
    weight: Callable[[T], int] | None = None,
    backend: str = "auto",
    file: TextIO | None = None,
    min_interval: float = 10.0,
) -> ProgressBar[T]:
    """Wrap ``iterable`` in a :class:`ProgressBar`; iterate the result, update its postfix.

    ``total`` defaults to ``len(iterable)`` when ``weight`` is None and the iterable has a
    length. The bar closes when the loop ends.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> bar = progress([[1, 2], [3]], desc="eval", weight=len, backend="plain", file=out)
        >>> for batch in bar:
        ...     bar.set_postfix(loss=0.25)
        >>> out.getvalue().startswith("eval: 3 samples")
        True
    """
    if total is None and weight is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return ProgressBar(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        backend=backend,
        file=file,
        min_interval=min_interval,
        weight=weight,
    )
