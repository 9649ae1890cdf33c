"""numba building blocks of the id map: open-addressing tables and the count-min sketch.

Both hash tables use linear probing over a power-of-two number of slots, with
backward-shift deletion (no tombstones, so probe chains never rot). Ids may be any int64
value, so emptiness is marked in a second column rather than by a key value.

- The id map: ``slots (S, 2)`` int64, columns ``[id, row]``; ``row == -1`` is empty; at
  most a quarter full (:func:`map_slot_count`). An entry is 16 bytes, so a probe usually
  reads one cache line. Rows do not record their slot (a release probes by id instead),
  so a backward shift writes nothing outside ``slots``.
- Exact admission counters: ``cslots (C, 3)`` int64, columns ``[id, count, last_step]``;
  ``count == 0`` is empty (a pending id has been seen at least once); at most half full.
- Count-min sketch: ``sketch (depth, width)`` int32, ``width`` a power of two, one
  independently seeded hash per depth row, conservative update.

Slots are chosen by MurmurHash3's ``fmix64`` of the id (the finaliser
:mod:`recembed.sparse.hashing` documents), so sequential ids spread evenly.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "counter_add",
    "counter_home",
    "counter_delete",
    "counter_forget_older_half",
    "counter_load",
    "fmix64_word",
    "home_slot",
    "key_hash",
    "map_delete",
    "map_delete_key",
    "map_find",
    "map_find_hashed",
    "map_insert",
    "map_slot_count",
    "power_of_two_at_least",
    "sketch_add",
    "sketch_column",
    "slot_count_for",
]

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_INT32_MAX = 2**31 - 1


def map_slot_count(rows: int) -> int:
    """Slots of the id map for ``rows`` rows: at most a quarter full.

    Short probe chains matter more than memory here: at a quarter full a lookup or a
    backward-shift deletion seldom leaves its first cache line (16 bytes a slot, so the
    map costs 64 bytes or more per row, against the row's own 4 * dim bytes of weights).
    """
    return power_of_two_at_least(4 * rows)


def slot_count_for(entries: int) -> int:
    """Power-of-two slot count that keeps ``entries`` at most half of the slots (>= 16)."""
    return power_of_two_at_least(2 * entries)


def power_of_two_at_least(n: int) -> int:
    """The smallest power of two >= max(n, 16)."""
    p = 16
    while p < n:
        p *= 2
    return p


@numba.njit(inline="always")
def fmix64_word(x):
    """MurmurHash3's 64-bit finaliser of one uint64 (a bijection that mixes every bit)."""
    x ^= x >> _S33
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x


@numba.njit(inline="always")
def _fmix(key, salt):
    return fmix64_word(np.uint64(key) ^ salt)


@numba.njit(inline="always")
def _home(key, mask):
    return np.int64(_fmix(key, np.uint64(0)) & np.uint64(mask))


@numba.njit(inline="always")
def home_slot(key, mask):
    """The slot where the probe for ``key`` starts."""
    return _home(key, mask)


@numba.njit(inline="always")
def key_hash(key):
    """The 64-bit hash of ``key`` whose low bits are its home slot in any of the power-of-two tables."""
    return _fmix(key, np.uint64(0))


@numba.njit(inline="always")
def map_find_hashed(slots, mask, key, hashed):
    """:func:`map_find` with the key's :func:`key_hash` already computed."""
    i = np.int64(hashed & np.uint64(mask))
    while True:
        if slots[i, 1] == -1:
            return -1 - i
        if slots[i, 0] == key:
            return i
        i = (i + 1) & mask


@numba.njit(inline="always")
def map_find(slots, mask, key):
    """Slot of ``key`` (>= 0), or ``-1 - s`` where ``s`` is the empty slot it would go in."""
    return map_find_hashed(slots, mask, key, key_hash(key))


@numba.njit(inline="always")
def map_insert(slots, mask, key, row):
    """Put ``key -> row`` in the id map (``key`` must be absent); returns its slot."""
    s = map_find(slots, mask, key)
    s = -1 - s
    slots[s, 0] = key
    slots[s, 1] = row
    return s


@numba.njit(inline="always")
def _in_cyclic_range(lo, x, hi):
    # True when x lies in the cyclic interval (lo, hi].
    if lo <= hi:
        return lo < x <= hi
    return x > lo or x <= hi


@numba.njit
def _shift_delete(table, mask, i, empty):
    """Backward-shift deletion at slot ``i`` of a linear-probing table whose column 1 is ``empty`` when free."""
    j = i
    while True:
        j = (j + 1) & mask
        if table[j, 1] == empty:
            break
        home = _home(table[j, 0], mask)
        if _in_cyclic_range(i, home, j):
            continue  # the entry at j is still reachable from its home slot
        for c in range(table.shape[1]):
            table[i, c] = table[j, c]
        i = j
    table[i, 1] = empty


@numba.njit(inline="always")
def map_delete(slots, mask, slot):
    """Remove the entry at ``slot`` of the id map."""
    _shift_delete(slots, mask, slot, -1)


@numba.njit(inline="always")
def map_delete_key(slots, mask, key):
    """Remove ``key`` (which must be present) from the id map."""
    _shift_delete(slots, mask, map_find(slots, mask, key), -1)


@numba.njit(inline="always")
def counter_home(key, mask):
    """The slot where the exact counter's probe for ``key`` starts (for prefetching)."""
    return _home(key, mask)


@numba.njit(inline="always")
def _counter_find(cslots, mask, key):
    i = _home(key, mask)
    while True:
        if cslots[i, 1] == 0:
            return -1 - i
        if cslots[i, 0] == key:
            return i
        i = (i + 1) & mask


@numba.njit
def counter_forget_older_half(cslots, mask):
    """Forget the pending ids last seen at or before their median step (at least half of them).

    Returns how many remain.
    """
    n = 0
    for i in range(cslots.shape[0]):
        if cslots[i, 1] != 0:
            n += 1
    if n == 0:
        return 0
    seen = np.empty(n, np.int64)
    k = 0
    for i in range(cslots.shape[0]):
        if cslots[i, 1] != 0:
            seen[k] = cslots[i, 2]
            k += 1
    seen.sort()
    cutoff = seen[(n - 1) // 2]  # the lower median: entries up to it are at least half
    kept = np.empty((n, 3), np.int64)
    m = 0
    for i in range(cslots.shape[0]):
        if cslots[i, 1] != 0 and cslots[i, 2] > cutoff:
            kept[m, 0] = cslots[i, 0]
            kept[m, 1] = cslots[i, 1]
            kept[m, 2] = cslots[i, 2]
            m += 1
    cslots[:, 1] = 0
    for e in range(m):
        s = -1 - _counter_find(cslots, mask, kept[e, 0])
        cslots[s, 0] = kept[e, 0]
        cslots[s, 1] = kept[e, 1]
        cslots[s, 2] = kept[e, 2]
    return m


@numba.njit
def counter_add(cslots, mask, limit, size, key, occurrences, step):
    """Add ``occurrences`` to ``key``'s exact count; returns ``(count, new size)``.

    When ``limit`` pending ids are already held, the older half is forgotten first
    (:func:`counter_forget_older_half`), so at most ``limit`` are ever held.
    """
    s = _counter_find(cslots, mask, key)
    if s >= 0:
        cslots[s, 1] += occurrences
        cslots[s, 2] = step
        return cslots[s, 1], size
    if size >= limit:
        size = counter_forget_older_half(cslots, mask)
        s = _counter_find(cslots, mask, key)
    s = -1 - s
    cslots[s, 0] = key
    cslots[s, 1] = occurrences
    cslots[s, 2] = step
    return occurrences, size + 1


@numba.njit
def counter_delete(cslots, mask, size, key):
    """Forget ``key``'s pending count (it was admitted); returns the new size."""
    s = _counter_find(cslots, mask, key)
    if s < 0:
        return size
    _shift_delete(cslots, mask, s, 0)
    return size - 1


@numba.njit(cache=True)
def counter_load(cslots, mask, entries):
    """Fill an empty counter table with ``entries (K, 3)`` rows ``[id, count, last_step]``."""
    for e in range(entries.shape[0]):
        s = -1 - _counter_find(cslots, mask, entries[e, 0])
        cslots[s, 0] = entries[e, 0]
        cslots[s, 1] = entries[e, 1]
        cslots[s, 2] = entries[e, 2]


@numba.njit(inline="always")
def sketch_column(sketch, salts, d, key):
    """The column of ``key`` in depth row ``d`` of the sketch."""
    return np.int64(_fmix(key, salts[d]) & np.uint64(sketch.shape[1] - 1))


@numba.njit
def sketch_add(sketch, salts, key, occurrences):
    """Conservative count-min update by ``occurrences``; returns the new estimate of ``key``'s count."""
    est = np.int64(_INT32_MAX)
    for d in range(sketch.shape[0]):
        est = min(est, np.int64(sketch[d, sketch_column(sketch, salts, d, key)]))
    new = min(est + occurrences, _INT32_MAX)
    for d in range(sketch.shape[0]):
        col = sketch_column(sketch, salts, d, key)
        sketch[d, col] = max(sketch[d, col], new)
    return new
