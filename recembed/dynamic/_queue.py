"""numba LRU queue: rows in the order they were last touched, for O(1) LRU and TTL victims.

Every *first touch of a row in a step* (and every admission) takes the next global
*stamp* and appends ``[row, stamp]`` to the queue, so the queue is sorted by stamp, hence
by last step. A row touched again later has a newer entry; its older ones are stale
(their stamp is not the row's current one) and are skipped when they reach the head.
The head's first current entry is therefore the least recently used row (ties within a
step go to the row touched first). When the array fills up, stale entries are dropped
in place (one entry per live row remains).

Victims are read in blocks (:func:`queue_collect`): checking whether an entry is current
reads its row's metadata, a random access, so the rows of the entries ahead are prefetched
while earlier ones are checked, and the misses overlap instead of following one another.

``q (Q, 2)`` int64 holds the entries; ``head`` and ``tail`` live in the caller's scalars.
"""

from __future__ import annotations

import numba

from recembed.dynamic._heap import LAST, STAMP
from recembed.kernels.prefetch import prefetch

__all__ = ["fetch_meta", "queue_collect", "queue_is_current", "queue_push"]

_AHEAD = 24  # queue entries whose rows are being fetched while one is checked


@numba.njit(inline="always")
def fetch_meta(meta, row):
    """Prefetch ``meta[row]`` (both cache lines when the row straddles two)."""
    prefetch(meta, row, 0)
    prefetch(meta, row, meta.shape[1] - 1)


@numba.njit(inline="always")
def queue_is_current(q, i, meta):
    row = q[i, 0]
    return meta[row, LAST] >= 0 and meta[row, STAMP] == q[i, 1]


@numba.njit
def _compact(q, head, tail, meta):
    kept = 0
    for i in range(head, tail):
        if i + _AHEAD < tail:
            fetch_meta(meta, q[i + _AHEAD, 0])
        if queue_is_current(q, i, meta):
            q[kept, 0] = q[i, 0]
            q[kept, 1] = q[i, 1]
            kept += 1
    return kept


@numba.njit(inline="always")
def queue_push(q, head, tail, meta, row, stamp):
    """Append ``[row, stamp]``; returns the new ``(head, tail)``.

    A full queue is compacted first (the head moves to 0, so positions the caller holds
    are void: the new tail is then not ``tail + 1``).
    """
    if tail >= q.shape[0]:
        tail = _compact(q, head, tail, meta)
        head = 0
    q[tail, 0] = row
    q[tail, 1] = stamp
    return head, tail + 1


@numba.njit
def queue_collect(q, head, tail, meta, step, ttl, expired_only, want, rows, where):
    """The next ``want`` (at most) victims from ``head``, oldest first; the queue is not changed.

    A victim is a current entry's row not touched in ``step`` (and with ``expired_only``,
    unseen for more than ``ttl`` steps); the scan stops at the first current entry that is
    not one, since every later entry is younger. Fills ``rows[k]`` and its queue position
    ``where[k]``; returns ``(count, position after the scan)``.
    """
    n = 0
    ahead = head
    while n < want and head < tail:
        end = min(head + _AHEAD, tail)
        while ahead < end:
            fetch_meta(meta, q[ahead, 0])
            ahead += 1
        row = q[head, 0]
        last = meta[row, LAST]
        if last < 0 or meta[row, STAMP] != q[head, 1]:
            head += 1  # a stale entry: the row was touched again, or freed, since
            continue
        if last == step or (expired_only and step - last <= ttl):
            break
        rows[n] = row
        where[n] = head
        n += 1
        head += 1
    return n, head
