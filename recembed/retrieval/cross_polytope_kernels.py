"""Numba kernels of :class:`CrossPolytopeLSHIndex`: hashing, table build, vote-counting search.

Table layout (per hash table ``t``): ``table_rows[t]`` ``(N,)`` int32 holds every row,
grouped by bucket, and ``bucket_offsets[t]`` ``(2 * P + 1,)`` int32 says where bucket
``b`` starts (``P`` = projected coordinates). Bucket ``b < P`` holds the rows whose
largest-magnitude projected coordinate is ``b`` and positive; ``b >= P``, coordinate
``b - P`` and negative. A bucket is one directory read and one sequential run of int32.

Search counts *votes*: every row met in a probed bucket gets one vote per probe that
met it (a bit for the first, a ``uint8`` counter for the rest), and only rows with
enough votes are scored (see :func:`_vote_block`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from recembed.retrieval.lsh_kernels import _take_best, score_candidates

_MAX_VOTES = 254  # uint8 counters saturate here
_EXCLUDED = 255  # an ``extra`` counter value: the row is excluded from this query


@njit(cache=True, parallel=True)
def cross_polytope_codes(projections, num_tables, out_codes, first_row):
    """``out_codes[t, first_row + i]`` = bucket of ``projections[i, t * P : (t + 1) * P]``.

    The bucket of a projected vector ``y`` (``P`` coordinates) is ``argmax |y_j|``, plus
    ``P`` when that coordinate is negative: the nearest vertex of the cross-polytope.
    """
    num_rows = projections.shape[0]
    width = projections.shape[1] // num_tables
    for i in prange(num_rows):
        for t in range(num_tables):
            out_codes[t, first_row + i] = _own_bucket(projections[i], t * width, width)[0]


@njit(cache=True, inline="always")
def _own_bucket(projection, base, width):
    """``(bucket, |y_j|)``: the vertex nearest ``projection[base : base + width]`` (ties: lowest ``j``)."""
    # two passes: the max-magnitude reduction vectorises, the search for it stops early
    largest = np.float32(0.0)
    for j in range(width):
        largest = max(largest, abs(projection[base + j]))
    best = 0
    while best < width - 1 and abs(projection[base + best]) != largest:
        best += 1
    if projection[base + best] < 0:
        best += width
    return best, largest


@njit(cache=True, parallel=True)
def group_by_bucket(codes, num_buckets, out_rows, out_offsets):
    """Counting sort of each table's rows by bucket (rows stay in row order within a bucket)."""
    num_tables, num_rows = codes.shape
    for t in prange(num_tables):
        offsets = out_offsets[t]
        offsets[:] = 0
        for r in range(num_rows):
            offsets[codes[t, r] + 1] += 1
        for b in range(num_buckets):
            offsets[b + 1] += offsets[b]
        fill = offsets[:num_buckets].copy()
        for r in range(num_rows):
            b = codes[t, r]
            out_rows[t, fill[b]] = r
            fill[b] += 1


@njit(cache=True, inline="always")
def _probe_buckets(projection, base, width, num_probes, out_buckets, out_values):
    """The ``num_probes`` buckets of one table nearest the query, nearest first.

    Bucket ``j`` (vertex ``+e_j``) scores ``y_j``, bucket ``j + P`` (``-e_j``) scores
    ``-y_j``; the highest scores are the vertices closest to the projected query, so the
    first is the query's own bucket (the multi-probe order of Andoni et al., 2015, for one
    hash per table; ties go to the lower bucket, as in the hash). Insertion into a short
    sorted list: ``num_probes`` is small.
    """
    if num_probes == 1:  # the query's own bucket: the hash itself (vectorised)
        out_buckets[0], out_values[0] = _own_bucket(projection, base, width)
        return 1
    count = 0
    for j in range(2 * width):
        value = projection[base + j] if j < width else -projection[base + j - width]
        if count == num_probes and value <= out_values[count - 1]:
            continue  # the usual case once the list is full: one compare per vertex
        slot = count if count < num_probes else num_probes - 1
        while slot > 0 and out_values[slot - 1] < value:
            out_values[slot] = out_values[slot - 1]
            out_buckets[slot] = out_buckets[slot - 1]
            slot -= 1
        out_values[slot] = value
        out_buckets[slot] = j
        if count < num_probes:
            count += 1
    return count


@njit(cache=True, inline="always")
def _count_votes(seen, table_rows, probe_table, probe_lo, probe_hi, num_lookups, hits):
    """Mark every row of the probed buckets in ``seen``; list in ``hits`` each row met again.

    A row appears in ``hits`` once per vote beyond its first, so ``hits`` holds only rows
    with at least two votes. Branch-free: whether a row was seen before decides only
    whether the next write to ``hits`` overwrites this one, since a row met twice is too
    rare for a branch on it to be predicted (the branching version took ~25% longer). Returns
    ``(hits, count)``; ``hits`` grows if the buckets could overflow it.
    """
    total = 0
    for i in range(num_lookups):
        total += probe_hi[i] - probe_lo[i]
    if total + 1 > hits.shape[0]:
        hits = np.empty(2 * total + 1, dtype=np.int32)
    count = 0
    for i in range(num_lookups):
        rows_t = table_rows[probe_table[i]]
        for j in range(probe_lo[i], probe_hi[i]):
            row = rows_t[j]
            shift = row & 7
            byte = seen[row >> 3]
            seen[row >> 3] = byte | np.uint8(1 << shift)
            hits[count] = row
            count += (byte >> shift) & 1
    return hits, count


@njit(cache=True, fastmath=True)
def _vote_block(
    start, stop, first_query, projections, queries, vectors, codes, code_scales, table_rows, bucket_offsets, num_probes,
    min_votes, max_candidates, k, rerank, exclude_offsets, exclude_rows, out_scores, out_rows, out_candidates,
):  # fmt: skip
    """:func:`vote_search` for queries ``start..stop-1`` with this block's own scratch arrays."""
    num_rows = vectors.shape[0]
    num_tables = table_rows.shape[0]
    width = projections.shape[1] // num_tables
    # First votes go to a bitmap (N / 8 bytes: stays in L2 beside the streamed buckets);
    # rows met again are listed in ``hits`` and counted in ``extra`` (N bytes, votes
    # beyond the first) -- usually a small share of the rows met.
    seen = np.zeros((num_rows + 7) >> 3, dtype=np.uint8)
    extra = np.zeros(num_rows, dtype=np.uint8)
    hits = np.empty(1 << 16, dtype=np.int32)
    distinct = np.empty(1 << 14, dtype=np.int32)
    # reached[v]: rows with at least v votes, for v >= 2
    reached = np.zeros(_MAX_VOTES + 2, dtype=np.int64)
    probe_buckets = np.empty(num_probes, dtype=np.int64)
    probe_values = np.empty(num_probes, dtype=np.float32)
    probe_lo = np.empty(num_tables * num_probes, dtype=np.int64)
    probe_hi = np.empty(num_tables * num_probes, dtype=np.int64)
    probe_table = np.empty(num_tables * num_probes, dtype=np.int64)
    candidates = np.empty(max_candidates, dtype=np.int32)
    best_scores = np.empty(k, dtype=np.float32)
    best_rows = np.empty(k, dtype=np.int64)
    short_scores = np.empty(max(rerank, 1), dtype=np.float32)
    short_rows = np.empty(max(rerank, 1), dtype=np.int64)
    for qi in range(start, stop):
        query = queries[qi]
        projection = projections[qi - first_query]
        num_lookups = 0
        for t in range(num_tables):
            found = _probe_buckets(projection, t * width, width, num_probes, probe_buckets, probe_values)
            for p in range(found):
                probe_lo[num_lookups] = bucket_offsets[t, probe_buckets[p]]
                probe_hi[num_lookups] = bucket_offsets[t, probe_buckets[p] + 1]
                probe_table[num_lookups] = t
                num_lookups += 1
        # 1. Votes from every probed bucket; excluded rows are marked so none counts.
        hits, num_hits = _count_votes(seen, table_rows, probe_table, probe_lo, probe_hi, num_lookups, hits)
        for e in range(exclude_offsets[qi], exclude_offsets[qi + 1]):
            row = exclude_rows[e]
            seen[row >> 3] &= ~np.uint8(1 << (row & 7))
            extra[row] = _EXCLUDED
        if num_hits > distinct.shape[0]:
            distinct = np.empty(num_hits, dtype=np.int32)
        num_distinct = 0
        for i in range(num_hits):
            row = hits[i]
            more = extra[row]
            if more == _EXCLUDED:
                continue
            if more == 0:
                distinct[num_distinct] = row
                num_distinct += 1
            if more < _MAX_VOTES - 1:
                extra[row] = more + 1
        reached[:] = 0
        for i in range(num_distinct):
            reached[extra[distinct[i]] + 1] += 1
        for v in range(_MAX_VOTES, 1, -1):
            reached[v] += reached[v + 1]
        # 2. The vote threshold: ``min_votes``, lowered while fewer than ``k`` rows pass
        # it (sparse tables, tiny data). If more than ``max_candidates`` pass, the most
        # voted are kept: every row above the level where the cap falls, then rows at
        # that level in the order met (a higher threshold alone can drop 16k rows to 3k).
        threshold = min(max(min_votes, 1), _MAX_VOTES)
        while threshold > 1 and reached[threshold] < k:
            threshold -= 1
        level = threshold
        while 2 <= level < _MAX_VOTES and reached[level] > max_candidates:
            level += 1
        # 3. Collect the rows at or above it.
        count = 0
        if level >= 2:
            for i in range(num_distinct):
                row = distinct[i]
                if extra[row] + 1 >= level and count < max_candidates:
                    candidates[count] = row
                    count += 1
            if level > threshold:
                for i in range(num_distinct):
                    row = distinct[i]
                    if extra[row] + 2 == level and count < max_candidates:
                        candidates[count] = row
                        count += 1
        else:  # every row met counts: walk the buckets again (rare: few rows met twice)
            for i in range(num_lookups):
                rows_t = table_rows[probe_table[i]]
                for j in range(probe_lo[i], probe_hi[i]):
                    row = rows_t[j]
                    bit = np.uint8(1 << (row & 7))
                    if seen[row >> 3] & bit:
                        seen[row >> 3] &= ~bit
                        if count < max_candidates:
                            candidates[count] = row
                            count += 1
        seen[:] = 0
        for i in range(num_distinct):
            extra[distinct[i]] = 0
        for e in range(exclude_offsets[qi], exclude_offsets[qi + 1]):
            extra[exclude_rows[e]] = 0
        # 4. Score: an int8 first pass keeps the best ``rerank``, which alone are scored in float32.
        score_candidates(candidates, count, query, vectors, codes, code_scales, rerank, short_scores, short_rows,
                         best_scores, best_rows)
        _take_best(best_scores, best_rows, out_scores[qi], out_rows[qi])
        out_candidates[qi] = count


@njit(cache=True, parallel=True)
def vote_search(
    projections, first_query, queries, vectors, codes, code_scales, table_rows, bucket_offsets, num_probes,
    min_votes, max_candidates, k, rerank, num_blocks, exclude_offsets, exclude_rows, out_scores, out_rows,
    out_candidates,
):  # fmt: skip
    """Multi-probe cross-polytope lookup with vote counting, then re-ranking.

    Args:
        projections: ``(B, L * P)`` float32 projected queries ``first_query .. first_query + B - 1``.
        queries: ``(Q, D)`` float32, all queries; vectors: ``(N, D)`` float32 rows.
        codes, code_scales: int8 copy of ``vectors`` (see :func:`hash_index.quantize_rows`),
            read only when ``rerank > 0``.
        table_rows, bucket_offsets: the tables (module docstring).
        num_probes: buckets per table per query; min_votes, max_candidates: the vote
            threshold rule of :func:`_vote_block`.
        rerank: 0 scores every candidate in float32; else an int8 pass keeps ``rerank``.
        num_blocks: query blocks run in parallel, each with its own ``N``-byte counters.
        exclude_offsets, exclude_rows: CSR rows never to return, indexed by query.
        out_scores ``(Q, k)``, out_rows ``(Q, k)``, out_candidates ``(Q,)``: results,
        written for the batch's queries only, best first, ``-inf`` / ``-1`` padded.
    """
    batch = projections.shape[0]
    for block in prange(num_blocks):
        _vote_block(
            first_query + block * batch // num_blocks, first_query + (block + 1) * batch // num_blocks, first_query,
            projections, queries, vectors, codes, code_scales, table_rows, bucket_offsets, num_probes, min_votes,
            max_candidates, k, rerank, exclude_offsets, exclude_rows, out_scores, out_rows, out_candidates,
        )  # fmt: skip
