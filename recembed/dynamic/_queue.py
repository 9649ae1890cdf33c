"""numba LRU queue: rows in the order they were last touched, for O(1) LRU and TTL victims.

Every *first touch of a row in a step* (and every admission) takes the next global
*stamp* and appends ``[row, stamp]`` to the queue, so the queue is sorted by stamp, hence
by last step. A row touched again later has a newer entry; its older ones are stale
(their stamp is not the row's current one) and are skipped when they reach the head.
The head's first current entry is therefore the least recently used row (ties within a
step go to the row touched first). When the array fills up, stale entries are dropped
in place (one entry per live row remains).

``q (Q, 2)`` int64 holds the entries; ``head`` and ``tail`` live in the caller's scalars.
"""

from __future__ import annotations

import numba

from recembed.dynamic._heap import LAST, STAMP

__all__ = ["queue_is_current", "queue_push"]


@numba.njit(inline="always")
def queue_is_current(q, i, meta):
    row = q[i, 0]
    return meta[row, LAST] >= 0 and meta[row, STAMP] == q[i, 1]


@numba.njit
def _compact(q, head, tail, meta):
    kept = 0
    for i in range(head, tail):
        if queue_is_current(q, i, meta):
            q[kept, 0] = q[i, 0]
            q[kept, 1] = q[i, 1]
            kept += 1
    return kept


@numba.njit(inline="always")
def queue_push(q, head, tail, meta, row, stamp):
    """Append ``[row, stamp]``; returns the new ``(head, tail)``."""
    if tail >= q.shape[0]:
        tail = _compact(q, head, tail, meta)
        head = 0
    q[tail, 0] = row
    q[tail, 1] = stamp
    return head, tail + 1
