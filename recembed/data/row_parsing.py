"""Turning raw rows (text fields or Parquet values) into checked columns.

:class:`RowParser` checks rows against a :class:`~recembed.data.spec.FeatureSpec`:
field count, label, dense numbers (finite), timestamps. Clean chunks are converted
whole-column at a time (:mod:`recembed.data.columns`); a chunk with anything unusual
is re-read row by row, and each bad row is handed to
:class:`MalformedRows`, which raises :class:`~recembed.errors.DataFormatError` naming
file, line and reason (``on_error="raise"``), or counts it and warns once at the end
(``on_error="skip"``). Rows are never dropped silently.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from recembed.data.columns import (
    FLOAT32_MAX,
    NotColumnar,
    bag_column,
    float_column,
    int_column,
    token_column,
)
from recembed.data.spec import FeatureSpec
from recembed.errors import ConfigError, DataFormatError, UnknownKeyError

__all__ = ["MalformedRows", "RowParser", "ParsedChunk", "ON_ERROR", "resolve_columns"]

ON_ERROR = ("raise", "skip")
_MISSING = float("nan")  # internal marker for an empty dense field (real NaNs are rejected)
_MAX_EXAMPLES = 5


class _BadRow(Exception):
    """A row is malformed; carries the reason (internal, turned into DataFormatError)."""


class MalformedRows:
    """The policy for malformed rows of one file, and the count of rows skipped.

    Args:
        on_error: ``"raise"`` stops at the first bad row; ``"skip"`` skips and counts it.
        path: the file, for messages.
    """

    def __init__(self, on_error: str, path: str) -> None:
        if on_error not in ON_ERROR:
            raise ConfigError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.on_error = on_error
        self.path = path
        self.skipped = 0
        self.examples: list[str] = []

    def reset(self) -> None:
        self.skipped = 0
        self.examples = []

    def report(self, reason: str, line: Optional[int]) -> None:
        """Handle one bad row: raise, or count it."""
        if self.on_error == "raise":
            raise DataFormatError(reason, path=self.path, line=line)
        self.skipped += 1
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(f"line {line}: {reason}")

    def warn_if_skipped(self) -> None:
        """Warn once with the number of rows skipped in this pass (call at its end)."""
        if self.skipped:
            warnings.warn(
                f"{self.path}: skipped {self.skipped} malformed row(s) (on_error='skip'); "
                f"first: {'; '.join(self.examples)}",
                RuntimeWarning,
                stacklevel=3,
            )


def resolve_columns(
    spec: FeatureSpec, present: Sequence[str], path: str
) -> dict[str, int]:
    """Position of every column the spec reads, or UnknownKeyError naming the missing one."""
    position: dict[str, int] = {}
    for i, name in enumerate(present):
        position.setdefault(name, i)
    for column in spec.columns():
        if column not in position:
            users = [f.name for f in (*spec.sparse, *spec.dense) if f.source == column]
            what = f"by feature {users[0]!r}" if users else "by the spec"
            raise UnknownKeyError(
                f"{path}: column {column!r} named {what} is not in the file; "
                f"columns present: {list(present)}"
            )
    return position


@dataclass
class ParsedChunk:
    """Checked raw values of the rows that passed, column-wise.

    Attributes:
        labels: ``(n,)`` float64.
        dense: ``(n, n_dense)`` float64, NaN where the field was empty.
        tokens: per sparse feature: ``n`` tokens with ``""`` for missing, as a list or a
            :class:`~recembed.data.columns.FactorizedTokens` (single-valued), or
            ``(lengths (n,) int64, flat list of tokens)`` (multi-valued).
        timestamps: ``(n,)`` int64, or None when the spec has no timestamp column.
    """

    labels: np.ndarray
    dense: np.ndarray
    tokens: dict[str, Any]
    timestamps: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _token(value: Any, column: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise _BadRow(f"sparse column {column!r} holds a boolean {value!r}; expected an id")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return ""  # a null in a float-typed column
        if value.is_integer():
            return str(int(value))
    raise _BadRow(f"sparse column {column!r} holds {value!r}; expected a string or integer id")


def _tokens(value: Any, column: str, separator: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [t for t in value.split(separator) if t]
    if isinstance(value, (list, tuple)):
        return [t for t in (_token(v, column) for v in value) if t]
    token = _token(value, column)
    return [token] if token else []


def _number(value: Any, what: str) -> float:
    """A finite float from a field; ``_MISSING`` for an empty one."""
    if value is None or value == "":
        return _MISSING
    if isinstance(value, bool):
        raise _BadRow(f"{what} is a boolean {value!r}; expected a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise _BadRow(f"{what} is {value!r}, not a number") from None
    if not math.isfinite(x) or abs(x) > FLOAT32_MAX:
        raise _BadRow(f"{what} is {value!r}; values must be finite float32 numbers")
    return x


def _label(value: Any, column: str, kind: str) -> float:
    if value == "0" or value == "1":  # the common CTR case, without float()
        return float(value)
    if value is None or value == "":
        raise _BadRow(f"label {column!r} is empty")
    y = _number(value, f"label {column!r}")
    if kind == "binary" and y != 0.0 and y != 1.0:
        raise _BadRow(f"label {column!r} is {value!r}; a binary label must be 0 or 1")
    return y


def _timestamp(value: Any, column: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    raise _BadRow(f"timestamp {column!r} is {value!r}, not an integer")


class RowParser:
    """Checks rows against a spec and collects their values column-wise.

    Two paths give the same result: :meth:`parse_columns` converts whole columns of
    text fields with numpy (fast), and gives up (returns None) on anything unusual;
    :meth:`parse_rows` checks row by row and reports each bad row with its line.

    Args:
        spec: the features to read.
        positions: column name -> index in each row (from :func:`resolve_columns`).
        num_fields: the exact number of fields each row must have (None: not checked,
            e.g. for Parquet, whose rows always fit the schema).
        errors: the malformed-row policy.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        positions: Mapping[str, int],
        num_fields: Optional[int],
        errors: MalformedRows,
    ) -> None:
        self.spec = spec
        self.num_fields = num_fields
        self.errors = errors
        self._label = (positions[spec.label.column], spec.label.column, spec.label.kind)
        self._dense = [(positions[f.source], f"dense feature {f.name!r}") for f in spec.dense]
        self._sparse = [
            (f.name, positions[f.source], f.source, f.separator) for f in spec.sparse
        ]
        self._time = None if spec.timestamp is None else (positions[spec.timestamp], spec.timestamp)

    # ---------------------------------------------------------- fast columns
    def parse_columns(self, columns: Sequence[Any]) -> Optional[ParsedChunk]:
        """Parse whole columns (text field lists or Arrow arrays, indexed by position).

        Returns None when any value needs a closer look; then call :meth:`parse_rows`.
        """
        try:
            return self._parse_columns(columns)
        except NotColumnar:
            return None

    def _parse_columns(self, columns: Sequence[Any]) -> ParsedChunk:
        label_at, _, kind = self._label
        labels = float_column(columns[label_at], allow_missing=False)
        if kind == "binary" and not np.isin(labels, (0.0, 1.0)).all():
            raise NotColumnar
        n = labels.shape[0]
        dense = np.empty((n, len(self._dense)), dtype=np.float64)
        for j, (at, _) in enumerate(self._dense):
            dense[:, j] = float_column(columns[at], allow_missing=True)
        tokens: dict[str, Any] = {}
        for name, at, _, sep in self._sparse:
            tokens[name] = token_column(columns[at]) if sep is None else bag_column(columns[at], sep)
        timestamps = None if self._time is None else int_column(columns[self._time[0]])
        return ParsedChunk(labels=labels, dense=dense, tokens=tokens, timestamps=timestamps)

    # ------------------------------------------------------------ row by row
    def parse_rows(self, rows: Iterable[tuple[int, Sequence[Any]]]) -> ParsedChunk:
        """Parse ``(line_number, fields)`` rows one by one; bad rows go to the error policy."""
        label_at, label_col, label_kind = self._label
        dense_spec, sparse_spec, time_spec = self._dense, self._sparse, self._time
        num_fields = self.num_fields
        labels: list[float] = []
        dense: list[list[float]] = []
        columns: list[list] = [[] for _ in sparse_spec]
        stamps: list[int] = []
        for line, fields in rows:
            try:
                if num_fields is not None and len(fields) != num_fields:
                    raise _BadRow(f"expected {num_fields} fields, found {len(fields)}")
                y = _label(fields[label_at], label_col, label_kind)
                x = [_number(fields[at], what) for at, what in dense_spec]
                toks = [
                    _token(fields[at], col) if sep is None else _tokens(fields[at], col, sep)
                    for _, at, col, sep in sparse_spec
                ]
                t = 0 if time_spec is None else _timestamp(fields[time_spec[0]], time_spec[1])
            except _BadRow as bad:
                self.errors.report(str(bad), line)
                continue
            labels.append(y)
            dense.append(x)
            for column, token in zip(columns, toks):
                column.append(token)
            stamps.append(t)
        tokens: dict[str, Any] = {}
        for (name, _, _, sep), column in zip(sparse_spec, columns):
            if sep is None:
                tokens[name] = column
            else:
                lengths = np.fromiter(map(len, column), dtype=np.int64, count=len(column))
                tokens[name] = (lengths, [t for bag in column for t in bag])
        n = len(labels)
        return ParsedChunk(
            labels=np.array(labels, dtype=np.float64),
            dense=np.array(dense, dtype=np.float64).reshape(n, len(dense_spec)),
            tokens=tokens,
            timestamps=None if time_spec is None else np.array(stamps, dtype=np.int64),
        )
