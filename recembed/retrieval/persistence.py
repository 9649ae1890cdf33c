"""One-file index storage: a ``.npz`` of raw arrays plus a JSON metadata entry.

The file is written to a temporary name in the target folder and moved into place with
``os.replace``, so a crash never leaves a half-written index under the real name. It is
read with ``allow_pickle=False``: loading never runs code from the file.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from typing import Any, Mapping, Union

import numpy as np

from recembed.errors import CheckpointError

FORMAT = "recembed.retrieval.index"
VERSION = 1
_META_KEY = "meta_json"

PathLike = Union[str, "os.PathLike[str]"]


def write_index_file(path: PathLike, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Atomically write ``arrays`` and ``meta`` (JSON-serialisable) to ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    payload = {"format": FORMAT, "version": VERSION, **meta}
    entries = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    entries[_META_KEY] = np.frombuffer(json.dumps(payload, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    handle, tmp_path = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **entries)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise


def read_index_file(path: PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read ``(meta, arrays)`` written by :func:`write_index_file`; bad files -> CheckpointError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no index file there")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable index file ({exc})") from exc
    if _META_KEY not in arrays:
        raise CheckpointError(f"{path}: has no '{_META_KEY}' entry; it was not written by recembed.retrieval")
    try:
        meta = json.loads(arrays.pop(_META_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format is {meta.get('format') if isinstance(meta, dict) else meta!r}, expected {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: format version {meta.get('version')!r}; this recembed reads version {VERSION}")
    return meta, arrays


def require_arrays(path: PathLike, arrays: Mapping[str, np.ndarray], *names: str) -> None:
    """Raise :class:`CheckpointError` naming any of ``names`` missing from ``arrays``."""
    missing = [name for name in names if name not in arrays]
    if missing:
        raise CheckpointError(f"{os.fspath(path)}: index file lacks the arrays {missing}")
