"""MovieLens ratings files: reading into :class:`Interactions`, and writing.

Layouts (detected from the file's first line, or the file name in a folder):

- ``"u.data"`` (ML-100K): ``user<TAB>item<TAB>rating<TAB>timestamp``, no header.
- ``"ratings.csv"`` (ML-latest, ML-20M/25M): header ``userId,movieId,rating,timestamp``.
- ``"ratings.dat"`` (ML-1M/10M): ``user::item::rating::timestamp``, no header.

The whole file is loaded (MovieLens fits in memory) with numpy's C parser; when that
fails, the file is re-read line by line to name the bad line and reason, or to skip
bad lines with ``on_error="skip"`` (counted in a warning).

Example:
    >>> data = read_movielens("ml-100k/u.data")  # doctest: +SKIP
    >>> data.num_rows                            # doctest: +SKIP
    {'user': 943, 'item': 1682}
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Iterator, Optional, Union

import numpy as np

from recembed.data._io import atomic_text_writer, display_path, open_text
from recembed.data.interactions import Interactions
from recembed.data.row_parsing import MalformedRows
from recembed.errors import ConfigError, DataFormatError, UnknownKeyError

__all__ = ["read_movielens", "write_movielens", "MOVIELENS_LAYOUTS", "detect_movielens_layout"]

MOVIELENS_LAYOUTS = ("u.data", "ratings.csv", "ratings.dat")
_SEPARATOR = {"u.data": "\t", "ratings.csv": ",", "ratings.dat": "::"}
_CSV_COLUMNS = ("userId", "movieId", "rating", "timestamp")


def _first_line(path: str) -> str:
    with open_text(path) as f:
        for line in f:
            if line.strip():
                return line
    raise DataFormatError("the file is empty", path=path)


def detect_movielens_layout(path: Union[str, os.PathLike]) -> str:
    """The layout of a MovieLens ratings file, from its first non-empty line."""
    where = display_path(path)
    line = _first_line(where)
    if "userId" in line or "movieId" in line:
        return "ratings.csv"
    if "::" in line:
        return "ratings.dat"
    if "\t" in line:
        return "u.data"
    raise DataFormatError(
        f"cannot tell the MovieLens layout from the first line {line.rstrip()!r}; expected "
        "tab-separated u.data, ratings.csv with a userId,movieId,rating,timestamp header, "
        "or '::'-separated ratings.dat",
        path=where,
        line=1,
    )


def _resolve_path(path: str) -> str:
    if os.path.isdir(path):
        for name in MOVIELENS_LAYOUTS:
            candidate = os.path.join(path, name)
            if os.path.exists(candidate):
                return candidate
        raise DataFormatError(f"no MovieLens ratings file in the folder (looked for {list(MOVIELENS_LAYOUTS)})", path=path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return path


def _csv_positions(header: str, path: str) -> tuple[list[int], int]:
    """Positions of user, item, rating, timestamp in the header, and its number of columns."""
    present = [c.strip() for c in header.rstrip("\r\n").split(",")]
    positions = []
    for column in _CSV_COLUMNS:
        if column not in present:
            raise UnknownKeyError(
                f"{path}: ratings.csv column {column!r} is missing from the header; columns present: {present}"
            )
        positions.append(present.index(column))
    return positions, len(present)


def _data_lines(path: str, layout: str) -> Iterator[str]:
    """The file's lines after any header, with '::' turned into tabs for numpy."""
    with open_text(path) as f:
        if layout == "ratings.csv":
            f.readline()
        for line in f:
            yield line.replace("::", "\t") if layout == "ratings.dat" else line


def _fast_parse(path: str, layout: str, positions: list[int], width: int) -> Optional[np.ndarray]:
    """``(n, 4)`` float64 of user, item, rating, timestamp; None if anything looks wrong."""
    delimiter = "," if layout == "ratings.csv" else "\t"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data" is reported below
            table = np.loadtxt(
                _data_lines(path, layout), delimiter=delimiter, dtype=np.float64, ndmin=2, comments=None
            )
    except ValueError:
        return None
    if table.shape[0] == 0 or table.shape[1] != width:
        return None
    table = table[:, positions]
    ids = table[:, [0, 1, 3]]
    if not (np.isfinite(table).all() and (ids == np.round(ids)).all()):
        return None
    return table


def _integral(text: str) -> Optional[float]:
    """``text`` as a float if it is a whole number (as numpy's fast path accepts), else None."""
    try:
        x = float(text)
    except ValueError:
        return None
    return x if math.isfinite(x) and x == round(x) else None


def _slow_parse(
    path: str, layout: str, positions: list[int], width: int, errors: MalformedRows
) -> np.ndarray:
    separator = _SEPARATOR[layout]
    rows = []
    start = 2 if layout == "ratings.csv" else 1
    with open_text(path) as f:
        if layout == "ratings.csv":
            f.readline()
        for line_no, line in enumerate(f, start=start):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            fields = text.split(separator)
            if len(fields) != width:
                errors.report(f"expected {width} fields, found {len(fields)}", line_no)
                continue
            user, item, rating, stamp = (fields[p] for p in positions)
            values = (_integral(user), _integral(item))
            if None in values:
                errors.report(f"user/item ids {user!r}, {item!r} must be integers", line_no)
                continue
            try:
                r = float(rating)
            except ValueError:
                r = math.nan
            if not math.isfinite(r):
                errors.report(f"rating {rating!r} is not a finite number", line_no)
                continue
            t = _integral(stamp)
            if t is None:
                errors.report(f"timestamp {stamp!r} is not an integer", line_no)
                continue
            rows.append((*values, r, t))
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def read_movielens(path: Union[str, os.PathLike], *, on_error: str = "raise") -> Interactions:
    """Read a MovieLens ratings file (or a folder holding one) into :class:`Interactions`.

    Args:
        path: ``u.data``, ``ratings.csv`` or ``ratings.dat`` (layout detected from the
            content), or the folder that holds it.
        on_error: ``"raise"`` at the first malformed line, or ``"skip"`` bad lines
            (with one warning giving the count and the first few reasons).

    Returns:
        Interactions with raw user/item ids mapped to rows, float32 ratings and int64
        timestamps. Batches from it have features ``user`` and ``item`` and label = rating.
    """
    where = _resolve_path(display_path(path))
    errors = MalformedRows(on_error, where)  # checks on_error early
    layout = detect_movielens_layout(where)
    positions, width = [0, 1, 2, 3], 4
    if layout == "ratings.csv":
        positions, width = _csv_positions(_first_line(where), where)
    table = _fast_parse(where, layout, positions, width)
    if table is None:
        table = _slow_parse(where, layout, positions, width, errors)
        errors.warn_if_skipped()
    if table.shape[0] == 0:
        detail = f" (all {errors.skipped} lines were malformed)" if errors.skipped else ""
        raise DataFormatError(f"the file has no ratings{detail}", path=where)
    return Interactions.from_raw_ids(
        table[:, 0].astype(np.int64),
        table[:, 1].astype(np.int64),
        ratings=table[:, 2].astype(np.float32),
        timestamps=table[:, 3].astype(np.int64),
    )


def _format_ratings(ratings: np.ndarray) -> np.ndarray:
    # Format each distinct value once: ratings take few distinct values.
    unique, inverse = np.unique(ratings.astype(np.float32), return_inverse=True)
    text = np.array(
        [np.format_float_positional(v, unique=True, trim="-") for v in unique], dtype=object
    )
    return text[inverse.reshape(-1)]


def write_movielens(
    interactions: Interactions, path: Union[str, os.PathLike], layout: str = "u.data"
) -> None:
    """Write interactions as a MovieLens ratings file (atomically), with their raw ids.

    Args:
        layout: ``"u.data"``, ``"ratings.csv"`` or ``"ratings.dat"``.
    """
    if layout not in MOVIELENS_LAYOUTS:
        raise ConfigError(f"layout must be one of {MOVIELENS_LAYOUTS}, got {layout!r}")
    if interactions.timestamps is None:
        raise ConfigError("write_movielens: MovieLens files need timestamps; these interactions have none")
    for kind, ids in (("user", interactions.user_ids), ("item", interactions.item_ids)):
        if not np.issubdtype(ids.dtype, np.integer):
            raise ConfigError(f"write_movielens: MovieLens {kind} ids must be integers, got dtype {ids.dtype}")
    sep = _SEPARATOR[layout]
    columns = [
        interactions.user_ids[interactions.user_rows].astype(str).astype(object),
        interactions.item_ids[interactions.item_rows].astype(str).astype(object),
        _format_ratings(interactions.ratings),
        interactions.timestamps.astype(str).astype(object),
    ]
    with atomic_text_writer(path) as f:
        if layout == "ratings.csv":
            f.write(",".join(_CSV_COLUMNS) + "\n")
        chunk = 1 << 16
        for start in range(0, len(interactions), chunk):
            parts = [c[start : start + chunk] for c in columns]
            f.write("".join(sep.join(row) + "\n" for row in zip(*parts)))
