"""Checkpoints that are written atomically, verified on load, and never execute code.

A checkpoint is a ``dict`` of plain data -- nested ``dict``/``list``/``tuple`` of tensors,
``int``, ``float``, ``str``, ``bool`` and ``None`` -- saved with :func:`torch.save`, so
``torch.load(path, weights_only=True)`` reads it too. :func:`save_checkpoint` adds one
reserved top-level key, ``"__recembed_checkpoint__"``, holding a format version and a
SHA-256 digest of the content; :func:`load_checkpoint` recomputes the digest and refuses a
file whose content changed. Keeping the digest inside the file (rather than a sidecar)
means the single ``os.replace`` that publishes a checkpoint also publishes its checksum.

Example:
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> manager = CheckpointManager(folder, keep_last=2)
    >>> for step in (100, 200, 300):
    ...     _ = manager.save({"step": step, "weight": torch.ones(2)}, step)
    >>> [p.name for p in manager.checkpoints()]
    ['checkpoint-000000000200.pt', 'checkpoint-000000000300.pt']
    >>> load_checkpoint(manager.latest())["step"]
    300
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import torch

from recembed.errors import CheckpointError, ConfigError
from recembed.train._atomic import atomic_writer

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "CheckpointManager",
    "RESERVED_KEY",
]

RESERVED_KEY = "__recembed_checkpoint__"
FORMAT_VERSION = 1


def _sanitise(value: object, where: str, active: set[int]) -> object:
    """Copy ``value`` into the allowed types (numpy -> torch), or raise naming ``where``."""
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            raise CheckpointError(
                f"{where} is a {value.layout} tensor; checkpoints store dense tensors only "
                "(call .to_dense() first)"
            )
        tensor = value.detach()
        if type(tensor) is not torch.Tensor:  # Parameter or another subclass: keep the data only
            tensor = tensor.as_subclass(torch.Tensor)
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        # torch.save writes a view's whole storage; copy views of larger buffers.
        if tensor.untyped_storage().nbytes() > tensor.numel() * tensor.element_size():
            tensor = tensor.clone()
        return tensor
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise CheckpointError(
                f"{where} is a numpy array of Python objects, which a checkpoint cannot hold"
            )
        return torch.from_numpy(np.array(value, copy=True))
    if isinstance(value, np.generic):
        return value.item()
    if value is None:
        return None
    for base in (bool, int, float, str):  # bool first: it is also an int
        if isinstance(value, base):
            # A subclass (IntEnum, str-based enum) would be pickled by class and then refused
            # by the weights-only loader, so keep the plain value.
            return base(value)
    if isinstance(value, (dict, list, tuple)):
        if id(value) in active:
            raise CheckpointError(f"{where} contains itself; checkpoint state must not be cyclic")
        active.add(id(value))
        try:
            if isinstance(value, dict):
                out = {}
                for key, item in value.items():
                    if isinstance(key, bool) or not isinstance(key, (str, int)):
                        raise CheckpointError(
                            f"{where} has a key {key!r} of type {type(key).__name__}; "
                            "dict keys must be str or int"
                        )
                    out[key] = _sanitise(item, f"{where}[{key!r}]", active)
                return out
            items = [_sanitise(item, f"{where}[{i}]", active) for i, item in enumerate(value)]
            return items if isinstance(value, list) else tuple(items)
        finally:
            active.discard(id(value))
    raise CheckpointError(
        f"{where} has type {type(value).__module__}.{type(value).__qualname__}; checkpoints hold "
        "only dict/list/tuple of tensors, int, float, str, bool and None"
    )


def _digest(state: object) -> str:
    """SHA-256 of the content: structure, types, keys and exact tensor bytes."""
    h = hashlib.sha256()

    def feed(value: object) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
        elif isinstance(value, dict):
            h.update(f"D{len(value)}".encode())
            for key, item in value.items():
                h.update(f"K{type(key).__name__}{len(repr(key))}:{key!r}".encode())
                feed(item)
        elif isinstance(value, (list, tuple)):
            h.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}".encode())
            for item in value:
                feed(item)
        elif isinstance(value, float):
            h.update(b"F" + struct.pack("<d", value))
        else:
            text = repr(value)
            h.update(f"S{type(value).__name__}{len(text)}:{text}".encode())

    feed(state)
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically: the file is either the old one or the new one.

    The state is validated (and numpy arrays converted to tensors) before anything is
    written, then saved to a temporary file in the same folder, flushed to disk with
    ``fsync``, and moved over ``path`` with ``os.replace``.

    Args:
        path: destination file; its folder must exist.
        state: ``dict`` of plain data (see the module docstring); tensors are saved on CPU.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        CheckpointError: an unsupported value (the message names its key path and type),
        the reserved key in ``state``, or a write failure.
    """
    path = Path(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint state must be a dict, got {type(state).__name__}")
    if RESERVED_KEY in state:
        raise CheckpointError(f"state uses the reserved key {RESERVED_KEY!r}")
    clean = _sanitise(state, "state", set())
    clean[RESERVED_KEY] = {"format_version": FORMAT_VERSION, "sha256": _digest(clean)}
    try:
        with atomic_writer(path, "wb") as handle:
            torch.save(clean, handle)
    except OSError as exc:
        raise CheckpointError(f"could not write checkpoint {path}: {exc}") from exc
    return path


def _unpickling_reason(exc: Exception) -> str:
    """The informative line of torch's long weights-only error (not its weights_only=False hint)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return line
    return lines[-1][:300] if lines else type(exc).__name__


def load_checkpoint(
    path: str | os.PathLike, *, map_location: str | torch.device = "cpu", verify: bool = True
) -> dict:
    """Load a checkpoint without executing code, and check its SHA-256 digest.

    Uses ``torch.load(weights_only=True)``: a file that contains anything but tensors and
    plain containers (for example a pickled object whose ``__reduce__`` would run code) is
    refused before any such object is built.

    Args:
        path: a file written by :func:`save_checkpoint`.
        map_location: device to place the tensors on.
        verify: check the embedded digest. Pass False only to read a weights-only file that
            was written by plain ``torch.save``.

    Returns:
        The saved ``state`` dict (without the reserved checksum key).

    Raises:
        CheckpointError: missing file, truncated or corrupted file, disallowed content,
        or a digest mismatch; the message names the path.
    """
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {what}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickling_reason(exc)
        if "GLOBAL" in reason or "Unsupported class" in reason:
            raise CheckpointError(
                f"refused to load checkpoint {path}: it holds objects other than tensors and "
                f"plain containers, which could run code when loaded ({reason})"
            ) from exc
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted: {reason}") from exc
    except Exception as exc:  # torch raises many types (RuntimeError, EOFError, KeyError...)
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupted: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    meta = state.pop(RESERVED_KEY, None)
    if not verify:
        return state
    if not isinstance(meta, dict) or "sha256" not in meta:
        raise CheckpointError(
            f"checkpoint {path} has no recembed checksum; it was not written by save_checkpoint "
            "(load it with verify=False if you trust it)"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {meta.get('format_version')!r}; "
            f"this recembed reads version {FORMAT_VERSION}"
        )
    actual = _digest(state)
    if actual != meta["sha256"]:
        raise CheckpointError(
            f"checkpoint {path} is corrupted: content SHA-256 {actual[:16]}... does not match "
            f"the recorded {str(meta['sha256'])[:16]}..."
        )
    return state


def list_checkpoints(
    directory: str | os.PathLike, prefix: str = "checkpoint"
) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``{prefix}-{step}.pt`` in ``directory``, by ascending step.

    A missing directory has no checkpoints (an empty list), so a fresh run can call this.
    """
    directory = Path(directory)
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} is not a directory")
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)\.pt$")
    found = []
    for entry in directory.iterdir():
        match = pattern.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(directory: str | os.PathLike, prefix: str = "checkpoint") -> Path | None:
    """The ``{prefix}-{step}.pt`` file with the highest step, or None if there is none."""
    found = list_checkpoints(directory, prefix)
    return found[-1][1] if found else None


class CheckpointManager:
    """Saves numbered checkpoints into one folder and keeps only the newest ``keep_last``.

    Files are named ``{prefix}-{step:012d}.pt``; "newest" means highest step, not latest
    modification time, so a copied folder keeps its order.

    Args:
        directory: created if missing.
        keep_last: how many checkpoints to keep (>= 1), or None to keep all.
        prefix: file name prefix, letters/digits/``_``/``.`` only.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        keep_last: int | None = 3,
        prefix: str = "checkpoint",
    ) -> None:
        valid_count = (
            isinstance(keep_last, int) and not isinstance(keep_last, bool) and keep_last >= 1
        )
        if keep_last is not None and not valid_count:
            raise ConfigError(f"keep_last = {keep_last!r}; it must be an integer >= 1 or None")
        if not re.fullmatch(r"[A-Za-z0-9_.]+", prefix or ""):
            raise ConfigError(f"prefix = {prefix!r}; use letters, digits, '_' or '.' only")
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.prefix = prefix

    def path_for(self, step: int) -> Path:
        """The file a checkpoint for ``step`` is written to."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ConfigError(f"step = {step!r}; it must be an integer >= 0")
        return self.directory / f"{self.prefix}-{step:012d}.pt"

    def save(self, state: dict, step: int) -> Path:
        """Save ``state`` as the checkpoint of ``step``, then delete the oldest extras."""
        path = self.path_for(step)
        self.directory.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, state)
        if self.keep_last is not None:
            for _, old in self.checkpoints_with_steps()[: -self.keep_last]:
                old.unlink(missing_ok=True)
        return path

    def checkpoints_with_steps(self) -> list[tuple[int, Path]]:
        """``(step, path)`` pairs by ascending step."""
        return list_checkpoints(self.directory, self.prefix)

    def checkpoints(self) -> list[Path]:
        """Checkpoint paths by ascending step."""
        return [path for _, path in self.checkpoints_with_steps()]

    def latest(self) -> Path | None:
        """The newest checkpoint, or None."""
        return latest_checkpoint(self.directory, self.prefix)

    def load_latest(self, *, map_location: str | torch.device = "cpu") -> dict | None:
        """Load the newest checkpoint (None if there is none); errors if it is corrupted."""
        path = self.latest()
        return None if path is None else load_checkpoint(path, map_location=map_location)
