"""A compiled (numba) scanner for clean TSV chunks such as Criteo day files.

It reads a chunk's bytes once: labels and dense fields are parsed as plain integers
(``[+-]digits``, the Criteo case), categorical fields are fingerprinted with 64-bit
FNV-1a and factorised per chunk, so Python touches each *distinct* token once, not
each field. Anything it does not fully handle (a decimal point, a blank line, a wrong
field count, a label other than 0/1, a multi-id column) makes it return None, and the
caller falls back to the numpy path (and from there to the row-by-row path, which
names the bad line). Results are identical on every path.

This module imports numba, so it is imported only when a TSV file is read.
Distinct tokens of a chunk are told apart by their 64-bit fingerprints; two different
tokens with the same fingerprint in one chunk (odds about ``n**2 / 2**65``) would share
a row.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numba
import numpy as np

from recembed.data.columns import FactorizedTokens
from recembed.data.row_parsing import ParsedChunk
from recembed.data.spec import FeatureSpec

__all__ = ["TsvPlan"]

_SKIP, _LABEL, _DENSE, _TOKEN, _INT = 0, 1, 2, 3, 4
_MAX_DIGITS = 15  # integers below 10**15 convert to float64 exactly


_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@numba.njit(cache=True, inline="always")
def _parse_int(buf, start, end):
    """``(ok, value)`` of ``buf[start:end]`` as ``[+-]digits`` with 1.._MAX_DIGITS digits."""
    if start >= end:
        return False, 0
    sign = 1
    pos = start
    if buf[pos] == 45 or buf[pos] == 43:  # '-' or '+'
        if buf[pos] == 45:
            sign = -1
        pos += 1
    if pos >= end or end - pos > _MAX_DIGITS:
        return False, 0
    value = 0
    while pos < end:
        digit = np.int64(buf[pos]) - 48
        if digit < 0 or digit > 9:
            return False, 0
        value = value * 10 + digit
        pos += 1
    return True, sign * value


@numba.njit(cache=True)
def _scan(buf, num_lines, width, delimiter, roles, slots, labels, dense, ints, hashes, starts, ends):
    """Fill the outputs from ``num_lines`` lines in ``buf``; -1, or the first line to re-check."""
    size = buf.shape[0]
    pos = 0
    for line in range(num_lines):
        column = 0
        while True:
            start = pos
            while pos < size and buf[pos] != delimiter and buf[pos] != 10:
                pos += 1
            end = pos
            at_line_end = pos >= size or buf[pos] == 10
            if at_line_end and end > start and buf[end - 1] == 13:
                end -= 1  # CRLF
            if column < width:
                role = roles[column]
                slot = slots[column]
                if role == _LABEL or role == _INT:
                    ok, value = _parse_int(buf, start, end)
                    if not ok:
                        return line
                    if role == _LABEL:
                        labels[line] = value
                    else:
                        ints[line] = value
                elif role == _DENSE:
                    if start == end:
                        dense[line, slot] = np.nan  # empty field: missing
                    else:
                        ok, value = _parse_int(buf, start, end)
                        if not ok:
                            return line
                        dense[line, slot] = value
                elif role == _TOKEN:
                    h = _FNV_OFFSET
                    for i in range(start, end):
                        h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
                    hashes[line, slot] = h
                    starts[line, slot] = start
                    ends[line, slot] = end
            column += 1
            pos += 1  # past the delimiter or newline
            if at_line_end:
                break
        if column != width:
            return line
    return -1


class TsvPlan:
    """What to do with each column of a TSV file under a spec (built once per pass).

    Use :meth:`build`, which returns None when the spec or file layout is outside what
    the scanner handles (multi-id columns, a column used twice, a multi-byte delimiter).
    """

    def __init__(self, spec: FeatureSpec, roles: np.ndarray, slots: np.ndarray, width: int, delimiter: int):
        self.spec = spec
        self.roles = roles
        self.slots = slots
        self.width = width
        self.delimiter = delimiter

    @classmethod
    def build(
        cls, spec: FeatureSpec, positions: Mapping[str, int], width: int, delimiter: str
    ) -> Optional["TsvPlan"]:
        if len(delimiter) != 1 or ord(delimiter) > 127 or delimiter in "\r\n":
            return None
        if any(f.multi_valued for f in spec.sparse):
            return None
        roles = np.zeros(width, dtype=np.int64)
        slots = np.zeros(width, dtype=np.int64)
        wanted = [(positions[spec.label.column], _LABEL, 0)]
        wanted += [(positions[f.source], _DENSE, j) for j, f in enumerate(spec.dense)]
        wanted += [(positions[f.source], _TOKEN, j) for j, f in enumerate(spec.sparse)]
        if spec.timestamp is not None:
            wanted.append((positions[spec.timestamp], _INT, 0))
        for at, role, slot in wanted:
            if roles[at] != _SKIP:
                return None  # one column feeding two features: leave it to the general path
            roles[at], slots[at] = role, slot
        return cls(spec, roles, slots, width, ord(delimiter))

    def parse(self, lines: Sequence[str]) -> Optional[ParsedChunk]:
        """The chunk parsed, or None if any line needs the general path."""
        n = len(lines)
        data = "".join(lines).encode("utf-8")
        buf = np.frombuffer(data, dtype=np.uint8)
        num_dense, num_sparse = len(self.spec.dense), len(self.spec.sparse)
        labels = np.empty(n, dtype=np.float64)
        dense = np.empty((n, num_dense), dtype=np.float64)
        ints = np.zeros(n, dtype=np.int64)
        hashes = np.empty((n, num_sparse), dtype=np.uint64)
        starts = np.empty((n, num_sparse), dtype=np.int64)
        ends = np.empty((n, num_sparse), dtype=np.int64)
        failed = _scan(
            buf, n, self.width, self.delimiter, self.roles, self.slots,
            labels, dense, ints, hashes, starts, ends,
        )
        if failed >= 0:
            return None
        if self.spec.label.kind == "binary" and not np.isin(labels, (0.0, 1.0)).all():
            return None
        tokens = {}
        for j, feature in enumerate(self.spec.sparse):
            _, first, codes = np.unique(hashes[:, j], return_index=True, return_inverse=True)
            uniques = [data[s:e].decode("utf-8") for s, e in zip(starts[first, j].tolist(), ends[first, j].tolist())]
            tokens[feature.name] = FactorizedTokens(uniques, codes.reshape(-1).astype(np.int64))
        return ParsedChunk(
            labels=labels,
            dense=dense,
            tokens=tokens,
            timestamps=ints if self.spec.timestamp is not None else None,
        )
