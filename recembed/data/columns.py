"""Whole-column conversions for the fast parsing path (text fields or Arrow arrays).

Each function converts one column at numpy/Arrow speed, or raises :class:`NotColumnar`
when the column holds anything it does not fully check itself (a bad number, a NaN
written in the data, an unexpected type). The caller then parses that chunk row by
row, which names the offending line. A column is either a list of text fields (CSV,
TSV) or a ``pyarrow.Array`` (Parquet).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["FactorizedTokens", "NotColumnar", "float_column", "token_column", "bag_column", "int_column", "FLOAT32_MAX"]

FLOAT32_MAX = 3.4028234663852886e38


class FactorizedTokens:
    """A column of ``n`` tokens stored as its distinct tokens and a code per row.

    ``tokens[i] == uniques[codes[i]]``; ``""`` is a missing value, as in plain columns.
    """

    __slots__ = ("uniques", "codes")

    def __init__(self, uniques: list[str], codes: np.ndarray) -> None:
        self.uniques = uniques
        self.codes = codes

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def counts(self) -> dict[str, int]:
        """Occurrences of each distinct token."""
        return dict(zip(self.uniques, np.bincount(self.codes, minlength=len(self.uniques)).tolist()))


class NotColumnar(Exception):
    """This chunk needs the row-by-row path (internal signal, never shown to users)."""


def _is_text(column: Any) -> bool:
    return isinstance(column, (list, tuple))


def _check_range(values: np.ndarray) -> None:
    with np.errstate(invalid="ignore"):
        if np.isinf(values).any() or (np.abs(values) > FLOAT32_MAX).any():
            raise NotColumnar


def float_column(column: Any, *, allow_missing: bool) -> np.ndarray:
    """``(n,)`` float64; NaN marks an empty field (only with ``allow_missing``)."""
    if _is_text(column):
        try:
            if allow_missing:
                values = np.array([v or "nan" for v in column], dtype=np.float64)
            else:
                values = np.array(column, dtype=np.float64)
        except (ValueError, TypeError):
            raise NotColumnar from None
        _check_range(values)
        nan_at = np.flatnonzero(np.isnan(values))
        if nan_at.size and (not allow_missing or any(column[i] for i in nan_at.tolist())):
            raise NotColumnar  # "nan" written in the data, not an empty field
        return values
    import pyarrow as pa

    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise NotColumnar
    if column.null_count and not allow_missing:
        raise NotColumnar
    values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    if pa.types.is_floating(kind):
        is_nan = np.isnan(values)
        if is_nan.any() and (is_nan & ~column.is_null().to_numpy(zero_copy_only=False)).any():
            raise NotColumnar  # a real NaN value, not a null
    _check_range(values)
    return np.array(values, dtype=np.float64)


def token_column(column: Any) -> Sequence[str]:
    """Tokens as strings, ``""`` for a missing value."""
    if _is_text(column):
        return column
    import pyarrow as pa

    kind = column.type
    if pa.types.is_integer(kind):
        column = column.cast(pa.string())
    elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise NotColumnar
    return column.fill_null("").to_pylist()


def _split_text_bags(column: Sequence[str], separator: str) -> tuple[np.ndarray, list[str]]:
    bags = [[t for t in v.split(separator) if t] for v in column]
    lengths = np.fromiter(map(len, bags), dtype=np.int64, count=len(bags))
    return lengths, [t for bag in bags for t in bag]


def bag_column(column: Any, separator: str) -> tuple[np.ndarray, list[str]]:
    """``(lengths (n,), flat tokens)`` of a multi-id column (separated text or Arrow lists)."""
    if _is_text(column):
        return _split_text_bags(column, separator)
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind):
        return _split_text_bags(token_column(column), separator)
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        raise NotColumnar
    values = column.flatten()
    if values.null_count:
        raise NotColumnar  # the row path drops null entries inside lists
    tokens = token_column(values)
    if "" in tokens:
        raise NotColumnar
    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    return np.asarray(lengths, dtype=np.int64), list(tokens)


def int_column(column: Any) -> np.ndarray:
    """``(n,)`` int64 of a column of whole numbers without missing values."""
    if _is_text(column):
        try:
            return np.array(column, dtype=np.int64)
        except (ValueError, OverflowError, TypeError):
            raise NotColumnar from None
    import pyarrow as pa

    if not pa.types.is_integer(column.type) or column.null_count:
        raise NotColumnar
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)
