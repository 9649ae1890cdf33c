"""Map several tables' ids at once: one thread per map, since the compiled passes release the GIL.

A batch's dynamic tables are independent (each owns its map), and one map's pass is a chain
of cache misses that one core cannot overlap much further, so the tables of a batch are
mapped side by side on ``threads`` threads. Results equal calling ``assign`` on each map in
turn.

:func:`map_ids_many` does the same for dynamic tables (``DynamicEmbeddingTable.map_ids`` of
several tables at once, recycled rows refreshed on the threads too). A collection can call it
for all its dynamic features before one fused lookup; the collections do not do that yet.

Example:
    >>> maps = [IdRowMap(1000), IdRowMap(1000)]
    >>> for m in maps:
    ...     _ = m.advance()
    >>> [rows.tolist() for rows, _ in assign_many(maps, [np.array([5, 6]), np.array([7])])]
    [[0, 1], [0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import torch

from recembed.dynamic.id_map import IdRowMap
from recembed.errors import ConfigError, ShapeMismatchError

if TYPE_CHECKING:
    from recembed.dynamic.table import DynamicEmbeddingTable, Ids

__all__ = ["assign_many", "map_ids_many"]

_pools: dict[int, ThreadPoolExecutor] = {}  # made on first use, reused: starting threads every batch costs


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="recembed-map")
    return _pools[threads]


def assign_many(maps: Sequence[IdRowMap], ids: Sequence[np.ndarray], threads: int = 2
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``maps[k].assign(ids[k])`` for every k, on up to ``threads`` threads; returns their results in order.

    Args:
        maps: distinct maps, each already advanced to this step by the caller.
        ids: one ``(N_k,)`` int64 array per map.
        threads: threads to use (1 maps in turn on the calling thread).
    Returns:
        ``[(rows (N_k,), recycled rows (R_k,)), ...]`` as :meth:`IdRowMap.assign` gives them.
    """
    if len(maps) != len(ids):
        raise ShapeMismatchError(f"assign_many: {len(maps)} maps but {len(ids)} id arrays; give one array per map")
    if len({id(m) for m in maps}) != len(maps):
        raise ConfigError("assign_many: a map appears twice; its batches would race (concatenate its ids instead)")
    _check_threads(threads, "assign_many")
    return _run([m.assign for m in maps], ids, threads)


def map_ids_many(tables: Sequence[DynamicEmbeddingTable], ids: Sequence[Ids],
                 features: Sequence[str | None] | None = None, threads: int = 2) -> list[torch.Tensor]:
    """``[tables[k].map_ids(ids[k], features[k]) for k ...]``, the training passes on up to ``threads`` threads.

    Each table's clock advances as in ``map_ids``; mapping and the refresh of recycled rows
    run on the threads. Tables in eval mode, or a table given twice, are mapped in turn.

    Returns:
        One ``(N_k,)`` int64 row tensor per table (the default row is ``num_embeddings``).
    """
    if len(tables) != len(ids):
        raise ShapeMismatchError(f"map_ids_many: {len(tables)} tables but {len(ids)} id lists; give one per table")
    features = list(features) if features is not None else [None] * len(tables)
    if len(features) != len(tables):
        raise ShapeMismatchError(f"map_ids_many: {len(tables)} tables but {len(features)} feature names")
    _check_threads(threads, "map_ids_many")
    if threads == 1 or len({id(t) for t in tables}) != len(tables) or not all(t.training for t in tables):
        return [t.map_ids(x, f) for t, x, f in zip(tables, ids, features)]
    flats = []
    for table, x, feature in zip(tables, ids, features):
        flats.append(table.as_ids(x, feature).detach().cpu().numpy())  # checked first: a bad batch changes nothing
    for table, feature in zip(tables, features):
        table._advance_clock(feature)

    def map_one(table: DynamicEmbeddingTable):
        def run(flat: np.ndarray) -> np.ndarray:
            rows, recycled = table.id_map.assign(flat)
            if recycled.size:
                table._refresh_rows(recycled)
            return rows
        return run

    rows = _run([map_one(t) for t in tables], flats, threads)
    return [torch.from_numpy(r).to(t.rows_weight().device) for t, r in zip(tables, rows)]


def _check_threads(threads: object, where: str) -> None:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"{where}: threads must be an int >= 1, got {threads!r}")


def _run(jobs, inputs, threads: int) -> list:
    """``[jobs[k](inputs[k]) ...]`` on the pool; the biggest inputs start first, so none starts late."""
    if threads == 1 or len(jobs) < 2:
        return [job(x) for job, x in zip(jobs, inputs)]
    order = sorted(range(len(jobs)), key=lambda k: -len(inputs[k]))
    futures = {k: _pool(threads).submit(jobs[k], inputs[k]) for k in order}
    return [futures[k].result() for k in range(len(jobs))]
