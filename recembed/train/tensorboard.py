"""TensorBoard logging of scalars and of embedding tables for the Embedding Projector.

Needs the optional ``tensorboard`` package (``pip install 'recembed[tensorboard]'``).
View with ``tensorboard --logdir <log_dir>``; embeddings appear under the PROJECTOR tab.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from recembed.errors import ConfigError, InvalidDtypeError, ShapeMismatchError, require

__all__ = ["TensorBoardLogger"]


def _clean_label(value: object) -> str:
    # The projector reads metadata as TSV: a tab or newline inside a label would shift rows.
    text = str(value)
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


class TensorBoardLogger:
    """Writes scalars and embedding snapshots to a TensorBoard log directory.

    Args:
        log_dir: folder for event files (created if missing).
        flush_secs: how often pending events are written to disk.

    Example:
        >>> with TensorBoardLogger("runs/exp1") as tb:  # doctest: +SKIP
        ...     tb.log_scalars({"loss": 0.52, "auc": 0.74}, step=100, prefix="val/")
        ...     tb.add_embedding(item_table.weight, metadata=item_names, tag="items", step=100)
    """

    def __init__(self, log_dir: str | os.PathLike, *, flush_secs: int = 30) -> None:
        require("tensorboard", "tensorboard", "TensorBoardLogger")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=flush_secs)
        self.closed = False

    def _check_open(self) -> None:
        if self.closed:
            raise ConfigError(f"TensorBoardLogger for {self.log_dir} is closed")

    def log_scalar(self, tag: str, value: float, step: int) -> None:
        """Log one number (a float or a 0-d tensor) at global step ``step``."""
        self._check_open()
        if not isinstance(tag, str) or not tag:
            raise ConfigError(f"tag = {tag!r}; it must be a non-empty string")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ConfigError(f"step = {step!r}; it must be an integer >= 0")
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"scalar {tag!r} = {value!r} is not a number") from exc
        self._writer.add_scalar(tag, number, global_step=step)

    def log_scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        """Log each ``name: value`` as the scalar ``prefix + name`` (e.g. prefix "val/")."""
        for name, value in values.items():
            self.log_scalar(f"{prefix}{name}", value, step)

    def add_embedding(
        self,
        matrix: torch.Tensor | np.ndarray,
        metadata: Sequence[object] | Sequence[Sequence[object]] | None = None,
        *,
        tag: str = "embedding",
        step: int | None = None,
        metadata_header: Sequence[str] | None = None,
    ) -> None:
        """Save an ``(N, D)`` embedding matrix (and row labels) for the Embedding Projector.

        The projector stores the matrix as text, so pass a sample of rows for big tables.

        Args:
            matrix: ``(N, D)`` float rows, e.g. ``table.weight``.
            metadata: ``N`` labels, one per row; or ``N`` tuples of columns together with
                ``metadata_header`` naming the columns. Tabs and newlines become spaces.
            tag: name shown in the projector; letters, digits, ``_``, ``-``, ``.`` only,
                since it becomes a folder name.
            step: global step, so snapshots of the same tag at different steps coexist.
        """
        self._check_open()
        rows = (
            matrix.detach().cpu()
            if isinstance(matrix, torch.Tensor)
            else torch.as_tensor(np.asarray(matrix))
        )
        if rows.dim() != 2:
            raise ShapeMismatchError(
                f"embedding matrix must be 2-D (rows, dim), got shape {tuple(rows.shape)}"
            )
        if not rows.is_floating_point():
            raise InvalidDtypeError(
                f"embedding matrix must be floating point, got dtype {rows.dtype}"
            )
        # The tag becomes a folder name: only safe characters, and never "." or "..".
        safe = isinstance(tag, str) and all(c.isalnum() or c in "_-." for c in tag)
        if not safe or not tag.strip("."):
            raise ConfigError(
                f"tag = {tag!r}; use letters, digits, '_', '-' or '.' (not only dots)"
            )
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise ConfigError(f"step = {step!r}; it must be an integer >= 0 or None")
        labels, header = self._metadata(metadata, metadata_header, rows.shape[0])
        self._writer.add_embedding(
            rows.to(torch.float32),
            metadata=labels,
            tag=tag,
            global_step=step,
            metadata_header=header,
        )

    @staticmethod
    def _metadata(
        metadata: Sequence[object] | None, metadata_header: Sequence[str] | None, num_rows: int
    ) -> tuple[list | None, list[str] | None]:
        """Validate projector labels; return ``(labels, header)`` ready for TSV."""
        if metadata is None:
            if metadata_header is not None:
                raise ConfigError("metadata_header was given without metadata")
            return None, None
        labels = list(metadata)
        if len(labels) != num_rows:
            raise ShapeMismatchError(
                f"metadata has {len(labels)} labels but the embedding matrix has {num_rows} rows"
            )
        if metadata_header is None:
            return [_clean_label(v) for v in labels], None
        header = [_clean_label(h) for h in metadata_header]
        for i, row in enumerate(labels):
            if isinstance(row, str) or not isinstance(row, Sequence) or len(row) != len(header):
                raise ShapeMismatchError(
                    f"metadata[{i}] = {row!r}; with a metadata_header of {len(header)} columns "
                    f"every entry must be a sequence of {len(header)} values"
                )
        return [[_clean_label(v) for v in row] for row in labels], header

    def flush(self) -> None:
        """Write pending events to disk now."""
        self._check_open()
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file; calling it twice is harmless."""
        if not self.closed:
            self._writer.close()
            self.closed = True

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
