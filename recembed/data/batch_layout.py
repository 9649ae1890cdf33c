"""Laying out many mini-batches at once: rows of a :class:`RowBlock` -> ready :class:`Batch` es.

A training step wants each batch's ids key-major (all ids of feature 1 for the B rows,
then feature 2, ...), as a :class:`~recembed.sparse.KeyedJaggedTensor`. Building that one
batch at a time costs a few dozen small numpy calls per batch (one concatenation per
feature), which the loader thread pays while holding the GIL and which, on a small
machine, competes with the training step. Here a whole chunk of rows (tens of batches) is
laid out with a few large vectorised operations per feature, and each batch is then a
set of views into the chunk's buffers; per batch only the tensor views and the
KeyedJaggedTensor wrapper are made.

Layout of a chunk of ``n`` rows, ``F`` features, batch size ``B``: entry ``(b, f, i)``
(row ``i`` of batch ``b``, feature ``f``) of the flat lengths array sits at
``b * F * B + f * B + i`` for the full batches, and at ``F * full + f * rest + i`` in the
short last batch of ``rest`` rows. Values follow the same order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numba
import numpy as np
import torch

from recembed.data.batch import Batch
from recembed.sparse import KeyedJaggedTensor

if TYPE_CHECKING:  # annotations only: row_block imports this module
    from recembed.data.row_block import RowBlock

__all__ = ["cut_into_batches"]


def cut_into_batches(block: "RowBlock", batch_size: int, rows: Optional[np.ndarray] = None) -> list[Batch]:
    """Rows ``rows`` of ``block`` (all rows when None), as consecutive batches of ``batch_size``.

    The last batch holds the remainder when ``len(rows)`` is not a multiple of
    ``batch_size``; no rows give one empty batch. The batches share buffers made by this
    call (each batch's tensors are views into them), never the block's own arrays, so
    changing a batch in place cannot change the data set.

    Args:
        block: the encoded examples.
        batch_size: rows per batch (>= 1).
        rows: ``(n,)`` int64 row indices, any order, repeats allowed.

    Returns:
        ``max(1, ceil(n / batch_size))`` batches; batch ``b`` holds
        ``rows[b * batch_size : (b + 1) * batch_size]``. Each KeyedJaggedTensor has its
        offsets and per-key sizes computed already.

    Example:
        >>> from recembed.data.row_block import RowBlock
        >>> block = RowBlock(np.zeros(3, np.float32), np.zeros((3, 0), np.float32),
        ...                  {"a": (np.array([1, 2, 0]), np.array([7, 8, 9]))})
        >>> [b.sparse["a"].values().tolist() for b in cut_into_batches(block, 2, np.array([1, 0, 2]))]
        [[8, 9, 7], []]
    """
    index = np.arange(len(block), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    n = int(index.size)
    names = list(block.sparse)

    labels = torch.from_numpy(np.ascontiguousarray(block.labels[index], dtype=np.float32))
    dense = torch.from_numpy(np.ascontiguousarray(block.dense[index], dtype=np.float32))
    stamps = None if block.timestamps is None else torch.from_numpy(
        np.ascontiguousarray(block.timestamps[index], dtype=np.int64))

    if all(block.single_hot(name) for name in names):
        # One id per row everywhere (the common case): one gather per feature, no lengths to move.
        values = _batch_major([block.sparse[name][1][index] for name in names], batch_size)
        offsets = torch.arange(values.size + 1, dtype=torch.int64)
    else:
        single = [block.single_hot(name) for name in names]
        row_lengths = [np.ones(n, np.int64) if one else block.sparse[name][0][index] for name, one in zip(names, single)]
        # Where each row's ids begin in its feature's values (a single-hot feature's offsets are 0..n).
        row_starts = [index if one else block.offsets(name)[index] for name, one in zip(names, single)]
        lengths = _batch_major(row_lengths, batch_size)
        values = _jagged_values([block.sparse[name][1] for name in names], row_lengths, row_starts, lengths,
                                batch_size)
        offsets = torch.from_numpy(np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(lengths))))
    values_t = torch.from_numpy(values)

    bounds = list(range(0, n, batch_size)) + [n] if n else [0, 0]
    width = len(names)
    starts_of_batches = offsets[torch.tensor(bounds, dtype=torch.int64) * width].tolist()  # one host read
    batches = []
    for b, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        first, last = width * start, width * stop  # this batch's entries in `lengths`
        base = starts_of_batches[b]
        # Offsets only: the lengths, if a consumer asks, are derived from them lazily.
        sparse = KeyedJaggedTensor(names, values_t[base: starts_of_batches[b + 1]],
                                   offsets=offsets[first: last + 1] - base, stride=stop - start)
        sparse.offset_per_key()  # computed here, in the loader thread, not in the training step
        batches.append(Batch(sparse=sparse, dense=dense[start:stop], labels=labels[start:stop],
                             timestamps=None if stamps is None else stamps[start:stop]))
    return batches


def _batch_major(columns: list[np.ndarray], batch_size: int) -> np.ndarray:
    """Per-feature ``(n,)`` int64 columns in row order -> one flat array in the chunk layout.

    Full batches are written through a ``(num_full, F, batch_size)`` view, the short last
    batch through an ``(F, rest)`` view, so each feature costs one strided copy.
    """
    num_features = len(columns)
    n = int(columns[0].size) if columns else 0
    out = np.empty(num_features * n, dtype=np.int64)
    full_rows = n // batch_size * batch_size
    full = out[: num_features * full_rows].reshape(full_rows // batch_size, num_features, batch_size)
    tail = out[num_features * full_rows:].reshape(num_features, n - full_rows)
    for f, column in enumerate(columns):
        full[:, f, :] = column[:full_rows].reshape(-1, batch_size)
        tail[f] = column[full_rows:]
    return out


def _jagged_values(
    values: list[np.ndarray], row_lengths: list[np.ndarray], row_starts: list[np.ndarray],
    lengths: np.ndarray, batch_size: int,
) -> np.ndarray:
    """Values of features with any number of ids per row, in the chunk layout of ``lengths``.

    For each feature, each row's ids go from ``row_starts[f][j]`` in the feature's values
    to where the row's entry begins in the output: one pass per
    feature, by a small compiled loop.
    """
    out = np.empty(int(lengths.sum()), dtype=np.int64)
    entry_starts = np.cumsum(lengths) - lengths  # output start of every (batch, feature, row) entry
    n = int(row_lengths[0].size)
    full_rows = n // batch_size * batch_size
    j = np.arange(n, dtype=np.int64)
    batch, within = np.divmod(j, batch_size)
    num_features = len(values)
    # The entry of row j for feature 0, and the distance to the same row's entry of feature f + 1.
    first = np.where(j < full_rows, batch * num_features * batch_size + within,
                     num_features * full_rows + j - full_rows)
    step = np.where(j < full_rows, batch_size, n - full_rows)
    for f, (ids, counts, starts) in enumerate(zip(values, row_lengths, row_starts)):
        _copy_rows(ids, starts, counts, entry_starts, first, step, f, out)
    return out


@numba.njit(cache=True, nogil=True)
def _copy_rows(ids: np.ndarray, starts: np.ndarray, counts: np.ndarray, entry_starts: np.ndarray,
               first: np.ndarray, step: np.ndarray, feature: int, out: np.ndarray) -> None:  # pragma: no cover
    # A plain compiled loop: numpy would need temporaries with one index per id.
    for j in range(starts.size):
        source, target = starts[j], entry_starts[first[j] + feature * step[j]]
        for k in range(counts[j]):
            out[target + k] = ids[source + k]
