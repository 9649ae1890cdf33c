"""numba lazy min-heap that picks LFU eviction victims in O(log n) per eviction.

An entry is ``[count, stamp, row, generation]`` (int64), ordered by ``(count, stamp)``: the
least-used row, ties to the smallest *stamp* (the row touched longest ago; stamps are
unique, see :mod:`recembed.dynamic._pool`).

Touching a row does not touch the heap. A row's key only grows while one id owns it
(counts and stamps only go up), so an entry's stored key is a lower bound of the row's true key:
when the top's stored key is out of date it is popped and pushed again with the true key,
and the first top whose key is current is the true minimum. An entry whose ``generation``
differs from the row's (the row was freed or given to another id since) is dropped.
Each admission pushes one entry; when the array fills with dropped-later entries it is
rebuilt from the rows, one entry per live row.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "COUNT",
    "GEN",
    "ID",
    "LAST",
    "META_COLUMNS",
    "SAVED_META_COLUMNS",
    "STAMP",
    "heap_pop",
    "heap_push",
    "heap_rebuild",
    "heap_victim",
    "row_key",
]

#: Columns of the per-row metadata array ``meta (capacity, 5)`` int64: the owning id, the
#: last step seen (-1 = free), occurrences since admission, times the row was freed, and the
#: stamp of its latest first touch in a step. All of them are saved.
ID, LAST, COUNT, GEN, STAMP = 0, 1, 2, 3, 4
META_COLUMNS = SAVED_META_COLUMNS = 5


@numba.njit(inline="always")
def row_key(meta, row):
    """The current LFU key ``(count, stamp)`` of ``row``."""
    return meta[row, COUNT], meta[row, STAMP]


@numba.njit(inline="always")
def _less(h, a, b):
    # Stamps are unique, so (count, stamp) is a total order.
    if h[a, 0] != h[b, 0]:
        return h[a, 0] < h[b, 0]
    return h[a, 1] < h[b, 1]


@numba.njit(inline="always")
def _swap(h, a, b):
    for c in range(4):
        t = h[a, c]
        h[a, c] = h[b, c]
        h[b, c] = t


@numba.njit
def _sift_down(h, size, i):
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        child = left
        if left + 1 < size and _less(h, left + 1, left):
            child = left + 1
        if not _less(h, child, i):
            return
        _swap(h, i, child)
        i = child


@numba.njit
def heap_push(h, size, k1, k2, row, gen):
    """Add an entry; returns the new size (the caller keeps ``size < len(h)``)."""
    i = size
    h[i, 0] = k1
    h[i, 1] = k2
    h[i, 2] = row
    h[i, 3] = gen
    while i > 0:
        parent = (i - 1) // 2
        if not _less(h, i, parent):
            break
        _swap(h, i, parent)
        i = parent
    return size + 1


@numba.njit
def heap_pop(h, size):
    """Remove the top entry (read ``h[0]`` first); returns the new size."""
    size -= 1
    if size > 0:
        for c in range(4):
            h[0, c] = h[size, c]
        _sift_down(h, size, 0)
    return size


@numba.njit(cache=True)
def heap_rebuild(h, meta):
    """One current entry per live row (``meta[row, LAST] >= 0``); returns the size."""
    size = 0
    for r in range(meta.shape[0]):
        if meta[r, LAST] >= 0:
            k1, k2 = row_key(meta, r)
            h[size, 0] = k1
            h[size, 1] = k2
            h[size, 2] = r
            h[size, 3] = meta[r, GEN]
            size += 1
    for i in range(size // 2 - 1, -1, -1):
        _sift_down(h, size, i)
    return size


@numba.njit
def heap_victim(h, size, meta, step, aside, n_aside):
    """Pop the heap down to the least-used row not in use in ``step``.

    Returns ``(row or -1, size, aside, n_aside)``: rows in use now met on the way are
    parked in ``aside`` (grown as needed) for the caller to push back after the batch.
    """
    while size > 0:
        k1, k2, row, gen = h[0, 0], h[0, 1], h[0, 2], h[0, 3]
        size = heap_pop(h, size)
        if meta[row, GEN] != gen or meta[row, LAST] < 0:
            continue  # the row changed hands since this entry was made
        c1, c2 = row_key(meta, row)
        if c1 != k1 or c2 != k2:
            size = heap_push(h, size, c1, c2, row, gen)  # out of date: requeue at its key
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
        return row, size, aside, n_aside
    return -1, size, aside, n_aside
