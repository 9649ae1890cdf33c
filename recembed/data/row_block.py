"""A block of encoded examples held as numpy columns, before it is cut into batches.

Readers and generators all produce :class:`RowBlock` s; :mod:`recembed.data.batching`
shuffles and cuts them into :class:`~recembed.data.batch.Batch` es, so that logic exists once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import numpy as np
from recembed.data.batch import Batch
from recembed.data.batch_layout import cut_into_batches
from recembed.errors import ShapeMismatchError

__all__ = ["RowBlock", "take_jagged"]


def take_jagged(
    lengths: np.ndarray, values: np.ndarray, index: np.ndarray, offsets: Optional[np.ndarray] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``index`` of a jagged column, as ``(lengths, values)``.

    Example:
        >>> take_jagged(np.array([2, 0, 1]), np.array([5, 6, 7]), np.array([2, 0]))
        (array([1, 2]), array([7, 5, 6]))
    """
    if offsets is None:
        offsets = np.concatenate(([0], np.cumsum(lengths)))
    new_lengths = lengths[index]
    if new_lengths.size and bool(np.all(new_lengths == 1)):
        return new_lengths, values[offsets[index]]  # single-valued fast path
    starts = offsets[index]
    new_starts = np.cumsum(new_lengths) - new_lengths
    total = int(new_lengths.sum())
    gather = np.repeat(starts - new_starts, new_lengths) + np.arange(total, dtype=np.int64)
    return new_lengths, values[gather]


@dataclass(eq=False)
class RowBlock:
    """``n`` encoded examples as numpy columns.

    Attributes:
        labels: ``(n,)`` float32.
        dense: ``(n, n_dense)`` float32.
        sparse: feature name -> ``(lengths (n,) int64, values (sum(lengths),) int64)``,
            values already mapped to table rows. Dict order is the batch's key order.
        timestamps: ``(n,)`` int64 or None.
    """

    labels: np.ndarray
    dense: np.ndarray
    sparse: dict[str, tuple[np.ndarray, np.ndarray]]
    timestamps: Optional[np.ndarray] = None
    _offsets: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)
    _single_hot: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = self.labels.shape[0]
        if self.dense.ndim != 2 or self.dense.shape[0] != n:
            raise ShapeMismatchError(f"RowBlock.dense must be ({n}, n_dense), got {self.dense.shape}")
        for name, (lengths, values) in self.sparse.items():
            if lengths.shape != (n,) or int(lengths.sum()) != values.shape[0]:
                raise ShapeMismatchError(
                    f"RowBlock.sparse[{name!r}]: lengths shape {lengths.shape} / sum "
                    f"{int(lengths.sum())} do not fit {n} rows and {values.shape[0]} values"
                )
        if self.timestamps is not None and self.timestamps.shape != (n,):
            raise ShapeMismatchError(f"RowBlock.timestamps must be ({n},), got {self.timestamps.shape}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def offsets(self, name: str) -> np.ndarray:
        """``(n + 1,)`` start offsets of feature ``name``'s rows, computed once."""
        if name not in self._offsets:
            self._offsets[name] = np.concatenate(([0], np.cumsum(self.sparse[name][0])))
        return self._offsets[name]

    def single_hot(self, name: str) -> bool:
        """Whether every row of feature ``name`` holds exactly one id (checked once, then cached)."""
        if name not in self._single_hot:
            lengths = self.sparse[name][0]
            self._single_hot[name] = bool(lengths.size == 0 or (lengths.min() == 1 and lengths.max() == 1))
        return self._single_hot[name]

    def take(self, index: np.ndarray) -> "RowBlock":
        """The rows ``index`` (any order, repeats allowed) as a new block."""
        return RowBlock(
            labels=self.labels[index],
            dense=self.dense[index],
            sparse={
                name: take_jagged(lengths, values, index, self.offsets(name))
                for name, (lengths, values) in self.sparse.items()
            },
            timestamps=None if self.timestamps is None else self.timestamps[index],
        )

    def slice(self, start: int, stop: int) -> "RowBlock":
        """Rows ``start:stop`` as a new block (cheap: views where possible)."""
        sparse = {}
        for name, (lengths, values) in self.sparse.items():
            offsets = self.offsets(name)
            sparse[name] = (lengths[start:stop], values[offsets[start] : offsets[stop]])
        return RowBlock(
            labels=self.labels[start:stop],
            dense=self.dense[start:stop],
            sparse=sparse,
            timestamps=None if self.timestamps is None else self.timestamps[start:stop],
        )

    def iter_slices(self, size: int) -> Iterator["RowBlock"]:
        """Consecutive blocks of ``size`` rows (the last one may be shorter)."""
        for start in range(0, len(self), size):
            yield self.slice(start, min(start + size, len(self)))

    @staticmethod
    def concat(blocks: Sequence["RowBlock"]) -> "RowBlock":
        """Join blocks with the same features, in order."""
        if len(blocks) == 1:
            return blocks[0]
        first = blocks[0]
        has_time = first.timestamps is not None
        return RowBlock(
            labels=np.concatenate([b.labels for b in blocks]),
            dense=np.concatenate([b.dense for b in blocks]),
            sparse={
                name: (
                    np.concatenate([b.sparse[name][0] for b in blocks]),
                    np.concatenate([b.sparse[name][1] for b in blocks]),
                )
                for name in first.sparse
            },
            timestamps=np.concatenate([b.timestamps for b in blocks]) if has_time else None,
        )

    def to_batch(self) -> Batch:
        """The block as one :class:`Batch` of torch tensors (copies, so the batch owns its memory)."""
        return cut_into_batches(self, max(len(self), 1))[0]

    def to_batches(self, batch_size: int, rows: Optional[np.ndarray] = None) -> list[Batch]:
        """Rows ``rows`` (all when None) cut into consecutive batches; see :func:`cut_into_batches`."""
        return cut_into_batches(self, batch_size, rows)
