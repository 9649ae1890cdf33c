"""Cutting a global batch into the ranks' local batches.

Each rank trains on a contiguous slice of every global batch: rank ``r`` of ``W`` gets
samples ``[r * n // W, (r + 1) * n // W)``, so the slices, in rank order, are the global
batch in its original order -- the order a single process sees, which is what makes
sharded training reproduce single-process training.

Example:
    >>> rank_slice(10, rank=1, world_size=4)
    slice(2, 5, None)
"""

from __future__ import annotations

import torch

from recembed.data.batch import Batch
from recembed.errors import ConfigError
from recembed.sparse import KeyedJaggedTensor

__all__ = ["rank_slice", "kjt_rows", "local_batch"]


def rank_slice(num_samples: int, rank: int, world_size: int) -> slice:
    """The samples of a ``num_samples`` global batch that ``rank`` trains on (contiguous, sizes differ by <= 1)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank_slice: rank {rank} is not in a world of {world_size} ranks")
    return slice(rank * num_samples // world_size, (rank + 1) * num_samples // world_size)


def kjt_rows(features: KeyedJaggedTensor, start: int, stop: int) -> KeyedJaggedTensor:
    """Samples ``[start, stop)`` of every key: a KJT with stride ``stop - start``.

    Shapes: ``features`` stride B, N ids -> stride ``stop - start``, the ids of those samples.
    """
    batch = features.stride()
    if not 0 <= start <= stop <= batch:
        raise ConfigError(f"kjt_rows: samples [{start}, {stop}) are not within the batch of {batch}")
    offsets = features.offsets()
    lengths = features.lengths()
    num_keys = len(features.keys())
    bounds = offsets[[k * batch + i for k in range(num_keys) for i in (start, stop)]].tolist()
    pieces = [slice(bounds[2 * k], bounds[2 * k + 1]) for k in range(num_keys)]
    values = features.values()
    weights = features.weights_or_none()
    empty = values[:0]
    return KeyedJaggedTensor(
        keys=list(features.keys()),
        values=torch.cat([values[p] for p in pieces]) if pieces else empty,
        lengths=torch.cat([lengths[k * batch + start:k * batch + stop] for k in range(num_keys)])
        if num_keys else lengths[:0],
        weights=None if weights is None else (torch.cat([weights[p] for p in pieces]) if pieces else weights[:0]),
        stride=stop - start,
    )


def local_batch(batch: Batch, rank: int, world_size: int) -> Batch:
    """This rank's part of a global :class:`~recembed.data.Batch`: :func:`rank_slice` of every field.

    Example:
        >>> b = Batch(sparse=KeyedJaggedTensor.from_lists({"user": [[3], [7], [1]]}),
        ...           dense=torch.zeros(3, 0), labels=torch.tensor([1.0, 0.0, 1.0]))
        >>> local_batch(b, rank=1, world_size=2).sparse["user"].values().tolist()
        [7, 1]
    """
    part = rank_slice(len(batch), rank, world_size)
    return Batch(
        sparse=kjt_rows(batch.sparse, part.start, part.stop) if batch.sparse.keys() else batch.sparse,
        dense=batch.dense[part],
        labels=batch.labels[part],
        timestamps=None if batch.timestamps is None else batch.timestamps[part],
        extra={k: v[part] for k, v in batch.extra.items()},
    )
