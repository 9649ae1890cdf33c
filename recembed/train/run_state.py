"""What a training run's epoch checkpoints hold, where they live, and how a run resumes from them.

A run writes one checkpoint per epoch into ``<out_dir>/checkpoints``, of one of two kinds::

    checkpoint-000000000003.pt     epoch 3 of a one-process run (one file)
    sharded-000000000003/          epoch 3 of a run sharded over ranks (manifest.json, one
                                   file per rank and the dense part; recembed.distributed)

Both hold the same run state (:data:`RUN_FORMAT`: epoch, step, config, dense optimizer,
history, early stopping, RNG states, data-order seed, id maps) besides the model, so a run
resumes from the newest epoch of either kind, at any number of ranks:
:func:`latest_run_checkpoint` finds it and :func:`read_run_state` reads it as one plain
state dict (a sharded folder's tables are gathered whole, with no process group).

Example:
    >>> path = latest_run_checkpoint("runs/mf/checkpoints")      # doctest: +SKIP
    >>> state = read_run_state(path)                              # doctest: +SKIP
    >>> state["epoch"], sorted(state["model"])[:1]                # doctest: +SKIP
    (3, ['biases.embedding_bags.item_bias.weight'])
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from recembed.errors import CheckpointError
from recembed.train.checkpoint import list_checkpoints, load_checkpoint

__all__ = ["RUN_FORMAT", "RESUMABLE", "SHARDED_PREFIX", "thread_count", "use_threads", "rng_state",
           "set_rng_state", "check_resumable", "sharded_checkpoint_path", "list_sharded_checkpoints",
           "remove_sharded_checkpoint", "latest_run_checkpoint", "read_run_state"]

RUN_FORMAT = "recembed-run"
#: Keys that may change between a run and its resumption; everything else must match.
RESUMABLE = {"train.epochs", "train.progress", "train.threads", "train.out_dir", "train.log_every",
             "train.prefetch_depth", "train.keep_checkpoints", "train.patience", "train.early_stopping",
             "train.min_delta", "train.plot", "train.nproc", "train.collective_timeout"}
SHARDED_PREFIX = "sharded"
_SHARDED_NAME = re.compile(rf"^{SHARDED_PREFIX}-(\d+)$")


def thread_count(requested: int, processes: int = 1) -> int:
    """``requested``, or for 0: one process gets one core fewer than the machine has (the
    loader thread gets that core), at least 1 and at most 4 (recommender steps are small;
    more threads spin); each of ``processes > 1`` ranks gets ``cores // processes``, at least 1.

    On 2 cores this is 1: measured on a busy 2-core machine, two torch/numba threads made
    a matrix-factorisation epoch 25x slower than one, as their workers spin for work.
    """
    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    return max(1, cores // processes) if processes > 1 else max(1, min(4, cores - 1))


@contextlib.contextmanager
def use_threads(count: int) -> Iterator[None]:
    """Use ``count`` torch and numba threads inside the block, then restore the old counts."""
    import numba

    old_torch, old_numba = torch.get_num_threads(), numba.get_num_threads()
    # numba first: starting its thread pool can reset torch's thread count.
    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(count)
    try:
        yield
    finally:
        numba.set_num_threads(old_numba)
        torch.set_num_threads(old_torch)


def rng_state() -> dict:
    """torch, numpy and Python RNG states in checkpoint form (tensors, ints, lists)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, keys.astype(np.int64), pos, has_gauss, cached],
            "python": list(random.getstate()[1]), "python_version": random.getstate()[0]}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys).astype(np.uint32), pos, has_gauss, cached))
    random.setstate((state["python_version"], tuple(state["python"]), None))


def _flatten(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_resumable(state: dict, config: dict, path: Path) -> None:
    """Raise CheckpointError unless ``state`` is a run checkpoint whose config equals ``config``
    (nested dicts) in every key outside :data:`RESUMABLE`."""
    if state.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{path} is not a recembed training checkpoint")
    saved, current = _flatten(state["config"]), _flatten(config)
    changed = sorted(k for k in set(saved) | set(current) if k not in RESUMABLE and saved.get(k) != current.get(k))
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:6])
        raise CheckpointError(f"cannot resume from {path}: the config changed ({details}); only "
                              f"{', '.join(sorted(RESUMABLE))} may change")


# ---- sharded epoch folders ---------------------------------------------------------------

def sharded_checkpoint_path(directory: str | os.PathLike, epoch: int) -> Path:
    """The folder a sharded run writes epoch ``epoch``'s checkpoint to."""
    return Path(directory) / f"{SHARDED_PREFIX}-{epoch:012d}"


def list_sharded_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(epoch, folder)`` of every complete sharded checkpoint (one with a manifest), by epoch."""
    from recembed.distributed.checkpoint import MANIFEST

    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = _SHARDED_NAME.match(entry.name)
        if match and (entry / MANIFEST).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def remove_sharded_checkpoint(folder: str | os.PathLike) -> None:
    """Delete a sharded checkpoint folder; the manifest goes first, so a folder left half
    deleted (a crash) is never taken for a complete checkpoint."""
    from recembed.distributed.checkpoint import MANIFEST

    folder = Path(folder)
    (folder / MANIFEST).unlink(missing_ok=True)
    for entry in folder.iterdir() if folder.is_dir() else []:
        if entry.is_file():
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # something else was put there: leave the folder
        folder.rmdir()


def latest_run_checkpoint(directory: str | os.PathLike, prefix: str = "checkpoint") -> Path | None:
    """The newest epoch checkpoint in ``directory``: a ``{prefix}-N.pt`` file or a
    ``sharded-N`` folder, whichever has the highest epoch N (the file on a tie); None if none."""
    found = [(epoch, 1, path) for epoch, path in list_checkpoints(directory, prefix)]
    found += [(epoch, 0, path) for epoch, path in list_sharded_checkpoints(directory)]
    return max(found)[2] if found else None


def read_run_state(path: str | os.PathLike) -> dict:
    """A run checkpoint as one state dict with the whole model under ``"model"``.

    ``path`` is a checkpoint file or a sharded checkpoint folder; a folder's tables are
    gathered whole in this process (no process group needed), so a sharded run's epoch
    can be evaluated or resumed by one process.
    """
    path = Path(path)
    if not path.is_dir():
        return load_checkpoint(path)
    from recembed.distributed.checkpoint import load_extra, load_unsharded

    state = dict(load_extra(path))
    if "format" not in state:
        raise CheckpointError(f"{path} is a sharded checkpoint but not of a recembed training run "
                              "(its extra data has no run state)")
    state["model"] = load_unsharded(path)
    return state
