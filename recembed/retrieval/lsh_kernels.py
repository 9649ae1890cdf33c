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


@njit(cache=True, inline="always")
def _heap_push_probe(scores, masks, tops, size, score, mask, top):
    """Push onto a min-heap of perturbation sets keyed by score; returns the new size."""
    i = size
    scores[i] = score
    masks[i] = mask
    tops[i] = top
    while i > 0:
        parent = (i - 1) >> 1
        if scores[parent] <= scores[i]:
            break
        scores[parent], scores[i] = scores[i], scores[parent]
        masks[parent], masks[i] = masks[i], masks[parent]
        tops[parent], tops[i] = tops[i], tops[parent]
        i = parent
    return size + 1


@njit(cache=True, inline="always")
def _heap_pop_probe(scores, masks, tops, size):
    """Pop the smallest-score set: returns ``(mask, top, score, new_size)``."""
    mask, top, score = masks[0], tops[0], scores[0]
    size -= 1
    scores[0], masks[0], tops[0] = scores[size], masks[size], tops[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and scores[left + 1] < scores[left]:
            child = left + 1
        if scores[i] <= scores[child]:
            break
        scores[i], scores[child] = scores[child], scores[i]
        masks[i], masks[child] = masks[child], masks[i]
        tops[i], tops[child] = tops[child], tops[i]
        i = child
    return mask, top, score, size


@njit(cache=True)
def probe_rank_masks(sorted_costs: np.ndarray, num_probes: int, out_masks: np.ndarray, heap_scores, heap_masks, heap_tops) -> int:
    """Fill ``out_masks`` with the cheapest bit-flip sets, cheapest first; returns how many.

    Bits are ranked by flip cost (squared distance of the query's projection to that
    hyperplane), ``sorted_costs`` ascending. A set is a bitmask over ranks; its cost is the
    sum of its members' costs. Sets are produced in cost order by the shift/expand
    generation of Lv et al. (VLDB 2007): from a set whose largest rank is ``j``, *shift*
    replaces ``j`` by ``j + 1`` and *expand* adds ``j + 1``; starting from ``{0}`` this
    reaches every set exactly once and never produces a set cheaper than its parent.
    The first probe is always the empty set (the query's own bucket).
    """
    num_bits = sorted_costs.shape[0]
    out_masks[0] = 0
    produced = 1
    size = 0
    if num_bits > 0 and num_probes > 1:
        size = _heap_push_probe(heap_scores, heap_masks, heap_tops, size, sorted_costs[0], 1, 0)
    while produced < num_probes and size > 0:
        mask, top, score, size = _heap_pop_probe(heap_scores, heap_masks, heap_tops, size)
        out_masks[produced] = mask
        produced += 1
        if top + 1 < num_bits:
            nxt = top + 1
            shifted = (mask ^ (1 << top)) | (1 << nxt)
            size = _heap_push_probe(
                heap_scores, heap_masks, heap_tops, size, score - sorted_costs[top] + sorted_costs[nxt], shifted, nxt
            )
            size = _heap_push_probe(heap_scores, heap_masks, heap_tops, size, score + sorted_costs[nxt], mask | (1 << nxt), nxt)
    return produced


@njit(cache=True, inline="always")
def _sift_down(scores, rows, i, size):
    """Restore the min-heap property of ``scores[:size]`` (with ``rows`` alongside) below ``i``."""
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and scores[left + 1] < scores[left]:
            child = left + 1
        if scores[i] <= scores[child]:
            break
        scores[i], scores[child] = scores[child], scores[i]
        rows[i], rows[child] = rows[child], rows[i]
        i = child


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


@njit(cache=True, fastmath=True)
def _search_block(
    start, stop, queries, planes, vectors, entries, prefix_offsets, num_bits, prefix_bits, num_probes, k,
    exclude_offsets, exclude_rows, out_scores, out_rows, out_candidates,
):  # fmt: skip
    """:func:`lsh_search` for queries ``start..stop-1``, with this block's own scratch arrays."""
    dim = queries.shape[1]
    num_rows = vectors.shape[0]
    num_tables = entries.shape[0]
    shift = num_bits - prefix_bits
    row_mask = (1 << 32) - 1
    # A bitmap of rows already taken (N / 8 bytes: stays in cache), cleared after each
    # query through the candidate list, so a row met in several buckets is scored once.
    seen = np.zeros((num_rows + 7) >> 3, dtype=np.uint8)
    candidates = np.empty(4096, dtype=np.int64)
    candidate_scores = np.empty(4096, dtype=np.float32)
    projection = np.empty(num_tables * num_bits, dtype=np.float32)
    costs = np.empty(num_bits, dtype=np.float64)
    order = np.empty(num_bits, dtype=np.int64)
    sorted_costs = np.empty(num_bits, dtype=np.float64)
    rank_masks = np.empty(num_probes, dtype=np.int64)
    probe_codes = np.empty(num_tables * num_probes, dtype=np.int64)
    probe_tables = np.empty(num_tables * num_probes, dtype=np.int64)
    probe_lo = np.empty(num_tables * num_probes, dtype=np.int64)
    probe_hi = np.empty(num_tables * num_probes, dtype=np.int64)
    heap_scores = np.empty(2 * num_probes + 2, dtype=np.float64)
    heap_masks = np.empty(2 * num_probes + 2, dtype=np.int64)
    heap_tops = np.empty(2 * num_probes + 2, dtype=np.int64)
    best_scores = np.empty(k, dtype=np.float32)
    best_rows = np.empty(k, dtype=np.int64)
    for qi in range(start, stop):
        query = queries[qi]
        for e in range(exclude_offsets[qi], exclude_offsets[qi + 1]):
            row = exclude_rows[e]
            seen[row >> 3] |= np.uint8(1 << (row & 7))
        for h in range(num_tables * num_bits):
            acc = np.float32(0.0)
            for d in range(dim):
                acc += planes[h, d] * query[d]
            projection[h] = acc
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
            produced = probe_rank_masks(sorted_costs, num_probes, rank_masks, heap_scores, heap_masks, heap_tops)
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
        # 4. Score the candidates in one tight loop (independent rows: loads overlap).
        candidate_scores = _grow(candidate_scores, count)
        for i in range(count):
            row = candidates[i]
            acc = np.float32(0.0)
            for d in range(dim):
                acc += vectors[row, d] * query[d]
            candidate_scores[i] = acc
        # 5. Keep the k best in a min-heap, then pop it from the back: best first.
        best_scores[:] = -np.inf
        best_rows[:] = -1
        for i in range(count):
            _topk_offer(best_scores, best_rows, candidate_scores[i], candidates[i])
        for slot in range(k - 1, -1, -1):
            out_scores[qi, slot] = best_scores[0]
            out_rows[qi, slot] = best_rows[0]
            best_scores[0] = best_scores[slot]
            best_rows[0] = best_rows[slot]
            _sift_down(best_scores, best_rows, 0, slot)
        out_candidates[qi] = count
        for i in range(count):
            seen[candidates[i] >> 3] = 0
        for e in range(exclude_offsets[qi], exclude_offsets[qi + 1]):
            seen[exclude_rows[e] >> 3] = 0


@njit(cache=True, parallel=True)
def lsh_search(
    queries,
    planes,
    vectors,
    entries,
    prefix_offsets,
    num_bits,
    prefix_bits,
    num_probes,
    k,
    num_blocks,
    exclude_offsets,
    exclude_rows,
    out_scores,
    out_rows,
    out_candidates,
):
    """Multi-probe search of every table, then exact re-ranking of the distinct candidates.

    Args:
        queries: ``(Q, D)`` float32; planes: ``(L * num_bits, D)`` float32 hyperplanes.
        vectors: ``(N, D)`` float32 rows to re-rank with.
        entries, prefix_offsets: the tables (module docstring).
        num_blocks: query blocks run in parallel (each with its own scratch arrays).
        exclude_offsets, exclude_rows: CSR rows never to return per query.
        out_scores ``(Q, k)`` float32, out_rows ``(Q, k)`` int64: results, best first,
        ``-inf`` / ``-1`` padded. out_candidates ``(Q,)`` int64: distinct rows scored.
    """
    num_queries = queries.shape[0]
    for block in prange(num_blocks):
        _search_block(
            block * num_queries // num_blocks, (block + 1) * num_queries // num_blocks,
            queries, planes, vectors, entries, prefix_offsets, num_bits, prefix_bits, num_probes, k,
            exclude_offsets, exclude_rows, out_scores, out_rows, out_candidates,
        )  # fmt: skip
