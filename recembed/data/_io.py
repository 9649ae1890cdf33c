"""File helpers shared by the readers and writers: text opening and atomic writes."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tempfile
from typing import IO, Iterator

__all__ = ["open_text", "atomic_text_writer", "display_path"]


def display_path(path: str | os.PathLike) -> str:
    """The path as it appears in error messages."""
    return os.fspath(path)


def open_text(path: str | os.PathLike) -> IO[str]:
    """Open a text file for reading; ``.gz`` files are decompressed on the fly.

    ``newline=""`` keeps ``\\r\\n`` visible to the csv module, which handles it itself;
    ``utf-8-sig`` drops the byte-order mark spreadsheet tools put before the header.
    """
    path = os.fspath(path)
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, "r", encoding="utf-8-sig", newline="")


@contextlib.contextmanager
def atomic_text_writer(path: str | os.PathLike) -> Iterator[IO[str]]:
    """Write a text file atomically: a temp file in the same folder, then ``os.replace``.

    Readers never see a half-written file; if the body raises, the target is untouched.

    Example:
        >>> with atomic_text_writer("out.tsv") as f:  # doctest: +SKIP
        ...     f.write("1\\t2\\n")
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
