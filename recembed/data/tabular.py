"""Streaming CSV / TSV / Parquet reader driven by a :class:`~recembed.data.spec.FeatureSpec`.

The file is read in chunks of ``chunk_rows`` rows, checked (:mod:`row_parsing`),
encoded (:mod:`encoding`) and cut into batches (:mod:`batching`); only a chunk and
the shuffle buffer are in memory at a time. Each ``iter(reader)`` is one epoch.

Each chunk takes the fastest path that can vouch for it: the compiled TSV scanner
(:mod:`fast_tsv`), then whole-column numpy/Arrow conversion (:mod:`columns`), then
row by row, which is the one that names bad lines. All three give the same batches.

Example:
    >>> from recembed.data import DenseFeature, FeatureSpec, LabelSpec, SparseFeature
    >>> spec = FeatureSpec(sparse=[SparseFeature("user", "userId")],
    ...                    dense=[DenseFeature("age")], label=LabelSpec("clicked"))
    >>> reader = read_csv("clicks.csv", spec, batch_size=512, shuffle=True)  # doctest: +SKIP
    >>> reader.num_rows                                                       # doctest: +SKIP
    {'user': 1843}
    >>> for batch in reader: ...                                              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import os
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

from recembed.data._io import display_path, open_text
from recembed.data.batch import Batch
from recembed.data.batching import check_batch_size, epoch_rng, iter_batches
from recembed.data.encoding import FeatureEncoder, build_vocabularies
from recembed.data.row_block import RowBlock
from recembed.data.row_parsing import MalformedRows, ParsedChunk, RowParser, resolve_columns
from recembed.data.spec import FeatureSpec
from recembed.data.vocab import Vocabulary
from recembed.errors import ConfigError, DataFormatError, require

__all__ = ["TabularReader", "read_csv", "read_parquet", "FORMATS"]

FORMATS = ("csv", "tsv", "parquet")
_Rows = Iterator[tuple[int, Sequence[Any]]]


def _infer_format(path: str) -> str:
    name = path.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".tsv", ".txt")):
        return "tsv"
    return "csv"


class TabularReader:
    """Streams :class:`Batch` es from a CSV, TSV or Parquet file, following ``spec``.

    Args:
        path: the file (``.gz`` is decompressed for CSV/TSV).
        spec: features to read.
        format: ``"csv"``, ``"tsv"`` or ``"parquet"``; inferred from the suffix when None.
        delimiter: field separator for text files (default ``","`` for csv, tab for tsv).
        header: whether the first line of a text file holds the column names.
        column_names: the column names when ``header=False``.
        batch_size / shuffle / seed / drop_last: batching; shuffles use a buffer of
            ``shuffle_buffer`` rows and a new order per epoch (seeded by ``(seed, epoch)``).
        on_error: ``"raise"`` (default) or ``"skip"`` malformed rows (counted in
            :attr:`skipped`, with one warning at the end of the pass).
        vocabularies: prebuilt vocabularies for ``vocab="build"`` features; built from
            the file on first use (one extra pass) when not given.
        chunk_rows: rows read and encoded at a time.
        compiled: let TSV files use the compiled scanner (:mod:`recembed.data.fast_tsv`)
            for clean chunks; ``False`` keeps to the numpy path (same results).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        spec: FeatureSpec,
        *,
        format: Optional[str] = None,
        delimiter: Optional[str] = None,
        header: bool = True,
        column_names: Optional[Sequence[str]] = None,
        batch_size: int = 1024,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        on_error: str = "raise",
        vocabularies: Optional[Mapping[str, Vocabulary]] = None,
        chunk_rows: int = 16384,
        shuffle_buffer: int = 1 << 17,
        compiled: bool = True,
    ) -> None:
        if not isinstance(spec, FeatureSpec):
            raise ConfigError(f"spec must be a FeatureSpec, got {type(spec).__name__}")
        self.path = display_path(path)
        self.spec = spec
        self.format = format or _infer_format(self.path)
        if self.format not in FORMATS:
            raise ConfigError(f"format must be one of {FORMATS}, got {self.format!r}")
        self.delimiter = delimiter or ("\t" if self.format == "tsv" else ",")
        self.header = bool(header)
        self.column_names = None if column_names is None else list(column_names)
        if self.format != "parquet" and not self.header and self.column_names is None:
            raise ConfigError(f"{self.path}: header=False needs column_names")
        self.batch_size = check_batch_size(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.chunk_rows = check_batch_size(chunk_rows)
        self.shuffle_buffer = int(shuffle_buffer)
        self.compiled = bool(compiled)
        self.epoch = 0
        self._errors = MalformedRows(on_error, self.path)
        self._encoder: Optional[FeatureEncoder] = None
        if vocabularies is not None or not spec.needs_vocabularies():
            self._encoder = FeatureEncoder(spec, vocabularies)

    # ------------------------------------------------------------- properties
    @property
    def on_error(self) -> str:
        return self._errors.on_error

    @property
    def skipped(self) -> int:
        """Malformed rows skipped in the current (or last) pass over the file."""
        return self._errors.skipped

    @property
    def vocabularies(self) -> dict[str, Vocabulary]:
        """Vocabulary of each ``vocab="build"`` feature (built on first access)."""
        return self._get_encoder().vocabularies

    @property
    def num_rows(self) -> dict[str, int]:
        """Table rows each sparse feature needs (builds the vocabularies if needed)."""
        return self._get_encoder().num_rows

    def set_epoch(self, epoch: int) -> None:
        """Choose which epoch's shuffle the next ``iter()`` uses."""
        self.epoch = int(epoch)

    def fit_vocabularies(self) -> dict[str, Vocabulary]:
        """Build the vocabularies with one pass over the file (replacing any given)."""
        # Bad rows are reported by the batch pass; counting them twice would mislead.
        errors = MalformedRows(self.on_error, self.path)
        self._encoder = FeatureEncoder(self.spec, build_vocabularies(self.spec, self._parsed_chunks(errors)))
        return self._encoder.vocabularies

    def _get_encoder(self) -> FeatureEncoder:
        if self._encoder is None:
            self.fit_vocabularies()
        return self._encoder

    # -------------------------------------------------------------- iteration
    def iter_blocks(self) -> Iterator[RowBlock]:
        """The file's rows, encoded, in file order, one block per chunk."""
        encoder = self._get_encoder()
        self._errors.reset()
        for chunk in self._parsed_chunks(self._errors):
            if len(chunk):
                yield encoder.encode(chunk)
        self._errors.warn_if_skipped()

    def __iter__(self) -> Iterator[Batch]:
        rng = epoch_rng(self.seed, self.epoch) if self.shuffle else None
        self.epoch += 1
        return iter_batches(
            self.iter_blocks(),
            self.batch_size,
            drop_last=self.drop_last,
            rng=rng,
            shuffle_buffer=self.shuffle_buffer,
        )

    def _parsed_chunks(self, errors: MalformedRows) -> Iterator[ParsedChunk]:
        with contextlib.ExitStack() as stack:
            if self.format == "parquet":
                columns, chunks = self._parquet_chunks(stack)
                num_fields = None
            else:
                columns, chunks = self._text_chunks(stack)
                num_fields = len(columns)
            positions = resolve_columns(self.spec, columns, self.path)
            parser = RowParser(self.spec, positions, num_fields, errors)
            needed = sorted(set(positions[c] for c in self.spec.columns()))
            plan = None
            if self.format == "tsv" and self.compiled:
                from recembed.data.fast_tsv import TsvPlan  # imports numba: only when needed

                plan = TsvPlan.build(self.spec, positions, len(columns), self.delimiter)
            seen = 0
            for raw in chunks:
                seen += raw.num_rows
                # Fastest path first; each gives up (None) on what it does not check.
                parsed = plan.parse(raw.lines) if plan is not None else None
                if parsed is None:
                    fields = raw.columns(needed)
                    parsed = None if fields is None else parser.parse_columns(fields)
                if parsed is None:  # something is off: check row by row, naming lines
                    parsed = parser.parse_rows(raw.rows())
                yield parsed
        if seen == 0:
            raise DataFormatError("the file has no data rows", path=self.path)
        if errors.skipped == seen:
            raise DataFormatError(
                f"all {seen} data rows are malformed; first: {'; '.join(errors.examples)}",
                path=self.path,
            )

    # ---------------------------------------------------------------- sources
    def _text_chunks(self, stack: contextlib.ExitStack) -> tuple[list[str], Iterator["_RawChunk"]]:
        f = stack.enter_context(open_text(self.path))
        first = f.readline()
        if first == "":
            raise DataFormatError("the file is empty", path=self.path)
        if self.header:
            columns = self._split_header(first)
            lines: Iterable[str] = f
            start_line = 2
        else:
            columns = list(self.column_names)
            lines = itertools.chain([first], f)
            start_line = 1
        if self.format == "tsv":
            chunks = _line_chunks(lines, self.delimiter, len(columns), start_line, self.chunk_rows)
        else:
            chunks = _csv_chunks(lines, self.delimiter, len(columns), start_line, self.chunk_rows)
        return columns, chunks

    def _split_header(self, line: str) -> list[str]:
        if self.format == "tsv":
            return line.rstrip("\r\n").split(self.delimiter)
        rows = list(csv.reader([line], delimiter=self.delimiter))
        return rows[0] if rows else []

    def _parquet_chunks(self, stack: contextlib.ExitStack) -> tuple[list[str], Iterator["_RawChunk"]]:
        require("pyarrow", "parquet", "reading Parquet files")
        import pyarrow.parquet as pq
        if not os.path.exists(self.path):
            raise FileNotFoundError(self.path)
        try:
            pf = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises its own ArrowInvalid for non-Parquet input
            raise DataFormatError(f"cannot be read as Parquet: {exc}", path=self.path) from exc
        stack.callback(pf.close)
        resolve_columns(self.spec, list(pf.schema_arrow.names), self.path)
        wanted = self.spec.columns()

        def chunks() -> Iterator[_RawChunk]:
            row_no = 1
            for record_batch in pf.iter_batches(batch_size=self.chunk_rows, columns=wanted):
                yield _ArrowChunk(record_batch, wanted, row_no)
                row_no += record_batch.num_rows

        return wanted, chunks()

    def __repr__(self) -> str:
        return (
            f"TabularReader({self.path!r}, format={self.format!r}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, on_error={self.on_error!r})"
        )


class _RawChunk:
    """Rows of a file not parsed yet: as whole columns (fast path) or row by row."""

    num_rows: int

    def columns(self, needed: Sequence[int]) -> Optional[list]:
        """Field lists of the ``needed`` column positions, or None if rows differ in length."""
        raise NotImplementedError

    def rows(self) -> Iterable[tuple[int, Sequence[Any]]]:
        raise NotImplementedError


class _LineChunk(_RawChunk):
    """Consecutive raw lines of a delimiter-separated file without quoting (TSV)."""

    def __init__(self, lines: list[str], first_line: int, delimiter: str, width: int) -> None:
        self.lines, self.first_line, self.delimiter, self.width = lines, first_line, delimiter, width
        self.num_rows = sum(1 for line in lines if line.rstrip("\r\n"))

    def columns(self, needed: Sequence[int]) -> Optional[list]:
        d, width, n = self.delimiter, self.width, len(self.lines)
        # Every line must have width - 1 separators (a blank line has none: slow path).
        if any(line.count(d) != width - 1 for line in self.lines) or width == 1:
            return None
        text = "".join(self.lines)
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        # One split of the whole chunk is far cheaper than one split per line.
        flat = text.replace("\n", d).split(d)
        total = n * width
        if len(flat) not in (total, total + 1):
            return None
        return [flat[j:total:width] if j in needed else None for j in range(width)]

    def rows(self) -> Iterable[tuple[int, Sequence[Any]]]:
        for i, line in enumerate(self.lines):
            text = line.rstrip("\r\n")
            if text:  # blank lines carry no data
                yield self.first_line + i, text.split(self.delimiter)


class _RowChunk(_RawChunk):
    """Rows already split into fields (CSV through the csv module, Parquet values)."""

    def __init__(self, rows: list[tuple[int, Sequence[Any]]], width: Optional[int]) -> None:
        self._rows, self.width = rows, width
        self.num_rows = len(rows)

    def columns(self, needed: Sequence[int]) -> Optional[list]:
        if self.width is None or any(len(fields) != self.width for _, fields in self._rows):
            return None
        return list(zip(*(fields for _, fields in self._rows)))

    def rows(self) -> Iterable[tuple[int, Sequence[Any]]]:
        return self._rows


class _ArrowChunk(_RawChunk):
    """One Parquet record batch; rows are numbered from 1 in the file."""

    def __init__(self, record_batch: Any, names: Sequence[str], first_row: int) -> None:
        self.record_batch, self.names, self.first_row = record_batch, list(names), first_row
        self.num_rows = record_batch.num_rows

    def columns(self, needed: Sequence[int]) -> Optional[list]:
        return [self.record_batch.column(name) for name in self.names]

    def rows(self) -> Iterable[tuple[int, Sequence[Any]]]:
        values = [self.record_batch.column(name).to_pylist() for name in self.names]
        return zip(range(self.first_row, self.first_row + self.num_rows), zip(*values))


def _line_chunks(
    lines: Iterable[str], delimiter: str, width: int, first_line: int, size: int
) -> Iterator[_RawChunk]:
    lines = iter(lines)
    while True:
        chunk = list(itertools.islice(lines, size))
        if not chunk:
            return
        yield _LineChunk(chunk, first_line, delimiter, width)
        first_line += len(chunk)


def _csv_chunks(
    lines: Iterable[str], delimiter: str, width: int, first_line: int, size: int
) -> Iterator[_RawChunk]:
    reader = csv.reader(lines, delimiter=delimiter)
    offset = first_line - 1
    numbered = ((reader.line_num + offset, row) for row in reader if row)  # skip blank lines
    while True:
        chunk = list(itertools.islice(numbered, size))
        if not chunk:
            return
        yield _RowChunk(chunk, width)


def read_csv(path: str | os.PathLike, spec: FeatureSpec, **options: Any) -> TabularReader:
    """A :class:`TabularReader` over a CSV file (options as for the reader; ``.tsv`` -> TSV)."""
    options.setdefault("format", "tsv" if _infer_format(display_path(path)) == "tsv" else "csv")
    return TabularReader(path, spec, **options)


def read_parquet(path: str | os.PathLike, spec: FeatureSpec, **options: Any) -> TabularReader:
    """A :class:`TabularReader` over a Parquet file (needs ``pyarrow``: ``recembed[parquet]``).

    Malformed-row messages give the 1-based row number where text files give the line.
    """
    options["format"] = "parquet"
    return TabularReader(path, spec, **options)
