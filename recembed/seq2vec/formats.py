"""Files for keyed vectors: recembed's own format and the word2vec C tool's formats.

Own format (fast, memory-mappable, no code execution on load):
    ``PATH`` - JSON ``{"format": "recembed.keyed_vectors", "version": 1, "count": N,
    "vector_size": D, "keys": [...]}``, written last so it marks a complete save;
    ``PATH.vectors.npy`` - the ``(N, D)`` float32 matrix, loadable with ``np.load(mmap_mode="r")``.

word2vec formats (interchange with gensim and the original tool):
    header line ``"N D"``, then one entry per key: text ``key v1 ... vD`` per line, or
    binary ``key`` + space + ``D`` little-endian float32 + newline. The binary reader also
    accepts entries without the trailing newline (as gensim writes them).

Every writer goes through a temporary file in the target folder and ``os.replace``.
"""

from __future__ import annotations

import json
import mmap
import os
import tempfile
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from recembed.errors import DataFormatError

__all__ = ["atomic_write", "check_finite", "load_native", "load_word2vec", "save_native", "save_word2vec"]

NATIVE_FORMAT = "recembed.keyed_vectors"
NATIVE_VERSION = 1
_LITTLE_F32 = np.dtype("<f4")


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file beside ``path``; on success move it over ``path`` in one step."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_finite(vectors: np.ndarray, path: str, block_rows: int = 65_536) -> None:
    """Raise DataFormatError naming the first row with a NaN or infinite value."""
    for start in range(0, vectors.shape[0], block_rows):
        block = np.asarray(vectors[start:start + block_rows])
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            row = start + int(np.argmax(bad))
            raise DataFormatError(f"vector row {row} contains NaN or infinite values", path=path)


def _vectors_path(path: str) -> str:
    return path + ".vectors.npy"


def save_native(path: str | os.PathLike, keys: Sequence[Hashable], vectors: np.ndarray) -> None:
    """Write keys and ``(N, D)`` float32 vectors in recembed's own format."""
    path = os.fspath(path)
    for i, key in enumerate(keys):
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise DataFormatError(f"key {i} ({key!r}) is a {type(key).__name__}; only str and int keys "
                                  "can be saved", path=path)
    with atomic_write(_vectors_path(path)) as out:
        np.save(out, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    meta = {"format": NATIVE_FORMAT, "version": NATIVE_VERSION, "count": len(keys),
            "vector_size": int(vectors.shape[1]), "keys": list(keys)}
    with atomic_write(path, "w") as out:
        json.dump(meta, out, ensure_ascii=False)


def load_native(path: str | os.PathLike, mmap: str | None = None) -> tuple[list, np.ndarray]:
    """Read what :func:`save_native` wrote; ``mmap`` is numpy's ``mmap_mode`` (``"r"``, ``"c"`` or None)."""
    path = os.fspath(path)
    if mmap not in (None, "r", "r+", "c"):
        raise DataFormatError(f"mmap must be None, 'r', 'r+' or 'c', got {mmap!r}", path=path)
    try:
        with open(path, encoding="utf-8") as handle:
            meta = json.load(handle)
    except FileNotFoundError as exc:
        raise DataFormatError("no such file", path=path) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"not a recembed keyed-vectors file ({exc})", path=path) from exc
    if not isinstance(meta, dict) or meta.get("format") != NATIVE_FORMAT:
        raise DataFormatError(f"not a recembed keyed-vectors file (format {meta.get('format') if isinstance(meta, dict) else None!r})", path=path)
    if meta.get("version") != NATIVE_VERSION:
        raise DataFormatError(f"unsupported version {meta.get('version')!r}, expected {NATIVE_VERSION}", path=path)
    vectors_path = _vectors_path(path)
    try:
        vectors = np.load(vectors_path, mmap_mode=mmap, allow_pickle=False)
    except FileNotFoundError as exc:
        raise DataFormatError("the vectors file is missing", path=vectors_path) from exc
    except ValueError as exc:
        raise DataFormatError(f"unreadable vectors file ({exc})", path=vectors_path) from exc
    keys = meta.get("keys")
    expected = (meta.get("count"), meta.get("vector_size"))
    if vectors.dtype != np.float32 or vectors.ndim != 2 or tuple(vectors.shape) != expected:
        raise DataFormatError(f"vectors have dtype {vectors.dtype} and shape {vectors.shape}, "
                              f"the metadata says float32 and {expected}", path=vectors_path)
    if not isinstance(keys, list) or len(keys) != vectors.shape[0]:
        raise DataFormatError(f"the key list does not have {vectors.shape[0]} entries", path=path)
    check_finite(vectors, vectors_path)
    return keys, vectors


def _check_word2vec_key(key: Hashable, index: int, path: str) -> str:
    text = str(key)
    if not text or any(ch.isspace() for ch in text):
        raise DataFormatError(f"key {index} ({key!r}) is empty or contains whitespace, which the "
                              "word2vec format cannot store", path=path)
    return text


def save_word2vec(path: str | os.PathLike, keys: Sequence[Hashable], vectors: np.ndarray, binary: bool = False) -> None:
    """Write the word2vec C format (text, or binary little-endian float32)."""
    path = os.fspath(path)
    vectors = np.asarray(vectors)
    count, dim = vectors.shape
    texts = [_check_word2vec_key(k, i, path) for i, k in enumerate(keys)]
    with atomic_write(path, "wb") as out:
        out.write(f"{count} {dim}\n".encode())
        if binary:
            rows = np.ascontiguousarray(vectors, dtype=_LITTLE_F32)
            for text, row in zip(texts, rows):
                out.write(text.encode("utf-8") + b" " + row.tobytes() + b"\n")
        else:
            # 9 significant digits round-trip every float32 exactly.
            line_format = " ".join(["%.9g"] * dim)
            lines = []
            for i, (text, row) in enumerate(zip(texts, vectors.tolist())):
                lines.append(text + " " + line_format % tuple(row) + "\n")
                if len(lines) >= 4096 or i == count - 1:
                    out.write("".join(lines).encode("utf-8"))
                    lines = []


def _parse_header(line: bytes, path: str) -> tuple[int, int]:
    parts = line.split()
    try:
        if len(parts) != 2:
            raise ValueError
        count, dim = int(parts[0]), int(parts[1])
        if count < 0 or dim < 1:
            raise ValueError
    except ValueError:
        raise DataFormatError(f"bad header {line[:80]!r}, expected 'COUNT DIMENSION'", path=path, line=1) from None
    return count, dim


def load_word2vec(path: str | os.PathLike, binary: bool = False) -> tuple[list[str], np.ndarray]:
    """Read the word2vec C format; returns ``(keys, (N, D) float32 vectors)``.

    The file is streamed (text) or memory-mapped (binary), so memory stays near the size
    of the returned matrix.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFormatError("no such file", path=path)
    with open(path, "rb") as handle:
        header = handle.readline()
        if not header.endswith(b"\n"):
            raise DataFormatError("missing header line 'COUNT DIMENSION'", path=path, line=1)
        count, dim = _parse_header(header, path)
        if binary:
            keys, vectors = _read_binary_body(handle, len(header), count, dim, path)
        else:
            keys, vectors = _read_text_body(handle, count, dim, path)
    if len(set(keys)) != len(keys):
        raise DataFormatError("duplicate keys", path=path)
    check_finite(vectors, path)
    return keys, vectors


def _read_binary_body(handle, start: int, count: int, dim: int, path: str) -> tuple[list[str], np.ndarray]:
    vectors = np.empty((count, dim), dtype=np.float32)
    keys: list[str] = []
    width = 4 * dim
    size = os.fstat(handle.fileno()).st_size
    if count == 0:
        return keys, vectors
    if size <= start:
        raise DataFormatError(f"file ends inside entry 1 of {count}", path=path)
    with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pos = start
        for i in range(count):
            # Entries may or may not end in a newline (the C tool writes one, gensim does not).
            while pos < size and data[pos] in (10, 13, 32):
                pos += 1
            space = data.find(b" ", pos)
            if space < 0 or space + 1 + width > size:
                raise DataFormatError(f"file ends inside entry {i + 1} of {count}", path=path)
            try:
                keys.append(data[pos:space].decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise DataFormatError(f"key of entry {i + 1} is not valid UTF-8", path=path) from exc
            vectors[i] = np.frombuffer(data[space + 1:space + 1 + width], dtype=_LITTLE_F32)
            pos = space + 1 + width
    return keys, vectors


def _read_text_body(handle, count: int, dim: int, path: str) -> tuple[list[str], np.ndarray]:
    vectors = np.empty((count, dim), dtype=np.float32)
    keys: list[str] = []
    for number, raw in enumerate(handle, start=2):
        try:
            parts = raw.decode("utf-8").split()
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"not valid UTF-8 ({exc.reason})", path=path, line=number) from exc
        if not parts:
            continue
        if len(parts) != dim + 1:
            raise DataFormatError(f"expected a key and {dim} values, found {len(parts) - 1} values",
                                  path=path, line=number)
        if len(keys) == count:
            raise DataFormatError(f"header announces {count} vectors, the file has more", path=path, line=number)
        try:
            vectors[len(keys)] = np.array(parts[1:], dtype=np.float32)
        except ValueError as exc:
            raise DataFormatError(f"a vector value is not a number ({exc})", path=path, line=number) from exc
        keys.append(parts[0])
    if len(keys) != count:
        raise DataFormatError(f"header announces {count} vectors, the file has {len(keys)}", path=path)
    return keys, vectors
