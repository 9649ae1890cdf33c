"""Table-batched CPU kernels (numba): pooled lookup forward, and backward fused with the update.

All tables of one group share a flat float32 weight array; a table is described by its
element offset, dim and row count, a feature (KeyedJaggedTensor key) by its table, its
output column and its pooling. One call handles every feature and table of the group.

Backward never builds a gradient for a table. It (1) finds each table's unique rows with
a per-table open-addressing hash map (tables in parallel), (2) buckets the batch's
occurrences by unique row, then (3) in parallel over unique rows sums the row's gradient
in a small scratch vector and applies the optimizer rule to the row and its state in place.
Each unique row is owned by exactly one thread, so there are no races.

Why numba: it compiles to native code at first use from a wheel that does not depend on
the torch release, so recembed installs wherever torch does (see README, "Kernels").
"""

from __future__ import annotations

import math

import numba
import numpy as np

from recembed.kernels.prefetch import prefetch_flat

__all__ = ["pooled_forward", "dedup_rows", "fused_update"]

POOL_SUM, POOL_MEAN, POOL_MAX = 0, 1, 2
_CHUNK = 64  # unique rows per parallel work item
_AHEAD = 4  # rows prefetched ahead of use


@numba.njit(inline="always")
def _prefetch_span(array, start, length):
    for offset in range(0, length, 16):  # one hint per 64-byte line of float32s
        prefetch_flat(array, start + offset)


@numba.njit(parallel=True, cache=True, nogil=True)
def pooled_forward(W, w_off, dim, pad, key_table, key_col, key_pool, rows, offsets, psw, batch, out, argmax):
    """Pool every (key, bag) of the group into ``out`` (B, D_out); MAX records winners in ``argmax``."""
    # Inner loops index row views with the loop counter only: numba then drops its
    # negative-index checks and vectorises them (about 4x faster than out[b, col + j]).
    num_keys = key_table.shape[0]
    has_psw = psw.shape[0] > 0
    for job in numba.prange(num_keys * batch):
        k = job // batch
        b = job - k * batch
        t = key_table[k]
        if t < 0:
            continue
        d = dim[t]
        col = key_col[k]
        base = w_off[t]
        p = pad[t]
        pool = key_pool[k]
        o = out[b, col : col + d]
        start = offsets[k * batch + b]
        end = offsets[k * batch + b + 1]
        count = 0
        if pool == POOL_MAX:
            am = argmax[b, col : col + d]
            for j in range(d):
                o[j] = -np.inf
                am[j] = -1
            for i in range(start, end):
                r = rows[i]
                if r == p:
                    continue
                count += 1
                w = W[base + r * d : base + (r + 1) * d]
                for j in range(d):
                    if w[j] > o[j]:
                        o[j] = w[j]
                        am[j] = i
            if count == 0:
                for j in range(d):
                    o[j] = 0.0
            continue
        for j in range(d):
            o[j] = 0.0
        for i in range(start, end):
            if i + _AHEAD < end:
                _prefetch_span(W, base + rows[i + _AHEAD] * d, d)
            r = rows[i]
            if r == p:
                continue
            count += 1
            w = W[base + r * d : base + (r + 1) * d]
            if has_psw:
                wt = psw[i]
                for j in range(d):
                    o[j] += wt * w[j]
            else:
                for j in range(d):
                    o[j] += w[j]
        if pool == POOL_MEAN and count > 0:
            inv = np.float32(1.0 / count)
            for j in range(d):
                o[j] *= inv


@numba.njit(parallel=True, cache=True, nogil=True)
def dedup_rows(num_tables, pad, key_table, key_pool, rows, offsets, psw, batch, max_hit):
    """Group the batch's occurrences by unique (table, row).

    Returns ``uniq_table (U,)``, ``uniq_row (U,)``, ``starts (U + 1,)``, ``order (M,)``
    (occurrence indices bucketed by unique row), and per occurrence its key, bag and
    scale (per-sample weight, divided by the bag's count under MEAN pooling).
    ``max_hit`` marks MAX-pooled occurrences that won at least one element; the others
    (and padding ids) contribute nothing and are left out.
    """
    n = rows.shape[0]
    num_keys = key_table.shape[0]
    has_psw = psw.shape[0] > 0
    occ_key = np.full(n, -1, np.int64)
    occ_bag = np.zeros(n, np.int64)
    occ_scale = np.zeros(n, np.float32)
    # Which occurrences take part, and their scales (bags in parallel).
    for job in numba.prange(num_keys * batch):
        k = job // batch
        b = job - k * batch
        t = key_table[k]
        if t < 0:
            continue
        start = offsets[k * batch + b]
        end = offsets[k * batch + b + 1]
        count = 0
        for i in range(start, end):
            if rows[i] != pad[t]:
                count += 1
        inv = 1.0 / count if (key_pool[k] == POOL_MEAN and count > 0) else 1.0
        for i in range(start, end):
            if rows[i] == pad[t]:
                continue
            if key_pool[k] == POOL_MAX and not max_hit[i]:
                continue
            occ_key[i] = k
            occ_bag[i] = b
            occ_scale[i] = (psw[i] if has_psw else 1.0) * inv
    # Per table: its occurrences, deduplicated with an open-addressing hash map.
    table_count = np.zeros(num_tables, np.int64)
    for i in range(n):
        if occ_key[i] >= 0:
            table_count[key_table[occ_key[i]]] += 1
    table_start = np.zeros(num_tables + 1, np.int64)
    for t in range(num_tables):
        table_start[t + 1] = table_start[t] + table_count[t]
    by_table = np.empty(table_start[num_tables], np.int64)
    fill = table_start[:num_tables].copy()
    for i in range(n):
        if occ_key[i] >= 0:
            t = key_table[occ_key[i]]
            by_table[fill[t]] = i
            fill[t] += 1
    local_uniq = np.empty(table_start[num_tables], np.int64)  # per occurrence slot: local unique index
    uniq_rows_local = np.empty(table_start[num_tables], np.int64)
    table_uniq = np.zeros(num_tables, np.int64)
    for t in numba.prange(num_tables):
        lo, hi = table_start[t], table_start[t + 1]
        m = hi - lo
        cap = 16
        while cap < 2 * m:
            cap *= 2
        keys = np.full(cap, -1, np.int64)
        vals = np.empty(cap, np.int64)
        mask = cap - 1
        u = 0
        for s in range(lo, hi):
            r = rows[by_table[s]]
            h = (np.uint64(r) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(20)
            slot = np.int64(h & np.uint64(mask))
            while keys[slot] != -1 and keys[slot] != r:
                slot = (slot + 1) & mask
            if keys[slot] == -1:
                keys[slot] = r
                vals[slot] = u
                uniq_rows_local[lo + u] = r
                u += 1
            local_uniq[s] = vals[slot]
        table_uniq[t] = u
    uniq_start = np.zeros(num_tables + 1, np.int64)
    for t in range(num_tables):
        uniq_start[t + 1] = uniq_start[t] + table_uniq[t]
    total_u = uniq_start[num_tables]
    uniq_table = np.empty(total_u, np.int64)
    uniq_row = np.empty(total_u, np.int64)
    counts = np.zeros(total_u + 1, np.int64)
    order = np.empty(table_start[num_tables], np.int64)
    starts = np.zeros(total_u + 1, np.int64)
    for t in numba.prange(num_tables):
        lo, hi = table_start[t], table_start[t + 1]
        g0 = uniq_start[t]
        for u in range(table_uniq[t]):
            uniq_table[g0 + u] = t
            uniq_row[g0 + u] = uniq_rows_local[lo + u]
        for s in range(lo, hi):
            counts[g0 + local_uniq[s] + 1] += 1
        # Counting sort of this table's occurrences by unique row (occupies [lo, hi) of order).
        pos = lo
        for u in range(table_uniq[t]):
            starts[g0 + u] = pos
            pos += counts[g0 + u + 1]
        cursor = starts[g0 : g0 + table_uniq[t]].copy()
        for s in range(lo, hi):
            lu = local_uniq[s]
            order[cursor[lu]] = by_table[s]
            cursor[lu] += 1
    starts[total_u] = table_start[num_tables]
    return uniq_table, uniq_row, starts, order, occ_key, occ_bag, occ_scale


@numba.njit(inline="always")
def _update_row(code, w, g, s1, s2, R, r_idx, lr, wd, eps, b1, b2, bc1, bc2):
    """One rule on one row: ``w``, ``g``, ``s1``, ``s2`` are (d,) views; ``R[r_idx]`` the row state."""
    d = w.shape[0]
    if wd != 0.0 and code != 5:
        for j in range(d):
            g[j] += wd * w[j]
    if code == 0:
        for j in range(d):
            w[j] -= lr * g[j]
    elif code == 1:
        for j in range(d):
            s1[j] += g[j] * g[j]
            w[j] -= lr * g[j] / (math.sqrt(s1[j]) + eps)
    elif code == 2:
        acc = 0.0
        for j in range(d):
            acc += g[j] * g[j]
        R[r_idx] += np.float32(acc / d)
        scale = lr / (math.sqrt(R[r_idx]) + eps)
        for j in range(d):
            w[j] -= scale * g[j]
    elif code == 3:
        step_size = lr * math.sqrt(bc2) / bc1
        for j in range(d):
            s1[j] = b1 * s1[j] + (1.0 - b1) * g[j]
            s2[j] = b2 * s2[j] + (1.0 - b2) * g[j] * g[j]
            w[j] -= step_size * s1[j] / (math.sqrt(s2[j]) + eps)
    elif code == 4:
        acc = 0.0
        for j in range(d):
            acc += g[j] * g[j]
        R[r_idx] = b2 * R[r_idx] + (1.0 - b2) * np.float32(acc / d)
        scale = lr / bc1 / (math.sqrt(R[r_idx] / bc2) + eps)
        for j in range(d):
            s1[j] = b1 * s1[j] + (1.0 - b1) * g[j]
            w[j] -= scale * s1[j]
    elif code == 5:
        w_sq = 0.0
        u_sq = 0.0
        for j in range(d):
            s1[j] = b1 * s1[j] + (1.0 - b1) * g[j]
            s2[j] = b2 * s2[j] + (1.0 - b2) * g[j] * g[j]
            u = (s1[j] / bc1) / (math.sqrt(s2[j] / bc2) + eps) + wd * w[j]
            g[j] = u  # reuse the scratch for the update direction
            w_sq += w[j] * w[j]
            u_sq += u * u
        trust = math.sqrt(w_sq) / math.sqrt(u_sq) if (w_sq > 0.0 and u_sq > 0.0) else 1.0
        for j in range(d):
            w[j] -= lr * trust * g[j]


@numba.njit(inline="always")
def _state_view(S, off, r, d):
    return S[off + r * d : off + (r + 1) * d] if off >= 0 else S[0:0]


@numba.njit(parallel=True, cache=True, nogil=True)
def fused_update(W, S1, S2, R, w_off, dim, code, s1_off, s2_off, r_off, hyper, uniq_table, uniq_row, starts,
                 order, occ_key, occ_bag, occ_scale, key_col, key_pool, grad, argmax, max_dim):
    """Sum each unique row's gradient from ``grad`` (B, D_out) and apply its table's rule."""
    total_u = uniq_table.shape[0]
    num_chunks = (total_u + _CHUNK - 1) // _CHUNK
    for c in numba.prange(num_chunks):
        scratch = np.empty(max_dim, np.float32)
        last = min(total_u, (c + 1) * _CHUNK)
        for u in range(c * _CHUNK, last):
            if u + 2 < last:  # the row (and its state) two ahead starts loading now
                ahead_t, ahead_r = uniq_table[u + 2], uniq_row[u + 2]
                ahead_d = dim[ahead_t]
                _prefetch_span(W, w_off[ahead_t] + ahead_r * ahead_d, ahead_d)
                if s1_off[ahead_t] >= 0:
                    _prefetch_span(S1, s1_off[ahead_t] + ahead_r * ahead_d, ahead_d)
                if s2_off[ahead_t] >= 0:
                    _prefetch_span(S2, s2_off[ahead_t] + ahead_r * ahead_d, ahead_d)
            t = uniq_table[u]
            r = uniq_row[u]
            d = dim[t]
            g = scratch[:d]
            for j in range(d):
                g[j] = 0.0
            for q in range(starts[u], starts[u + 1]):
                i = order[q]
                k = occ_key[i]
                b = occ_bag[i]
                col = key_col[k]
                gr = grad[b, col : col + d]
                if key_pool[k] == POOL_MAX:
                    am = argmax[b, col : col + d]
                    for j in range(d):
                        if am[j] == i:
                            g[j] += gr[j]
                else:
                    s = occ_scale[i]
                    for j in range(d):
                        g[j] += s * gr[j]
            h = hyper[t]
            w = W[w_off[t] + r * d : w_off[t] + (r + 1) * d]
            _update_row(code[t], w, g, _state_view(S1, s1_off[t], r, d), _state_view(S2, s2_off[t], r, d),
                        R, r_off[t] + r, h[0], h[1], h[2], h[3], h[4], h[5], h[6])


@numba.njit(parallel=True, cache=True, nogil=True)
def find_bad_rows(rows, offsets, key_table, num_rows, batch):
    """Per key: index of an id outside ``[0, num_rows[table])``, or -1. Keys not in the group give -1."""
    num_keys = key_table.shape[0]
    bad = np.full(num_keys, -1, np.int64)
    for k in numba.prange(num_keys):
        t = key_table[k]
        if t < 0:
            continue
        limit = num_rows[t]
        for i in range(offsets[k * batch], offsets[(k + 1) * batch]):
            if rows[i] < 0 or rows[i] >= limit:
                bad[k] = i
                break
    return bad


@numba.njit(cache=True, nogil=True)
def mark_max_winners(argmax, key_table, key_col, key_pool, dim, n):
    """``(N,)`` bool: occurrences that won at least one element of a MAX-pooled bag."""
    hit = np.zeros(n, np.bool_)
    batch = argmax.shape[0]
    for k in range(key_table.shape[0]):
        t = key_table[k]
        if t < 0 or key_pool[k] != POOL_MAX:
            continue
        col = key_col[k]
        for b in range(batch):
            for j in range(dim[t]):
                i = argmax[b, col + j]
                if i >= 0:
                    hit[i] = True
    return hit
