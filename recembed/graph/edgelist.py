"""Fast reader for text edge lists (``u v`` or ``u v w`` per line).

The file is read in blocks of whole lines; a numba scanner records where the first three
fields of every line start and end, so no Python object is made per line or per edge.
Ids are parsed as integers in numba; if any id is not an integer, the file is read again
keeping the raw tokens as fixed-width byte strings. Weights are parsed by numpy from the
weight tokens. Node ids are then mapped to ``0..N-1`` in sorted order with ``np.unique``.

Line numbers in errors are 1-based file lines, counting blank and comment lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from recembed.errors import ConfigError, DataFormatError

__all__ = ["EdgeList", "read_edgelist"]

_BLOCK_BYTES = 1 << 25  # 32 MiB of text per block keeps the scanner's arrays small.
_NEWLINE = 10
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class EdgeList:
    """Edges read from a file, with node ids already mapped to ``0..N-1``.

    Attributes:
        src: int64 ``(E,)`` source node index per line.
        dst: int64 ``(E,)`` destination node index per line.
        weights: float64 ``(E,)`` or ``None`` for a two-column file.
        node_ids: ``(N,)`` original ids, sorted: int64 if every id is an integer,
            else str.
    """

    src: np.ndarray
    dst: np.ndarray
    weights: np.ndarray | None
    node_ids: np.ndarray


class _NotIntegers(Exception):
    """Internal: an id token is not an integer; re-read keeping raw tokens."""


def read_edgelist(
    path: str,
    weighted: bool | None = None,
    delimiter: str | None = None,
    comments: str | None = "#",
) -> EdgeList:
    """Read an edge list file into index arrays plus the id map.

    Args:
        path: text file, one edge per line: ``u v`` or ``u v w``.
        weighted: ``True`` needs 3 fields per line, ``False`` exactly 2, ``None`` takes
            the field count of the first edge line (which must be 2 or 3).
        delimiter: one character separating fields (spaces around fields are
            stripped); ``None`` splits on runs of spaces and tabs.
        comments: one character that starts a comment running to the end of the line,
            or ``None`` for no comments.
    Returns:
        An :class:`EdgeList`.
    Raises:
        DataFormatError: wrong field count, an empty field, a weight that is not a
            finite number > 0, or no edges at all; the message names ``path:line``.

    Example:
        >>> edges = read_edgelist("graph.txt")  # doctest: +SKIP
        >>> edges.src.shape, edges.node_ids[:3]  # doctest: +SKIP
    """
    delim = _single_byte(delimiter, "delimiter")
    comment = _single_byte(comments, "comments")
    if delim >= 0 and delim == comment:
        raise ConfigError(f"delimiter and comments are both {delimiter!r}; they must differ")
    if weighted is not None and not isinstance(weighted, bool):
        raise ConfigError(f"weighted must be True, False or None, got {weighted!r}")
    try:
        return _read(path, weighted, delim, comment, integer_ids=True)
    except _NotIntegers:
        return _read(path, weighted, delim, comment, integer_ids=False)


def _single_byte(text: str | None, name: str) -> int:
    if text is None:
        return -1
    raw = text.encode("utf-8") if isinstance(text, str) else b""
    if len(raw) != 1 or raw == b"\n":
        raise ConfigError(f"{name} must be one single-byte character other than newline, got {text!r}")
    return raw[0]


def _read(path: str, weighted: bool | None, delim: int, comment: int, integer_ids: bool) -> EdgeList:
    id_chunks: list[np.ndarray] = []
    weight_chunks: list[np.ndarray] = []
    num_fields = None if weighted is None else (3 if weighted else 2)
    lines_before = 0
    for block in _line_blocks(path):
        starts, ends, counts, empty_field = _scan_fields(block, delim, comment)
        rows = np.flatnonzero(counts > 0)
        if rows.size == 0:
            lines_before += counts.shape[0]
            continue
        if num_fields is None:
            num_fields = int(counts[rows[0]])
            if num_fields not in (2, 3):
                raise DataFormatError(
                    f"the first edge line has {num_fields} fields; expected 'u v' or 'u v w'",
                    path=path, line=lines_before + int(rows[0]) + 1,
                )
        _check_field_counts(path, lines_before, rows, counts, empty_field, num_fields)
        id_starts = starts[rows, :2].ravel()
        id_ends = ends[rows, :2].ravel()
        if integer_ids:
            values = np.empty(id_starts.shape[0], dtype=np.int64)
            if _parse_integers(block, id_starts, id_ends, values) >= 0:
                raise _NotIntegers()
            id_chunks.append(values)
        else:
            id_chunks.append(_gather_tokens(block, id_starts, id_ends))
        if num_fields == 3:
            weight_chunks.append(
                _parse_weights(block, starts[rows, 2], ends[rows, 2], path, lines_before + rows + 1)
            )
        lines_before += counts.shape[0]
    if not id_chunks:
        raise DataFormatError("no edges found (every line is blank or a comment)", path=path)
    all_ids = np.concatenate(id_chunks)
    del id_chunks
    node_ids, inverse = _unique_with_inverse(all_ids)
    del all_ids
    pairs = inverse.reshape(-1, 2)
    if not integer_ids:
        try:
            node_ids = np.char.decode(node_ids, "utf-8")
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"a node id is not valid UTF-8 ({exc})", path=path) from None
    weights = np.concatenate(weight_chunks) if weight_chunks else None
    return EdgeList(np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1]), weights, node_ids)


def _unique_with_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and the int64 index of each input value among them."""
    if values.dtype.kind != "i":
        unique, inverse = np.unique(values, return_inverse=True)
        return unique, inverse.astype(np.int64, copy=False)
    low, high = int(values.min()), int(values.max())
    if high - low < max(4 * values.size, 1 << 20):
        # Dense ids (the usual 0..N-1 node ids): a presence table beats sorting.
        present = np.zeros(high - low + 1, dtype=np.bool_)
        present[values - low] = True
        unique = np.flatnonzero(present) + low
        rank = np.cumsum(present, dtype=np.int64) - 1
        return unique.astype(np.int64), rank[values - low]
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.ones(ordered.size, dtype=np.bool_)
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    inverse = np.empty(values.size, dtype=np.int64)
    inverse[order] = np.cumsum(first, dtype=np.int64) - 1
    return ordered[first], inverse


def _line_blocks(path: str):
    """Yield uint8 arrays of whole lines, about ``_BLOCK_BYTES`` each."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise DataFormatError(f"cannot open the edge list ({exc.strerror})", path=path) from None
    with handle:
        carry = b""
        first = True
        while True:
            data = handle.read(_BLOCK_BYTES)
            if first:
                if data.startswith(_UTF8_BOM):
                    data = data[len(_UTF8_BOM):]
                first = False
            if not data:
                if carry:
                    yield np.frombuffer(carry, dtype=np.uint8)
                return
            data = carry + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # a line longer than a block: keep reading
                carry = data
                continue
            carry = data[cut:]
            yield np.frombuffer(data, dtype=np.uint8, count=cut)


def _check_field_counts(
    path: str, lines_before: int, rows: np.ndarray, counts: np.ndarray,
    empty_field: np.ndarray, num_fields: int,
) -> None:
    bad = rows[(counts[rows] != num_fields) | empty_field[rows]]
    if bad.size == 0:
        return
    row = int(bad[0])
    line = lines_before + row + 1
    if empty_field[row]:
        raise DataFormatError("empty field between delimiters", path=path, line=line)
    shape = "'u v w'" if num_fields == 3 else "'u v'"
    raise DataFormatError(
        f"expected {num_fields} fields ({shape}) but found {int(counts[row])}", path=path, line=line
    )


def _parse_weights(
    block: np.ndarray, starts: np.ndarray, ends: np.ndarray, path: str, line_numbers: np.ndarray
) -> np.ndarray:
    tokens = _gather_tokens(block, starts, ends)
    try:
        weights = tokens.astype(np.float64)
    except ValueError:
        weights = None
    if weights is None:
        for k, token in enumerate(tokens):
            try:
                float(token)
            except ValueError:
                raise DataFormatError(
                    f"weight {token.decode('utf-8', 'replace')!r} is not a number",
                    path=path, line=int(line_numbers[k]),
                ) from None
    bad = np.flatnonzero(~(np.isfinite(weights) & (weights > 0)))
    if bad.size:
        k = int(bad[0])
        raise DataFormatError(
            f"weight {float(weights[k])!r} is not allowed; weights must be finite and > 0",
            path=path, line=int(line_numbers[k]),
        )
    return weights


def _gather_tokens(block: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Tokens as a fixed-width bytes array (dtype ``S<width>``)."""
    width = int((ends - starts).max()) if starts.size else 1
    matrix = _copy_tokens(block, starts, ends, max(width, 1))
    return matrix.view(f"S{max(width, 1)}").ravel()


# ---------------------------------------------------------------------- numba kernels
@numba.njit(cache=True, nogil=True)
def _is_blank(c: int, delim: int) -> bool:
    return (c == 32 or c == 9 or c == 13 or c == 11 or c == 12) and c != delim


@numba.njit(cache=True, nogil=True)
def _scan_fields(buf, delim, comment):
    """Per line: start/end of the first 3 fields, field count, and an empty-field flag."""
    n = buf.shape[0]
    num_lines = 0
    for i in range(n):
        if buf[i] == _NEWLINE:
            num_lines += 1
    if n > 0 and buf[n - 1] != _NEWLINE:
        num_lines += 1
    starts = np.zeros((num_lines, 3), dtype=np.int64)
    ends = np.zeros((num_lines, 3), dtype=np.int64)
    counts = np.zeros(num_lines, dtype=np.int64)
    empty_field = np.zeros(num_lines, dtype=np.bool_)
    i = 0
    for line in range(num_lines):
        # The line's content ends at the newline or at a comment character.
        stop = i
        while stop < n and buf[stop] != _NEWLINE and buf[stop] != comment:
            stop += 1
        next_line = stop
        while next_line < n and buf[next_line] != _NEWLINE:
            next_line += 1
        count = 0
        if delim < 0:
            j = i
            while j < stop:
                if _is_blank(buf[j], -1):
                    j += 1
                    continue
                s = j
                while j < stop and not _is_blank(buf[j], -1):
                    j += 1
                if count < 3:
                    starts[line, count] = s
                    ends[line, count] = j
                count += 1
        else:
            j = i
            has_content = False
            for k in range(i, stop):
                if not _is_blank(buf[k], delim):
                    has_content = True
                    break
            while has_content:
                field_end = j
                while field_end < stop and buf[field_end] != delim:
                    field_end += 1
                s = j
                e = field_end
                while s < e and _is_blank(buf[s], delim):
                    s += 1
                while e > s and _is_blank(buf[e - 1], delim):
                    e -= 1
                if s == e:
                    empty_field[line] = True
                if count < 3:
                    starts[line, count] = s
                    ends[line, count] = e
                count += 1
                if field_end >= stop:
                    break
                j = field_end + 1
        counts[line] = count
        i = next_line + 1
    return starts, ends, counts, empty_field


@numba.njit(cache=True, nogil=True)
def _parse_integers(buf, starts, ends, out):
    """Parse decimal integers into ``out``; return the first non-integer token's index or -1."""
    for k in range(starts.shape[0]):
        s = starts[k]
        e = ends[k]
        negative = False
        if s < e and (buf[s] == 45 or buf[s] == 43):  # '-' or '+'
            negative = buf[s] == 45
            s += 1
        if s == e or e - s > 18:  # 18 digits always fit in int64
            return k
        value = 0
        for j in range(s, e):
            digit = np.int64(buf[j]) - 48
            if digit < 0 or digit > 9:
                return k
            value = value * 10 + digit
        out[k] = -value if negative else value
    return -1


@numba.njit(cache=True, nogil=True)
def _copy_tokens(buf, starts, ends, width):
    out = np.zeros((starts.shape[0], width), dtype=np.uint8)
    for k in range(starts.shape[0]):
        for j in range(ends[k] - starts[k]):
            out[k, j] = buf[starts[k] + j]
    return out
