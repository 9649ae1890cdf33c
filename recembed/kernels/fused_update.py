"""Backward fused with the optimizer update (numba): each unique row's gradient is summed, then the rule applied.

Two parallel phases, no gradient tensor for any table:

1. per table, the occurrences that contribute (padding ids and MAX losers drop out) are
   listed with where their gradient sits in ``grad`` and their scale (per-sample
   weight, 1/count under MEAN), as 64-bit keys ``row << idx_bits | occurrence``, then
   radix-sorted by the row bits (``ceil(row_bits / 10)`` passes; a pass whose digit never
   varies is skipped). Rows and occurrences must fit in 63 bits together;
2. per (table, piece), where a table's sorted list is cut into ``parts`` pieces of about
   equal numbers of unique rows, each run of equal rows sums its gradients in a scratch row held in L1 and
   applies the table's rule to the row and its state in place, prefetching the rows a
   few occurrences ahead.

Why sorting rather than a hash map: a radix pass is a sequential read and a write into
1,024 buckets, far cheaper than a random probe per occurrence; the rows are then updated
in ascending address order; and the gradient reads of one table stay inside its
``batch x dim`` slice of ``grad``. Each row belongs to exactly one piece, so pieces run
in parallel without races, and cutting every table into pieces keeps the threads busy
even for a single table. Items are numbered so that a thread's block holds one piece of
every table.

The rules (see :mod:`recembed.optim.rules`) compute in float32 like torch's optimizers.
"""

from __future__ import annotations

import numba
import numpy as np

from recembed.kernels.prefetch import prefetch_flat

__all__ = ["default_parts", "fused_backward"]

POOL_SUM, POOL_MEAN, POOL_MAX = 0, 1, 2
_AHEAD = 16  # occurrences prefetched ahead of their update
_GRAD_AHEAD = 8  # occurrences whose gradient row is prefetched ahead of its read
_DIGIT = 10  # radix-sort digit width: 1024 buckets
_DIGIT_MASK = (1 << _DIGIT) - 1
_FAST = {"reassoc", "contract"}  # lets the row sums (||g||^2, LAMB's norms) vectorise


def default_parts(num_tables: int) -> int:
    """Row pieces per table: 1 when there are at least two tables per numba thread (whole
    tables then balance the threads, and measured faster: 20 vs 28 ms for Adam on 8 x 1M x 64,
    2 threads), else one per thread so even a single table keeps every thread busy."""
    threads = max(1, numba.get_num_threads())
    return 1 if num_tables >= 2 * threads else threads


@numba.njit(inline="always")
def _prefetch_span(array, start, length):
    for offset in range(0, length, 16):  # one hint per 64-byte line of float32s
        prefetch_flat(array, start + offset)


@numba.njit(inline="always")
def _max_winner(am, i):
    for j in range(am.shape[0]):
        if am[j] == i:
            return True
    return False


@numba.njit(inline="always", fastmath=_FAST, error_model="numpy")
def _apply_rule(code, w, g, s1, s2, R, r_idx, lr, wd, eps, b1, b2, bc1, bc2, step_size):
    """One rule on one row: ``w``, ``g``, ``s1``, ``s2`` are ``(d,)`` float32 views; ``R[r_idx]`` the row state."""
    d = w.shape[0]
    one = np.float32(1.0)
    if wd != 0.0 and code != 5:
        for j in range(d):
            g[j] += wd * w[j]
    if code == 0:
        for j in range(d):
            w[j] -= lr * g[j]
    elif code == 1:
        for j in range(d):
            s = s1[j] + g[j] * g[j]
            s1[j] = s
            w[j] -= lr * g[j] / (np.sqrt(s) + eps)
    elif code == 2:
        acc = np.float32(0.0)
        for j in range(d):
            acc += g[j] * g[j]
        s = R[r_idx] + acc / np.float32(d)
        R[r_idx] = s
        scale = lr / (np.sqrt(s) + eps)
        for j in range(d):
            w[j] -= scale * g[j]
    elif code == 3:
        for j in range(d):
            m = b1 * s1[j] + (one - b1) * g[j]
            v = b2 * s2[j] + (one - b2) * g[j] * g[j]
            s1[j] = m
            s2[j] = v
            w[j] -= step_size * m / (np.sqrt(v) + eps)
    elif code == 4:
        acc = np.float32(0.0)
        for j in range(d):
            acc += g[j] * g[j]
        v = b2 * R[r_idx] + (one - b2) * (acc / np.float32(d))
        R[r_idx] = v
        scale = lr / bc1 / (np.sqrt(v / bc2) + eps)
        for j in range(d):
            m = b1 * s1[j] + (one - b1) * g[j]
            s1[j] = m
            w[j] -= scale * m
    elif code == 5:
        w_sq = np.float32(0.0)
        u_sq = np.float32(0.0)
        for j in range(d):
            m = b1 * s1[j] + (one - b1) * g[j]
            v = b2 * s2[j] + (one - b2) * g[j] * g[j]
            s1[j] = m
            s2[j] = v
            u = (m / bc1) / (np.sqrt(v / bc2) + eps) + wd * w[j]
            g[j] = u  # the accumulator now holds the update direction
            w_sq += w[j] * w[j]
            u_sq += u * u
        trust = np.sqrt(w_sq) / np.sqrt(u_sq) if (w_sq > 0.0 and u_sq > 0.0) else one
        for j in range(d):
            w[j] -= lr * trust * g[j]


@numba.njit(inline="always")
def _state_view(S, off, r, d):
    return S[off + r * d : off + (r + 1) * d] if off >= 0 else S[0:0]


@numba.njit(inline="always")
def _sort_packed(keys, tmp, lo_bit, bits):
    """Sort ``keys`` by their bits ``[lo_bit, lo_bit + bits)``, stably, with 10-bit LSD radix passes.

    A pass whose digit is the same for every key is skipped. The result ends in ``keys``.
    """
    n = keys.shape[0]
    hist = np.empty(1 << _DIGIT, np.int64)
    src, dst = keys, tmp
    swapped = False
    shift = lo_bit
    while shift < lo_bit + bits:
        hist[:] = 0
        for q in range(n):
            hist[(src[q] >> shift) & _DIGIT_MASK] += 1
        total = 0
        single = False
        for x in range(1 << _DIGIT):
            c = hist[x]
            single = single or c == n
            hist[x] = total
            total += c
        if not single:
            for q in range(n):
                key = src[q]
                digit = (key >> shift) & _DIGIT_MASK
                pos = hist[digit]
                dst[pos] = key
                hist[digit] = pos + 1
            src, dst = dst, src
            swapped = not swapped
        shift += _DIGIT
    if swapped:
        keys[:] = tmp


@numba.njit(cache=True)
def _sort_packed_for_tests(keys, lo_bit, bits):
    """``keys`` sorted by :func:`_sort_packed` (a jitted entry point for tests)."""
    _sort_packed(keys, np.empty_like(keys), lo_bit, bits)
    return keys


@numba.njit(inline="always")
def _piece_start(keys, p, parts, unique, idx_bits):
    """Where piece ``p`` of ``parts`` begins in the row-sorted ``keys`` (``unique`` rows):
    at the start of run number ``unique * p // parts``.

    Cutting by unique rows -- the costly part -- rather than by occurrences keeps the pieces
    even under power-law ids, where a few hot rows hold most occurrences.
    """
    n = keys.shape[0]
    if p <= 0:
        return 0
    if p >= parts:
        return n
    target = unique * p // parts
    if target == 0:  # fewer rows than pieces: this piece is empty, starting where its left neighbour does
        return 0
    runs = 0
    for q in range(1, n):
        if (keys[q] >> idx_bits) != (keys[q - 1] >> idx_bits):
            runs += 1
            if runs == target:
                return q
    return n


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def fused_backward(W, S1, S2, R, w_off, dim, pad, code, s1_off, s2_off, r_off, hyper, row_bits, table_key_start,
                   table_keys, key_col, key_pool, rows, offsets, psw, batch, grad, argmax, parts):
    """Update every row the batch touched, once, with its summed gradient.

    Args:
        W, S1, S2, R: flat float32 weights, first and second elementwise state, per-row state.
        w_off, s1_off, s2_off, r_off: ``(T,)`` element offsets of each table in them (-1: none).
        dim, pad, code: ``(T,)`` row width, padding row (-1: none), optimizer code.
        hyper: ``(T, 7)`` float64 rows of ``recembed.optim.rules.HYPER_FIELDS``.
        row_bits: ``(T,)`` bits needed for a row id of the table (``num_rows - 1``).
        table_key_start ``(T + 1,)``, table_keys: the keys each table serves (CSR); a table's
            keys share its pooling.
        key_col, key_pool: ``(K,)`` output column and pooling code of each key.
        rows ``(N,)``, offsets ``(K * batch + 1,)``: the batch's row ids and bag bounds.
        psw: ``(N,)`` per-sample weights, or empty. grad: ``(batch, D_out)`` C-contiguous.
        argmax: MAX winners ``(batch, D_out)`` as forward recorded them (or empty).
        parts: pieces each table's rows are split into for the update (see :func:`default_parts`).
    """
    num_tables = dim.shape[0]
    has_psw = psw.shape[0] > 0
    width = grad.shape[1]
    grad_flat = grad.reshape(-1)
    argmax_flat = argmax.reshape(-1)
    # Where each table's occurrences go (an upper bound: padding and MAX losers drop out), and
    # how many low bits of a packed key (row << idx_bits | occurrence) the occurrence needs.
    start = np.zeros(num_tables + 1, np.int64)
    idx_bits = np.zeros(num_tables, np.int64)
    for t in range(num_tables):
        count = 0
        for kk in range(table_key_start[t], table_key_start[t + 1]):
            k = table_keys[kk]
            count += offsets[(k + 1) * batch] - offsets[k * batch]
        start[t + 1] = start[t] + count
        while (1 << idx_bits[t]) < count:
            idx_bits[t] += 1
    total = start[num_tables]
    packed = np.empty(total, np.int64)
    tmp = np.empty(total, np.int64)
    occ_gpos = np.empty(total, np.int64)  # where the occurrence's gradient starts in grad_flat
    occ_scale = np.empty(total, np.float32)  # its per-sample weight / MEAN count (when one applies)
    occ_id = np.empty(total, np.int64)  # its index in ``rows`` (for MAX winners)
    used = np.zeros(num_tables, np.int64)
    unique = np.zeros(num_tables, np.int64)  # distinct rows per table
    # 1. Per table: list the contributing occurrences as packed keys, then sort them by row.
    for t in numba.prange(num_tables):
        lo = start[t]
        n = 0
        d = dim[t]
        p_t = pad[t]
        shift = idx_bits[t]
        for kk in range(table_key_start[t], table_key_start[t + 1]):
            k = table_keys[kk]
            col = key_col[k]
            pool = key_pool[k]
            for b in range(batch):
                first = offsets[k * batch + b]
                last = offsets[k * batch + b + 1]
                inv = np.float32(1.0)
                if pool == POOL_MEAN:
                    count = 0
                    for i in range(first, last):
                        if rows[i] != p_t:
                            count += 1
                    if count > 0:
                        inv = np.float32(1.0 / count)
                for i in range(first, last):
                    r = rows[i]
                    if r == p_t:
                        continue
                    if pool == POOL_MAX:
                        if not _max_winner(argmax[b, col : col + d], i):
                            continue
                        occ_id[lo + n] = i
                    packed[lo + n] = (r << shift) | n
                    occ_gpos[lo + n] = b * width + col
                    if has_psw or pool == POOL_MEAN:
                        occ_scale[lo + n] = inv * psw[i] if has_psw else inv
                    n += 1
        used[t] = n
        _sort_packed(packed[lo : lo + n], tmp[lo : lo + n], shift, row_bits[t])
        runs = 1 if n > 0 else 0
        for q in range(lo + 1, lo + n):
            if (packed[q] >> shift) != (packed[q - 1] >> shift):
                runs += 1
        unique[t] = runs
    # 2. Per (table, piece): sum each row's gradient in a scratch row, then apply the rule.
    for item in numba.prange(parts * num_tables):
        p = item // num_tables
        t = item - p * num_tables
        n = used[t]
        if n == 0:
            continue
        lo = start[t]
        keys = packed[lo : lo + n]
        shift = idx_bits[t]
        low = (1 << shift) - 1
        q = _piece_start(keys, p, parts, unique[t], shift)
        stop = _piece_start(keys, p + 1, parts, unique[t], shift)
        d = dim[t]
        pool = key_pool[table_keys[table_key_start[t]]]
        scaled = has_psw or pool == POOL_MEAN
        h = hyper[t]
        lr, wd, eps = np.float32(h[0]), np.float32(h[1]), np.float32(h[2])
        b1, b2, bc1, bc2 = np.float32(h[3]), np.float32(h[4]), np.float32(h[5]), np.float32(h[6])
        step_size = np.float32(h[0] * np.sqrt(h[6]) / h[5]) if h[5] != 0.0 else np.float32(0.0)
        c, wo, o1, o2, ro = code[t], w_off[t], s1_off[t], s2_off[t], r_off[t]
        g = np.empty(d, np.float32)
        while q < stop:
            if q + _AHEAD < n:  # the row (and state) a few occurrences ahead starts loading now
                ahead = keys[q + _AHEAD] >> shift
                _prefetch_span(W, wo + ahead * d, d)
                if o1 >= 0:
                    _prefetch_span(S1, o1 + ahead * d, d)
                if o2 >= 0:
                    _prefetch_span(S2, o2 + ahead * d, d)
                if ro >= 0:
                    prefetch_flat(R, ro + ahead)
            r = keys[q] >> shift
            for j in range(d):
                g[j] = 0.0
            while q < stop and (keys[q] >> shift) == r:
                if q + _GRAD_AHEAD < n:  # gradient rows are read in row order, i.e. scattered over ``grad``
                    _prefetch_span(grad_flat, occ_gpos[lo + (keys[q + _GRAD_AHEAD] & low)], d)
                v = lo + (keys[q] & low)
                gr = grad_flat[occ_gpos[v] : occ_gpos[v] + d]
                if pool == POOL_MAX:
                    am = argmax_flat[occ_gpos[v] : occ_gpos[v] + d]
                    i = occ_id[v]
                    for j in range(d):
                        if am[j] == i:
                            g[j] += gr[j]
                elif scaled:
                    sc = occ_scale[v]
                    for j in range(d):
                        g[j] += sc * gr[j]
                else:
                    for j in range(d):
                        g[j] += gr[j]
                q += 1
            _apply_rule(c, W[wo + r * d : wo + (r + 1) * d], g, _state_view(S1, o1, r, d), _state_view(S2, o2, r, d),
                        R, ro + r, lr, wd, eps, b1, b2, bc1, bc2, step_size)
