"""numba passes over one batch of ids: find rows, admit new ids, evict and expire.

``assign_rows`` is the training pass, in three steps over the batch:

1. Look every id up; a live id's row is touched (last step = now, count += 1, and on its
   first touch in the step a new stamp). A row unseen for more than ``ttl`` steps is
   expired here: its id leaves the map and the row returns to the free list, so the id
   counts as new.
2. The batch's new ids, in order of first appearance, add their occurrences to their
   admission counter (exact or count-min); an id whose count reaches ``min_count`` takes
   a row: a free row, else an expired one, else the LRU / LFU victim. Rows touched in this
   step are never victims, so every row this batch reads stays with its id.
3. Every occurrence of a new id gets its row, or the default row when not admitted.

LRU and TTL victims come from the stamp-ordered queue (:mod:`._queue`, O(1) each), LFU
victims from the lazy heap (:mod:`._heap`, O(log n) each). Scalars live in ``scal``.
"""

from __future__ import annotations

import numba
import numpy as np

from recembed.dynamic._hashing import (
    counter_add,
    counter_delete,
    home_slot,
    map_delete,
    map_find,
    map_insert,
    sketch_add,
)
from recembed.dynamic._heap import (
    COUNT,
    GEN,
    ID,
    LAST,
    SLOT,
    STAMP,
    heap_pop,
    heap_push,
    heap_rebuild,
    row_key,
)
from recembed.kernels.prefetch import prefetch_row_for_write as prefetch_row
from recembed.dynamic._queue import queue_is_current, queue_push

__all__ = [
    "COUNT_MIN",
    "EXACT",
    "HEAP",
    "LFU",
    "LIVE",
    "LRU",
    "NFREE",
    "NONE",
    "PENDING",
    "Q_HEAD",
    "Q_TAIL",
    "STAMPS",
    "assign_rows",
    "find_rows",
    "place_ids",
    "rebuild_map",
]

#: Slots of the ``scal`` int64 array.
NFREE, Q_HEAD, Q_TAIL, HEAP, PENDING, LIVE, STAMPS = 0, 1, 2, 3, 4, 5, 6
NONE, LRU, LFU = 0, 1, 2
EXACT, COUNT_MIN = 0, 1
_AHEAD = 16  # ids between a prefetch and the use of what it loads


@numba.njit(inline="always")
def _release(slots, smask, meta, scal, row):
    """Take ``row`` from its id: the id leaves the map and the row's generation moves on."""
    map_delete(slots, smask, meta[row, SLOT], meta, SLOT)
    meta[row, LAST] = -1
    meta[row, GEN] += 1
    scal[LIVE] -= 1


@numba.njit(inline="always")
def _stamp(meta, scal, queue, use_queue, row):
    """Give ``row`` the next stamp (and queue it for LRU / TTL)."""
    scal[STAMPS] += 1
    meta[row, STAMP] = scal[STAMPS]
    if use_queue:
        scal[Q_HEAD], scal[Q_TAIL] = queue_push(queue, scal[Q_HEAD], scal[Q_TAIL], meta, row, scal[STAMPS])


@numba.njit(inline="always")
def _queue_victim(queue, scal, meta, step, ttl, expired_only):
    """The least recently used row if it may go now (expired, or just not in use); else -1."""
    head, tail = scal[Q_HEAD], scal[Q_TAIL]
    while head < tail and not queue_is_current(queue, head, meta):
        head += 1  # a stale entry: the row was touched again, or freed, since
    scal[Q_HEAD] = head
    if head == tail:
        return -1
    row = queue[head, 0]
    last = meta[row, LAST]
    if (expired_only and step - last <= ttl) or last == step:
        return -1  # nothing older is left / the least recent row is in use now, so every row is
    scal[Q_HEAD] = head + 1
    return row


@numba.njit
def _heap_victim(heap, scal, meta, step, aside, n_aside):
    """Pop the LFU heap down to a row not in use now; returns ``(row or -1, aside, n_aside)``.

    Rows in use this step met on the way are parked in ``aside`` (grown as needed).
    """
    while scal[HEAP] > 0:
        k1, k2, row, gen = heap[0, 0], heap[0, 1], heap[0, 2], heap[0, 3]
        scal[HEAP] = heap_pop(heap, scal[HEAP])
        if meta[row, GEN] != gen or meta[row, LAST] < 0:
            continue  # the row changed hands since this entry was made
        c1, c2 = row_key(meta, row)
        if c1 != k1 or c2 != k2:
            scal[HEAP] = heap_push(heap, scal[HEAP], c1, c2, row, gen)  # out of date: requeue at its key
            continue
        if meta[row, LAST] == step:
            if n_aside >= aside.shape[0]:
                grown = np.empty((2 * aside.shape[0] + 16, 4), np.int64)
                grown[:n_aside] = aside[:n_aside]
                aside = grown
            aside[n_aside, 0] = k1
            aside[n_aside, 1] = k2
            aside[n_aside, 2] = row
            aside[n_aside, 3] = gen
            n_aside += 1
            continue
        return row, aside, n_aside
    return -1, aside, n_aside


@numba.njit(cache=True, nogil=True)
def assign_rows(ids, out, step, ttl, min_count, counter_code, eviction, pad_id, has_pad,
                slots, smask, meta, free, scal, queue, heap, cslots, cmask, climit, sketch, salts):
    """Map ``ids (N,)`` to rows in ``out (N,)``, admitting and evicting; returns the recycled rows.

    A recycled row held another id before (it needs fresh values and optimizer state).
    """
    capacity = meta.shape[0]
    default_row = capacity
    use_queue = eviction == LRU or ttl > 0
    n = ids.shape[0]
    miss_pos = np.empty(n, np.int64)
    n_miss = 0
    for i in range(n):
        if i + _AHEAD < n:
            prefetch_row(slots, home_slot(ids[i + _AHEAD], smask))
            near = slots[home_slot(ids[i + _AHEAD // 2], smask), 1]  # usually that id's row, if it has one
            if near >= 0:
                prefetch_row(meta, near)
        key = ids[i]
        if has_pad and key == pad_id:
            out[i] = default_row
            continue
        s = map_find(slots, smask, key)
        if s >= 0:
            row = slots[s, 1]
            last = meta[row, LAST]
            if ttl > 0 and step - last > ttl:
                map_delete(slots, smask, s, meta, SLOT)  # expired: the row is free and the id is new again
                meta[row, LAST] = -1
                meta[row, GEN] += 1
                scal[LIVE] -= 1
                free[scal[NFREE]] = row
                scal[NFREE] += 1
            else:
                out[i] = row
                meta[row, COUNT] += 1
                if last != step:
                    meta[row, LAST] = step
                    _stamp(meta, scal, queue, use_queue, row)
                continue
        miss_pos[n_miss] = i
        n_miss += 1
    recycled = np.empty(n_miss, np.int64)
    if n_miss == 0:
        return recycled
    # The batch's distinct new ids, in order of first appearance, with their occurrences.
    tsize = 16
    while tsize < 2 * n_miss:
        tsize *= 2
    tmask = tsize - 1
    tslots = np.full((tsize, 2), -1, np.int64)
    uniq_key = np.empty(n_miss, np.int64)
    uniq_occ = np.zeros(n_miss, np.int64)
    miss_uniq = np.empty(n_miss, np.int64)
    n_uniq = 0
    for j in range(n_miss):
        key = ids[miss_pos[j]]
        s = map_find(tslots, tmask, key)
        if s >= 0:
            u = tslots[s, 1]
        else:
            u = n_uniq
            tslots[-1 - s, 0] = key
            tslots[-1 - s, 1] = u
            uniq_key[u] = key
            n_uniq += 1
        uniq_occ[u] += 1
        miss_uniq[j] = u
    uniq_row = np.empty(n_uniq, np.int64)
    aside = np.empty((0, 4), np.int64)
    n_aside = 0
    n_recycled = 0
    for u in range(n_uniq):
        if u + _AHEAD < n_uniq:  # the slot of a later new id, and the rows next in the LRU queue
            prefetch_row(slots, home_slot(uniq_key[u + _AHEAD], smask))
            if use_queue and scal[Q_HEAD] + _AHEAD < scal[Q_TAIL]:
                prefetch_row(meta, queue[scal[Q_HEAD] + _AHEAD, 0])
                near = queue[scal[Q_HEAD] + _AHEAD // 2, 0]
                prefetch_row(slots, meta[near, SLOT])
        key, occ = uniq_key[u], uniq_occ[u]
        count = occ
        if min_count > 1:
            if counter_code == EXACT:
                count, scal[PENDING] = counter_add(cslots, cmask, climit, scal[PENDING], key, occ, step)
            else:
                count = sketch_add(sketch, salts, key, occ)
        uniq_row[u] = default_row
        if count < min_count:
            continue
        # A row: a free one, else an expired one, else the LRU / LFU victim.
        row = -1
        if scal[NFREE] > 0:
            scal[NFREE] -= 1
            row = free[scal[NFREE]]
        else:
            if ttl > 0:
                row = _queue_victim(queue, scal, meta, step, ttl, True)
            if row < 0 and eviction == LRU:
                row = _queue_victim(queue, scal, meta, step, ttl, False)
            elif row < 0 and eviction == LFU:
                row, aside, n_aside = _heap_victim(heap, scal, meta, step, aside, n_aside)
            if row < 0:
                continue  # no row may be taken now; an exact count is kept for next time
            _release(slots, smask, meta, scal, row)
        if min_count > 1 and counter_code == EXACT:
            scal[PENDING] = counter_delete(cslots, cmask, scal[PENDING], key)
        if meta[row, GEN] > 0:
            recycled[n_recycled] = row
            n_recycled += 1
        meta[row, SLOT] = map_insert(slots, smask, key, row)
        meta[row, ID] = key
        meta[row, LAST] = step
        meta[row, COUNT] = count
        scal[LIVE] += 1
        _stamp(meta, scal, queue, use_queue, row)
        if eviction == LFU:
            _push_heap(heap, scal, meta, row)
        uniq_row[u] = row
    for e in range(n_aside):
        if scal[HEAP] >= heap.shape[0]:
            scal[HEAP] = heap_rebuild(heap, meta)
        scal[HEAP] = heap_push(heap, scal[HEAP], aside[e, 0], aside[e, 1], aside[e, 2], aside[e, 3])
    for j in range(n_miss):
        out[miss_pos[j]] = uniq_row[miss_uniq[j]]
    return recycled[:n_recycled]


@numba.njit
def _push_heap(heap, scal, meta, row):
    if scal[HEAP] >= heap.shape[0]:
        scal[HEAP] = heap_rebuild(heap, meta)
    k1, k2 = row_key(meta, row)
    scal[HEAP] = heap_push(heap, scal[HEAP], k1, k2, row, meta[row, GEN])


@numba.njit(cache=True, nogil=True)
def find_rows(ids, out, step, ttl, pad_id, has_pad, slots, smask, meta):
    """Read-only mapping: live ids to their rows, everything else to the default row."""
    default_row = meta.shape[0]
    n = ids.shape[0]
    for i in range(n):
        if i + _AHEAD < n:
            prefetch_row(slots, home_slot(ids[i + _AHEAD], smask))
        key = ids[i]
        out[i] = default_row
        if has_pad and key == pad_id:
            continue
        s = map_find(slots, smask, key)
        if s >= 0:
            row = slots[s, 1]
            if ttl == 0 or step - meta[row, LAST] <= ttl:
                out[i] = row


@numba.njit(cache=True, nogil=True)
def rebuild_map(slots, smask, meta):
    """Refill the id map from the rows' owners (after a state load); returns the live-row count."""
    slots[:, 1] = -1
    live = 0
    for r in range(meta.shape[0]):
        if meta[r, LAST] >= 0:
            meta[r, SLOT] = map_insert(slots, smask, meta[r, ID], r)
            live += 1
    return live


@numba.njit(cache=True, nogil=True)
def place_ids(ids, step, slots, smask, meta, free, scal, queue, use_queue):
    """Empty the table, then give ``ids[k]`` row ``k`` (seen now, count 1, stamped in order).

    Returns the free-row count; the caller rebuilds the LFU heap.
    """
    capacity = meta.shape[0]
    for r in range(capacity):
        if meta[r, LAST] >= 0:
            meta[r, LAST] = -1
            meta[r, GEN] += 1
    slots[:, 1] = -1
    scal[Q_HEAD] = 0
    scal[Q_TAIL] = 0
    m = ids.shape[0]
    for k in range(m):
        meta[k, SLOT] = map_insert(slots, smask, ids[k], k)
        meta[k, ID] = ids[k]
        meta[k, LAST] = step
        meta[k, COUNT] = 1
        _stamp(meta, scal, queue, use_queue, k)
    nfree = 0
    for r in range(capacity - 1, m - 1, -1):
        free[nfree] = r
        nfree += 1
    return nfree
