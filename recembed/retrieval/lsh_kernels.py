"""Numba kernels of :class:`LSHIndex`: bucket lookup, multi-probe order, candidate re-ranking.

Table layout (per hash table ``t``; compact arrays, no per-bucket objects):

* ``entries[t]`` ``(N,)`` int64 -- ``code << 32 | row`` for every row, sorted, so each
  bucket is a run of consecutive entries and one array read yields both code and row;
* ``prefix_offsets[t]`` ``(2**prefix_bits + 1,)`` int32 -- where each value of the top
  ``prefix_bits`` code bits starts in ``entries[t]``; a lookup is one read there plus a
  binary search over the few entries sharing the prefix.

Search works in phases per query -- all probe codes, then all directory reads, then all
bucket scans, then all scores -- so independent memory reads sit next to each other and
the CPU can overlap their cache misses.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from recembed.kernels.prefetch import prefetch, prefetch_flat


@njit(cache=True, inline="always")
def _first_entry(entries, lo: int, hi: int, key: int) -> int:
    """First index in ``entries[lo:hi]`` (sorted) whose value is ``>= key`` (``hi`` if none)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if entries[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, parallel=True)
def pack_sign_bits(projections, num_bits, out_codes):
    """``out_codes[t, i]`` = the signs of ``projections[i, t * num_bits : (t + 1) * num_bits]`` as bits."""
    num_rows = projections.shape[0]
    num_tables = out_codes.shape[0]
    for i in prange(num_rows):
        for t in range(num_tables):
            code = 0
            for b in range(num_bits):
                if projections[i, t * num_bits + b] > 0:
                    code |= 1 << b
            out_codes[t, i] = code


@njit(cache=True, parallel=True)
def build_tables(codes, shift, out_entries, out_offsets):
    """Fill the tables from ``(L, N)`` int32 codes; ``shift = num_bits - prefix_bits``.

    A counting sort on the code prefix places every row (in row order) in its directory
    slot, then each slot's few entries are sorted by full code: ``O(N)`` per table instead
    of a general sort. Tables are built in parallel.
    """
    num_tables, num_rows = codes.shape
    num_slots = out_offsets.shape[1] - 1
    for t in prange(num_tables):
        offsets = out_offsets[t]
        entries = out_entries[t]
        offsets[:] = 0
        for r in range(num_rows):
            offsets[(codes[t, r] >> shift) + 1] += 1
        for slot in range(num_slots):
            offsets[slot + 1] += offsets[slot]
        fill = offsets[:num_slots].copy()
        for r in range(num_rows):
            slot = codes[t, r] >> shift
            entries[fill[slot]] = (np.int64(codes[t, r]) << 32) | r
            fill[slot] += 1
        if shift:
            for slot in range(num_slots):
                entries[offsets[slot] : offsets[slot + 1]].sort()


@njit(cache=True, inline="always")
def _sift_down(keys, items, i, size):
    """Restore the min-heap order of ``keys[:size]`` (``items`` move alongside) below ``i``.

    The one heap routine of this module: it serves the probe heap (float64 flip costs,
    packed perturbation sets) and the top-k heaps (float32 scores, rows).
    """
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and keys[left + 1] < keys[left]:
            child = left + 1
        if keys[i] <= keys[child]:
            break
        keys[i], keys[child] = keys[child], keys[i]
        items[i], items[child] = items[child], items[i]
        i = child


@njit(cache=True, inline="always")
def _heap_push(keys, items, size, key, item):
    """Push ``(key, item)`` onto the min-heap ``keys[:size]``; returns the new size."""
    i = size
    keys[i] = key
    items[i] = item
    while i > 0:
        parent = (i - 1) >> 1
        if keys[parent] <= keys[i]:
            break
        keys[parent], keys[i] = keys[i], keys[parent]
        items[parent], items[i] = items[i], items[parent]
        i = parent
    return size + 1


@njit(cache=True, inline="always")
def _heap_pop(keys, items, size):
    """Pop the smallest key: returns ``(key, item, new_size)``."""
    key, item = keys[0], items[0]
    size -= 1
    keys[0], items[0] = keys[size], items[size]
    _sift_down(keys, items, 0, size)
    return key, item, size


_ROW_AHEAD = 8  # candidates whose int8 row is prefetched ahead of its scoring
_TOP_SHIFT = 32  # a probe-heap item packs a rank bitmask (< 2**30) and its largest rank


@njit(cache=True)
def probe_rank_masks(sorted_costs: np.ndarray, num_probes: int, out_masks: np.ndarray, heap_keys, heap_items) -> int:
    """Fill ``out_masks`` with the cheapest bit-flip sets, cheapest first; returns how many.

    Bits are ranked by flip cost (squared distance of the query's projection to that
    hyperplane), ``sorted_costs`` ascending. A set is a bitmask over ranks; its cost is the
    sum of its members' costs. Sets are produced in cost order by the shift/expand
    generation of Lv et al. (VLDB 2007): from a set whose largest rank is ``j``, *shift*
    replaces ``j`` by ``j + 1`` and *expand* adds ``j + 1``; starting from ``{0}`` this
    reaches every set exactly once and never produces a set cheaper than its parent.
    The first probe is always the empty set (the query's own bucket).
    ``heap_keys`` (float64) and ``heap_items`` (int64) are scratch of ``2 * num_probes + 2``.
    """
    num_bits = sorted_costs.shape[0]
    out_masks[0] = 0
    produced = 1
    size = 0
    if num_bits > 0 and num_probes > 1:
        size = _heap_push(heap_keys, heap_items, size, sorted_costs[0], np.int64(1))
    while produced < num_probes and size > 0:
        score, item, size = _heap_pop(heap_keys, heap_items, size)
        top = item >> _TOP_SHIFT
        mask = item & ((np.int64(1) << _TOP_SHIFT) - 1)
        out_masks[produced] = mask
        produced += 1
        if top + 1 < num_bits:
            nxt = top + 1
            shifted = (mask ^ (np.int64(1) << top)) | (np.int64(1) << nxt)
            expanded = mask | (np.int64(1) << nxt)
            packed_top = np.int64(nxt) << _TOP_SHIFT
            size = _heap_push(heap_keys, heap_items, size, score - sorted_costs[top] + sorted_costs[nxt], shifted | packed_top)
            size = _heap_push(heap_keys, heap_items, size, score + sorted_costs[nxt], expanded | packed_top)
    return produced


@njit(cache=True, inline="always")
def _topk_offer(best_scores, best_rows, score, row):
    """Offer a candidate to a size-k min-heap of the best scores so far."""
    if score > best_scores[0]:
        best_scores[0] = score
        best_rows[0] = row
        _sift_down(best_scores, best_rows, 0, best_scores.shape[0])


@njit(cache=True)
def _grow(array, size):
    """``array`` with room for at least ``size`` entries (doubling), contents kept."""
    if size <= array.shape[0]:
        return array
    bigger = np.empty(max(size, 2 * array.shape[0]), dtype=array.dtype)
    bigger[: array.shape[0]] = array
    return bigger


@njit(cache=True, fastmath=True, inline="always")
def _dot_f32(vectors, row, query):
    acc = np.float32(0.0)
    for d in range(query.shape[0]):
        acc += vectors[row, d] * query[d]
    return acc


@njit(cache=True, fastmath=True, inline="always")
def _dot_int8(codes, code_scales, row, query):
    acc = np.float32(0.0)
    for d in range(query.shape[0]):
        acc += np.float32(codes[row, d]) * query[d]
    return acc * code_scales[row]


@njit(cache=True)
def _take_best(heap_scores, heap_rows, out_scores, out_rows):
    """Write a full size-k min-heap to ``out_*`` best first (empties the heap)."""
    k = heap_scores.shape[0]
    for slot in range(k - 1, -1, -1):
        out_scores[slot] = heap_scores[0]
        out_rows[slot] = heap_rows[0]
        heap_scores[0] = heap_scores[slot]
        heap_rows[0] = heap_rows[slot]
        _sift_down(heap_scores, heap_rows, 0, slot)


@njit(inline="always")
def score_candidates(candidates, count, query, vectors, codes, code_scales, rerank, short_scores, short_rows,
                     best_scores, best_rows):
    """Score ``candidates[:count]`` into the size-k min-heap ``best_scores`` / ``best_rows``.

    Many candidates: a first pass over the int8 copy (one cache line per row instead of
    four, ~3x faster on rows that miss the cache; rows prefetched a few candidates ahead)
    keeps a short list of ``rerank`` in ``short_*``, which alone is scored in float32. Few
    candidates (or ``rerank == 0``): all of them in float32.
    """
    best_scores[:] = -np.inf
    best_rows[:] = -1
    if rerank > 0 and count > rerank:
        short_scores[:] = -np.inf
        short_rows[:] = -1
        for i in range(count):
            if i + _ROW_AHEAD < count:  # random rows: overlap their cache misses
                prefetch(codes, candidates[i + _ROW_AHEAD], 0)
                prefetch_flat(code_scales, candidates[i + _ROW_AHEAD])
            row = candidates[i]
            _topk_offer(short_scores, short_rows, _dot_int8(codes, code_scales, row, query), row)
        for i in range(rerank):
            row = short_rows[i]
            if row >= 0:
                _topk_offer(best_scores, best_rows, _dot_f32(vectors, row, query), row)
    else:
        for i in range(count):
            row = candidates[i]
            _topk_offer(best_scores, best_rows, _dot_f32(vectors, row, query), row)


@njit(cache=True, fastmath=True)
def _search_block(
    start, stop, queries, planes, vectors, codes, code_scales, entries, prefix_offsets, num_bits, prefix_bits,
    num_probes, k, rerank, exclude_offsets, exclude_rows, out_scores, out_rows, out_candidates,
):  # fmt: skip
    """:func:`lsh_search` for queries ``start..stop-1``, with this block's own scratch arrays."""
    num_rows = vectors.shape[0]
    num_tables = entries.shape[0]
    shift = num_bits - prefix_bits
    row_mask = (1 << 32) - 1
    # A bitmap of rows already taken (N / 8 bytes: stays in cache), cleared after each
    # query through the candidate list, so a row met in several buckets is scored once.
    seen = np.zeros((num_rows + 7) >> 3, dtype=np.uint8)
    candidates = np.empty(4096, dtype=np.int64)
    projection = np.empty(num_tables * num_bits, dtype=np.float32)
    costs = np.empty(num_bits, dtype=np.float64)
    order = np.empty(num_bits, dtype=np.int64)
    sorted_costs = np.empty(num_bits, dtype=np.float64)
    rank_masks = np.empty(num_probes, dtype=np.int64)
    probe_codes = np.empty(num_tables * num_probes, dtype=np.int64)
    probe_tables = np.empty(num_tables * num_probes, dtype=np.int64)
    probe_lo = np.empty(num_tables * num_probes, dtype=np.int64)
    probe_hi = np.empty(num_tables * num_probes, dtype=np.int64)
    heap_keys = np.empty(2 * num_probes + 2, dtype=np.float64)
    heap_items = np.empty(2 * num_probes + 2, dtype=np.int64)
    best_scores = np.empty(k, dtype=np.float32)
    best_rows = np.empty(k, dtype=np.int64)
    short_scores = np.empty(max(rerank, 1), dtype=np.float32)
    short_rows = np.empty(max(rerank, 1), dtype=np.int64)
    for qi in range(start, stop):
        query = queries[qi]
        for e in range(exclude_offsets[qi], exclude_offsets[qi + 1]):
            row = exclude_rows[e]
            seen[row >> 3] |= np.uint8(1 << (row & 7))
        for h in range(num_tables * num_bits):
            projection[h] = _dot_f32(planes, h, query)
        # 1. The codes to probe in every table, cheapest bit flips first.
        num_lookups = 0
        for t in range(num_tables):
            code = 0
            for b in range(num_bits):
                value = projection[t * num_bits + b]
                if value > 0:
                    code |= 1 << b
                costs[b] = value * value
                order[b] = b
            for i in range(1, num_bits):  # insertion sort of bits by flip cost (num_bits is small)
                j = i
                while j > 0 and costs[order[j - 1]] > costs[order[j]]:
                    order[j - 1], order[j] = order[j], order[j - 1]
                    j -= 1
            for i in range(num_bits):
                sorted_costs[i] = costs[order[i]]
            produced = probe_rank_masks(sorted_costs, num_probes, rank_masks, heap_keys, heap_items)
            for p in range(produced):
                rank_mask = rank_masks[p]
                flip = 0
                rank = 0
                while rank_mask:
                    if rank_mask & 1:
                        flip |= 1 << order[rank]
                    rank_mask >>= 1
                    rank += 1
                probe_codes[num_lookups] = code ^ flip
                probe_tables[num_lookups] = t
                num_lookups += 1
        # 2. Directory reads (independent of each other).
        for i in range(num_lookups):
            prefix = probe_codes[i] >> shift
            probe_lo[i] = prefix_offsets[probe_tables[i], prefix]
            probe_hi[i] = prefix_offsets[probe_tables[i], prefix + 1]
        # 3. Bucket scans: collect the rows not seen yet.
        count = 0
        for i in range(num_lookups):
            table = entries[probe_tables[i]]
            code = probe_codes[i]
            hi = probe_hi[i]
            j = probe_lo[i]
            if shift:
                j = _first_entry(table, j, hi, code << 32)
            candidates = _grow(candidates, count + hi - j)
            while j < hi and (table[j] >> 32) == code:
                row = table[j] & row_mask
                j += 1
                bit = np.uint8(1 << (row & 7))
                if seen[row >> 3] & bit:
                    continue
                seen[row >> 3] |= bit
                candidates[count] = row
                count += 1
        # 4. Score the candidates into a size-k min-heap. Many candidates: a first pass
        # over the int8 copy (one cache line per row instead of four, ~3x faster on rows
        # that miss the cache) keeps a short list of ``rerank``, which alone is scored in
        # float32; few candidates: all of them in float32.
        score_candidates(candidates, count, query, vectors, codes, code_scales, rerank, short_scores, short_rows,
                         best_scores, best_rows)
        # 5. Pop the heap from the back: best first.
        _take_best(best_scores, best_rows, out_scores[qi], out_rows[qi])
        out_candidates[qi] = count
        for i in range(count):
            seen[candidates[i] >> 3] = 0
        for e in range(exclude_offsets[qi], exclude_offsets[qi + 1]):
            seen[exclude_rows[e] >> 3] = 0


@njit(cache=True, parallel=True)
def lsh_search(
    queries, planes, vectors, codes, code_scales, entries, prefix_offsets, num_bits, prefix_bits, num_probes,
    k, rerank, num_blocks, exclude_offsets, exclude_rows, out_scores, out_rows, out_candidates,
):  # fmt: skip
    """Multi-probe search of every table, then re-ranking of the distinct candidates.

    Args:
        queries: ``(Q, D)`` float32; planes: ``(L * num_bits, D)`` float32 hyperplanes.
        vectors: ``(N, D)`` float32 rows to re-rank with.
        codes, code_scales: ``(N, D)`` int8 and ``(N,)`` float32, ``vectors ~= codes * scale``
            (see :func:`quantize_rows`); read only when ``rerank > 0``.
        entries, prefix_offsets: the tables (module docstring).
        rerank: 0 scores every candidate in float32; else candidates are first scored on
            ``codes`` and the best ``rerank`` (>= k) re-scored in float32.
        num_blocks: query blocks run in parallel (each with its own scratch arrays).
        exclude_offsets, exclude_rows: CSR rows never to return per query.
        out_scores ``(Q, k)`` float32, out_rows ``(Q, k)`` int64: results, best first,
        ``-inf`` / ``-1`` padded. out_candidates ``(Q,)`` int64: distinct rows scored.
    """
    num_queries = queries.shape[0]
    for block in prange(num_blocks):
        _search_block(
            block * num_queries // num_blocks, (block + 1) * num_queries // num_blocks,
            queries, planes, vectors, codes, code_scales, entries, prefix_offsets, num_bits, prefix_bits,
            num_probes, k, rerank, exclude_offsets, exclude_rows, out_scores, out_rows, out_candidates,
        )  # fmt: skip
