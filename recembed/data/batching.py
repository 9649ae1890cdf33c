"""Cutting streams of :class:`RowBlock` s into shuffled or ordered mini-batches.

Every reader and generator goes through :func:`iter_batches`, so shuffling, batch
size and ``drop_last`` behave the same everywhere. Shuffles are seeded by
``(seed, epoch)``: the same seed gives the same batches, and each epoch a new order.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Optional

import numpy as np

from recembed.data.batch import Batch
from recembed.data.row_block import RowBlock
from recembed.errors import ConfigError

__all__ = ["iter_batches", "InMemoryBatches", "epoch_rng", "check_batch_size", "CHUNK_ROWS"]


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The random generator used to shuffle epoch ``epoch`` of a stream seeded with ``seed``."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)])


#: Rows laid out together (see :mod:`recembed.data.batch_layout`): large enough that the
#: per-chunk numpy calls are few, small enough to keep the chunk's buffers to a few MB.
CHUNK_ROWS = 32_768


def _cut(block: RowBlock, order: Optional[np.ndarray], stop: int, batch_size: int) -> Iterator[Batch]:
    """Batches of rows ``order[:stop]`` (rows ``0..stop`` without ``order``), a chunk at a time.

    The first chunk is a single batch, so that a consumer waiting for the first batch of
    an epoch (the training loop) does not wait for a whole chunk to be laid out.
    """
    chunk = max(1, CHUNK_ROWS // batch_size) * batch_size
    start = 0
    while start < stop:
        end = min(start + (batch_size if start == 0 else chunk), stop)
        rows = order[start:end] if order is not None else np.arange(start, end, dtype=np.int64)
        yield from block.to_batches(batch_size, rows)
        start = end


def iter_batches(
    blocks: Iterable[RowBlock],
    batch_size: int,
    *,
    drop_last: bool = False,
    rng: Optional[np.random.Generator] = None,
    shuffle_buffer: int = 0,
) -> Iterator[Batch]:
    """Batches of ``batch_size`` rows from a stream of blocks.

    Without ``rng`` the rows keep their order. With ``rng`` rows are gathered until at
    least ``shuffle_buffer`` are pending, permuted, and emitted as full batches; the
    leftover rows join the next buffer. So the shuffle is exact within each buffer of
    rows (and over the whole data when it arrives as one block), and bounded in memory.
    Batches are laid out :data:`CHUNK_ROWS` rows at a time, in vectorised form.

    Args:
        blocks: encoded rows, e.g. one block per chunk read from a file.
        batch_size: rows per batch.
        drop_last: drop a final batch smaller than ``batch_size`` instead of yielding it.
        rng: shuffles when given.
        shuffle_buffer: minimum rows to gather before shuffling (only with ``rng``).
    """
    check_batch_size(batch_size)
    threshold = max(shuffle_buffer, batch_size) if rng is not None else batch_size
    pending: list[RowBlock] = []
    pending_rows = 0
    for block in blocks:
        if len(block) == 0:
            continue
        pending.append(block)
        pending_rows += len(block)
        if pending_rows < threshold:
            continue
        merged = RowBlock.concat(pending)
        order = rng.permutation(len(merged)) if rng is not None else None
        full = len(merged) // batch_size * batch_size
        yield from _cut(merged, order, full, batch_size)
        rest = merged.take(order[full:]) if order is not None else merged.slice(full, len(merged))
        pending = [rest] if len(rest) else []
        pending_rows = len(rest)
    if pending_rows == 0:
        return
    merged = RowBlock.concat(pending)
    order = rng.permutation(len(merged)) if rng is not None else None
    stop = len(merged) // batch_size * batch_size if drop_last else len(merged)
    yield from _cut(merged, order, stop, batch_size)


class InMemoryBatches:
    """A re-iterable stream of batches over data held in memory (one full shuffle per epoch).

    Each ``iter()`` is one epoch; with ``shuffle=True`` epoch ``e`` uses the order given
    by ``(seed, e)``. The epoch counter advances after each ``iter()``; set it with
    :meth:`set_epoch` to replay an epoch.

    Example:
        >>> stream = interactions.to_batches(batch_size=256, shuffle=True, seed=1)  # doctest: +SKIP
        >>> for batch in stream: ...                                                # doctest: +SKIP
    """

    def __init__(
        self, block: RowBlock, batch_size: int, *, shuffle: bool = False, seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.block = block
        self.batch_size = check_batch_size(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose which epoch's order the next ``iter()`` yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.block)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        rng = epoch_rng(self.seed, self.epoch) if self.shuffle else None
        self.epoch += 1
        return iter_batches([self.block], self.batch_size, drop_last=self.drop_last, rng=rng)
