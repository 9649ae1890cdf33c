"""Trained embeddings out of a checkpoint: one ``.npy`` per table, its id map, word2vec text.

For each table ``T`` of the checkpoint's model (every ``...embedding_bags.T.weight``)
:func:`export_embeddings` writes, atomically:

- ``T.npy``: the ``(rows, dim)`` float32 matrix;
- ``T.ids.json``: ``{raw id: row}`` (JSON keys are strings);
- ``T.w2v.txt``: the word2vec text format, header ``"rows dim"``, one ``key v1 .. vD``
  line per row, keys = raw ids;

and ``manifest.json`` listing the tables. Raw ids come from the checkpoint's ``id_maps``;
rows without one (hashed features, the out-of-vocabulary row) are keyed ``#<row>``.
The checkpoint is read with weights-only loading: it never runs code.

Example:
    >>> tables = export_embeddings("runs/mf/model.pt", "runs/mf/embeddings")  # doctest: +SKIP
    >>> [(t.name, t.rows, t.dim) for t in tables]                               # doctest: +SKIP
    [('user_factors', 943, 64), ('item_factors', 1682, 64), ...]
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recembed.errors import CheckpointError, ConfigError
from recembed.train._atomic import atomic_writer
from recembed.train.checkpoint import load_checkpoint

__all__ = ["ExportedTable", "export_embeddings", "checkpoint_tables", "EXPORT_FORMATS"]

EXPORT_FORMATS = ("npy", "word2vec", "both")
_TABLE_KEY = re.compile(r"(?:^|\.)embedding_bags\.([^.]+)\.weight$")


@dataclass
class ExportedTable:
    """One exported table: its name, shape and the files written for it."""

    name: str
    rows: int
    dim: int
    files: list[str] = field(default_factory=list)


def checkpoint_tables(state: dict) -> dict[str, tuple[torch.Tensor, list]]:
    """``{table: (weight (rows, dim) float32, raw key of each row)}`` from a loaded checkpoint.

    Raises:
        CheckpointError: the checkpoint has no model state or no embedding table.
    """
    model = state.get("model")
    if not isinstance(model, dict):
        raise CheckpointError(f"the checkpoint holds no model state (top-level keys: {sorted(state)})")
    id_maps = state.get("id_maps") or {}
    tables: dict[str, tuple[torch.Tensor, list]] = {}
    for key, weight in model.items():
        match = _TABLE_KEY.search(key)
        if match is None or not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            continue
        name = match.group(1)
        if name in tables:  # two collections with a table of one name: keep both, by full path
            name = key.removesuffix(".weight").replace(".", "_")
        rows = weight.shape[0]
        raw = id_maps.get(match.group(1))
        keys = raw.tolist() if isinstance(raw, torch.Tensor) else list(raw) if raw is not None else []
        if len(keys) != rows:
            keys = [f"#{r}" for r in range(rows)]
        tables[name] = (weight.detach().float(), keys)
    if not tables:
        raise CheckpointError("the checkpoint's model has no embedding tables (no '...embedding_bags.<table>.weight')")
    return tables


def _write_npy(path: Path, matrix: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, matrix, allow_pickle=False)
    with atomic_writer(path, "wb") as handle:
        handle.write(buffer.getvalue())


def _write_json(path: Path, value: Any) -> None:
    with atomic_writer(path, "w") as handle:
        json.dump(value, handle)


def export_embeddings(checkpoint: str | Path, out_dir: str | Path, format: str = "both") -> list[ExportedTable]:
    """Write every embedding table of ``checkpoint`` into ``out_dir`` (created if missing).

    Args:
        checkpoint: a file written by the trainer (``model.pt``, ``best.pt`` needs the run's
            id maps, so prefer ``model.pt`` or an epoch checkpoint).
        out_dir: destination folder.
        format: ``"npy"`` (matrix + id map), ``"word2vec"`` (text format) or ``"both"``.

    Returns:
        One :class:`ExportedTable` per table, in model order.
    """
    if format not in EXPORT_FORMATS:
        raise ConfigError(f"format = {format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    from recembed.seq2vec import KeyedVectors  # the word2vec writer lives with the word vectors

    tables = checkpoint_tables(load_checkpoint(checkpoint))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exported = []
    for name, (weight, keys) in tables.items():
        matrix = weight.numpy().astype(np.float32, copy=False)
        entry = ExportedTable(name, int(matrix.shape[0]), int(matrix.shape[1]))
        if format in ("npy", "both"):
            _write_npy(out / f"{name}.npy", matrix)
            _write_json(out / f"{name}.ids.json", {str(key): row for row, key in enumerate(keys)})
            entry.files += [f"{name}.npy", f"{name}.ids.json"]
        if format in ("word2vec", "both"):
            KeyedVectors([str(k) for k in keys], matrix).save_word2vec_format(out / f"{name}.w2v.txt")
            entry.files.append(f"{name}.w2v.txt")
        exported.append(entry)
    _write_json(out / "manifest.json", {t.name: {"rows": t.rows, "dim": t.dim, "files": t.files} for t in exported})
    return exported
