"""numba passes over one batch of ids: find rows, admit new ids, evict and expire.

``assign_rows`` is the training pass. Its cost is memory latency, not arithmetic: the id
map and the row metadata are tens of megabytes, so nearly every access misses the
caches. Each stage is therefore its own loop whose next addresses are known a few
iterations ahead (the ids' hashes, the rows found, the pool entries, the victims' ids)
and prefetched, so many misses overlap instead of following one another.

1. **Find and touch**, per occurrence in batch order (one pass probes the map, a second
   touches the rows found): a live id's row gets last step = now, count += 1, and on its
   first touch in the step a new stamp. A row unseen for more
   than ``ttl`` steps is expired here: its id leaves the map, the row returns to the free
   list, and the id counts as new.
2. **Distinct new ids** in order of first appearance, with their occurrences (a small
   table that stays in cache).
3. **Admit**: each new id adds its occurrences to its admission counter (exact or
   count-min); an id whose count reaches ``min_count`` takes a row: a free row, else an
   expired one, else the LRU / LFU victim. Rows touched in this step are never victims,
   so every row this batch reads stays with its id. LRU and TTL victims are read in blocks
   from the stamp-ordered victim pool (:func:`._pool.pool_collect`), LFU victims from the
   lazy heap (:mod:`._heap`).
4. **Scatter**: every occurrence of a new id gets its row, or the default row.

The result is exactly that of handling the ids one at a time in batch order (the tests
hold it to a plain-Python reference). Scalars live in ``scal``; ``target`` is the victim
pool's refill size (:func:`._pool.pool_target`).
"""

from __future__ import annotations

import numba
import numpy as np

from recembed.dynamic._hashing import (
    counter_add,
    counter_delete,
    counter_home,
    key_hash,
    map_delete_key,
    map_find,
    map_find_hashed,
    map_insert,
    sketch_add,
    sketch_column,
)
from recembed.dynamic._heap import (
    COUNT,
    GEN,
    ID,
    LAST,
    STAMP,
    heap_push,
    heap_rebuild,
    heap_victim,
    row_key,
)
from recembed.dynamic._pool import fetch_meta, pool_collect
from recembed.kernels.prefetch import prefetch, prefetch_l2

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
    "POOL_HEAD",
    "POOL_SIZE",
    "STAMPS",
    "assign_rows",
    "find_rows",
    "place_ids",
    "rebuild_map",
]

#: Slots of the ``scal`` int64 array.
NFREE, POOL_HEAD, POOL_SIZE, HEAP, PENDING, LIVE, STAMPS = 0, 1, 2, 3, 4, 5, 6
NONE, LRU, LFU = 0, 1, 2
EXACT, COUNT_MIN = 0, 1
_AHEAD = 64  # loop iterations between a prefetch and the use of what it loads
_VICTIM_BLOCK = 4096  # LRU / TTL victims read from the pool at a time


@numba.njit(inline="always")
def _slot_of(hashed, mask):
    return np.int64(hashed & np.uint64(mask))


@numba.njit(inline="always")
def _fetch_slots(slots, smask, hashed):
    """Prefetch a key's home slot and the next line (a backward-shift deletion often reads into it).

    Four 16-byte slots share a 64-byte line, so ``(home | 3) + 1`` is the first slot of the next line.
    """
    home = _slot_of(hashed, smask)
    prefetch(slots, home, 0)
    prefetch(slots, ((home | 3) + 1) & smask, 0)


@numba.njit(inline="always")
def _release(slots, smask, meta, scal, row):
    """Take ``row`` from its id: the id leaves the map and the row's generation moves on."""
    map_delete_key(slots, smask, meta[row, ID])
    meta[row, LAST] = -1
    meta[row, GEN] += 1
    scal[LIVE] -= 1


@numba.njit(inline="always")
def _stamp(meta, scal, row):
    """Give ``row`` the next stamp: it is now the most recently used row."""
    scal[STAMPS] += 1
    meta[row, STAMP] = scal[STAMPS]


@numba.njit
def _distinct(ids, inverse):
    """Distinct ids in order of first appearance: ``(keys, hashes, occurrences, count)``.

    ``inverse[i]`` is the index of ``ids[i]`` among them. The table is small enough to stay in cache.
    """
    n = ids.shape[0]
    size = 16
    while size < 2 * n:
        size *= 2
    mask = size - 1
    table_key = np.empty(size, np.int64)
    table_index = np.full(size, -1, np.int32)
    keys = np.empty(n, np.int64)
    hashes = np.empty(n, np.uint64)
    occurrences = np.zeros(n, np.int64)
    count = 0
    for i in range(n):
        key = ids[i]
        hashed = key_hash(key)
        s = _slot_of(hashed, mask)
        while True:
            u = table_index[s]
            if u < 0:
                u = count
                table_index[s] = u
                table_key[s] = key
                keys[u] = key
                hashes[u] = hashed
                count += 1
                break
            if table_key[s] == key:
                break
            s = (s + 1) & mask
        occurrences[u] += 1
        inverse[i] = u
    return keys, hashes, occurrences, count


@numba.njit
def _find_and_touch(ids, pad_id, has_pad, step, ttl, slots, smask, meta, free, scal, out, miss):
    """Stages 1-2: rows of live ids into ``out``, touched; positions of the other ids into ``miss``; returns their count.

    Two passes, so that each is a stream of independent misses: the first probes the map for
    every occurrence (its slots prefetched by hash), the second touches the rows found (their
    metadata prefetched by row). A row expired in the second pass is freed (``last = -1``), so
    the id's later occurrences in the batch see it as new, as a probe after the release would.
    Repeats of an id find its slot and row in cache, so they are not merged first.
    """
    n = ids.shape[0]
    n_miss = 0
    hashes = np.empty(n, np.uint64)
    for i in range(n):
        hashes[i] = key_hash(ids[i])
    for i in range(n):
        if i + _AHEAD < n:
            prefetch_l2(slots, _slot_of(hashes[i + _AHEAD], smask), 0)
        key = ids[i]
        if has_pad and key == pad_id:
            out[i] = -2
            continue
        s = map_find_hashed(slots, smask, key, hashes[i])
        out[i] = slots[s, 1] if s >= 0 else -1
    for i in range(n):
        if i + _AHEAD < n:
            ahead = out[i + _AHEAD]
            if ahead >= 0:
                fetch_meta(meta, ahead)
        row = out[i]
        if row == -2:
            out[i] = meta.shape[0]
            continue
        if row >= 0:
            last = meta[row, LAST]
            if last >= 0:
                if ttl > 0 and step - last > ttl:
                    _release(slots, smask, meta, scal, row)
                    free[scal[NFREE]] = row
                    scal[NFREE] += 1
                else:
                    meta[row, COUNT] += 1
                    if last != step:
                        meta[row, LAST] = step
                        _stamp(meta, scal, row)
                    continue
        miss[n_miss] = i
        n_miss += 1
    return n_miss


@numba.njit
def _admit(keys, hashes, occurrences, rows, n_new, step, ttl, min_count, counter_code, eviction,
           slots, smask, meta, free, scal, pool, target, heap, cslots, cmask, climit, sketch, salts):
    """Stage 4: count the ``n_new`` new ids and give rows to those admitted (``rows[u]``, else the default row).

    Returns the recycled rows.
    """
    default_row = meta.shape[0]
    use_pool = eviction == LRU or ttl > 0  # LRU and TTL victims come from the pool
    min_age = 1 if eviction == LRU else ttl + 1  # rows touched this step are never victims
    exact = min_count > 1 and counter_code == EXACT
    block = min(n_new, _VICTIM_BLOCK if min_count == 1 else 256)
    victims = np.empty(block, np.int64)
    where = np.empty(block, np.int64)
    n_victims = used = 0
    pool_dry = not use_pool
    aside = np.empty((0, 4), np.int64)
    n_aside = n_recycled = 0
    recycled = np.empty(n_new, np.int64)
    for k in range(n_new):
        if k + _AHEAD < n_new:
            prefetch(slots, _slot_of(hashes[k + _AHEAD], smask), 0)
            if exact:
                prefetch(cslots, counter_home(keys[k + _AHEAD], cmask), 0)
            elif min_count > 1:
                for d in range(sketch.shape[0]):
                    prefetch(sketch, d, sketch_column(sketch, salts, d, keys[k + _AHEAD]))
        if used + _AHEAD < n_victims:  # the slots a victim's id will be deleted from
            _fetch_slots(slots, smask, key_hash(meta[victims[used + _AHEAD], ID]))
        key = keys[k]
        count = occurrences[k]
        if exact:
            count, scal[PENDING] = counter_add(cslots, cmask, climit, scal[PENDING], key, count, step)
        elif min_count > 1:
            count = sketch_add(sketch, salts, key, count)
        if count < min_count:
            continue
        row = -1
        if scal[NFREE] > 0:
            scal[NFREE] -= 1
            row = free[scal[NFREE]]
        else:
            if used == n_victims and not pool_dry:
                n_victims, scan_end, scal[POOL_SIZE] = pool_collect(
                    pool, scal[POOL_HEAD], scal[POOL_SIZE], meta, step, min_age, target, min(block, n_new - k),
                    victims, where)
                used = 0
                if n_victims == 0:
                    pool_dry = True  # the pool's head is in use now (or not expired): so is every later entry
                scal[POOL_HEAD] = scan_end
            if used < n_victims:
                row = victims[used]
                scal[POOL_HEAD] = where[used] + 1  # unused victims stay at and after the head
                used += 1
            elif eviction == LFU:
                row, scal[HEAP], aside, n_aside = heap_victim(heap, scal[HEAP], meta, step, aside, n_aside)
            if row < 0:
                continue  # no row may be taken now; an exact count is kept for next time
            _release(slots, smask, meta, scal, row)
        if exact:
            scal[PENDING] = counter_delete(cslots, cmask, scal[PENDING], key)
        if meta[row, GEN] > 0:
            recycled[n_recycled] = row
            n_recycled += 1
        map_insert(slots, smask, key, row)
        meta[row, ID] = key
        meta[row, LAST] = step
        meta[row, COUNT] = count
        scal[LIVE] += 1
        _stamp(meta, scal, row)
        if eviction == LFU:
            _push_heap(heap, scal, meta, row)
        rows[k] = row
    for e in range(n_aside):
        if scal[HEAP] >= heap.shape[0]:
            scal[HEAP] = heap_rebuild(heap, meta)
        scal[HEAP] = heap_push(heap, scal[HEAP], aside[e, 0], aside[e, 1], aside[e, 2], aside[e, 3])
    for u in range(n_new):
        if rows[u] < 0:
            rows[u] = default_row
    return recycled[:n_recycled]


@numba.njit(cache=True, nogil=True)
def assign_rows(ids, out, step, ttl, min_count, counter_code, eviction, pad_id, has_pad,
                slots, smask, meta, free, scal, pool, target, heap, cslots, cmask, climit, sketch, salts):
    """Map ``ids (N,)`` to rows in ``out (N,)``, admitting and evicting; returns the recycled rows.

    A recycled row held another id before (it needs fresh values and optimizer state).
    """
    miss = np.empty(ids.shape[0], np.int64)
    n_miss = _find_and_touch(ids, pad_id, has_pad, step, ttl, slots, smask, meta, free, scal, out, miss)
    missed = np.empty(n_miss, np.int64)
    for j in range(n_miss):
        missed[j] = ids[miss[j]]
    inverse = np.empty(n_miss, np.int64)
    keys, hashes, occurrences, count = _distinct(missed, inverse)
    rows = np.full(count, -1, np.int64)
    recycled = _admit(keys, hashes, occurrences, rows, count, step, ttl, min_count, counter_code, eviction,
                      slots, smask, meta, free, scal, pool, target, heap, cslots, cmask, climit, sketch, salts)
    for j in range(n_miss):
        out[miss[j]] = rows[inverse[j]]
    return recycled


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
            prefetch(slots, _slot_of(key_hash(ids[i + _AHEAD]), smask), 0)
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
            map_insert(slots, smask, meta[r, ID], r)
            live += 1
    return live


@numba.njit(cache=True, nogil=True)
def place_ids(ids, step, slots, smask, meta, free, scal):
    """Empty the table, then give ``ids[k]`` row ``k`` (seen now, count 1, stamped in order).

    Returns the free-row count; the caller rebuilds the LFU heap.
    """
    capacity = meta.shape[0]
    for r in range(capacity):
        if meta[r, LAST] >= 0:
            meta[r, LAST] = -1
            meta[r, GEN] += 1
    slots[:, 1] = -1
    scal[POOL_HEAD] = 0
    scal[POOL_SIZE] = 0  # the pool's rows were freed: it is empty
    m = ids.shape[0]
    for k in range(m):
        map_insert(slots, smask, ids[k], k)
        meta[k, ID] = ids[k]
        meta[k, LAST] = step
        meta[k, COUNT] = 1
        _stamp(meta, scal, k)
    nfree = 0
    for r in range(capacity - 1, m - 1, -1):
        free[nfree] = r
        nfree += 1
    return nfree

