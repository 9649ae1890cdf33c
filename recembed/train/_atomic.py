"""Atomic file writing shared by checkpoints, history JSON and plots."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from recembed.errors import ConfigError

__all__ = ["atomic_writer"]


def _fsync_directory(folder: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(
    path: str | os.PathLike, mode: str = "wb", *, durable: bool = True
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success move it over ``path``.

    Readers see either the old file or the complete new one, never a partial write. If the
    body raises, the temporary file is removed and ``path`` is untouched. With ``durable``,
    the data and the rename are flushed to disk (``fsync``) before returning.

    Example:
        >>> import tempfile, os
        >>> target = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> with atomic_writer(target, "w") as handle:
        ...     _ = handle.write("done")
        >>> open(target).read()
        'done'
    """
    if mode not in ("wb", "w"):
        raise ConfigError(f"mode = {mode!r}; atomic_writer writes with 'wb' or 'w'")
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_directory(folder)
