"""Pooled lookup over quantised tables (numba): dequantise only the rows a bag touches.

The fallback and reference path of :class:`~recembed.compress.quantized_collection.QuantizedEmbeddingBagCollection`:
it serves every key the torch operators cannot (MAX pooling, padding ids, int4 with float32
scales, builds of torch without the FBGEMM operators) - see :mod:`recembed.compress.quant_torch_ops`.

All tables of a quantised collection share one flat byte array; each row is its codes then
its (scale, bias), laid out as :mod:`recembed.compress.quant_layout` says. A table is
described by its byte offset, row stride and the byte position of (scale, bias) in a row.

One call pools every (feature, bag) of a batch, in parallel over bags; each bag
accumulates ``w * (q * step + bias)`` in float32 straight into its output slice, as
``(w * step) * q`` per column plus ``sum(w * bias)`` once at the end. Within a bag, rows
are prefetched a few ids ahead. float16 values are widened arithmetically from their bit
fields (numba has no float16 type on the CPU); non-finite values never occur (quantisation
rejects them).

Pooling codes: 0 SUM, 1 MEAN (weighted sum / count of non-padding ids), 2 MAX.
"""

from __future__ import annotations

import numba
import numpy as np

from recembed.compress.quant_layout import BYTES, HALF, NIBBLES
from recembed.kernels.prefetch import prefetch_flat

__all__ = ["gather_rows", "half_exponent_scales", "pooled_quantized"]

POOL_SUM, POOL_MEAN, POOL_MAX = 0, 1, 2
_AHEAD = 4  # ids prefetched ahead of use

_HALF_SCALES: np.ndarray | None = None


def half_exponent_scales() -> np.ndarray:
    """The 32 powers of two :func:`_half` scales by: ``2**(e - 25)`` for exponent field e >= 1, ``2**-24`` for 0.

    (A 65,536-entry table of every float16 value was the first design; its 256 KB pushed
    the tables' rows out of L2 and halved lookups/s on cache-resident tables.)
    """
    global _HALF_SCALES
    if _HALF_SCALES is None:
        powers = np.exp2(np.arange(32, dtype=np.float64) - 25).astype(np.float32)
        powers[0] = np.float32(2.0**-24)
        _HALF_SCALES = powers
    return _HALF_SCALES


@numba.njit(inline="always")
def _half(bits, pow2):
    """float32 value of finite float16 bits: ``(1024 * [e > 0] + mantissa) * pow2[e]``, negated for the sign bit."""
    e = (bits >> 10) & 31
    v = np.float32((bits & 1023) + (1024 if e > 0 else 0)) * pow2[e]
    return -v if bits & 0x8000 else v


# Indices are unsigned (np.uint64): numba then skips its negative-index wraparound and the
# inner loops vectorise (signed indices ran ~4x slower).
_ONE = np.uint64(1)
_FOUR = np.uint64(4)


@numba.njit(inline="always")
def _scale_bias(meta16, meta32, half, at, divisor):
    """(step, bias) of the row whose (scale, bias) is at byte ``at``: float16 pairs through ``meta16``, else
    float32 through ``meta32``; the stored scale is ``divisor`` steps."""
    if meta16.shape[0] > 0:
        m = np.uint64(at >> 1)
        return _half(meta16[m], half) / divisor, _half(meta16[m + _ONE], half)
    m = np.uint64(at >> 2)
    return meta32[m] / divisor, meta32[m + _ONE]


@numba.njit(inline="always")
def _nibble(data, src, j):
    """The 4-bit code of column j of the int4 row at byte ``src`` (column 2k low, 2k + 1 high nibble of byte k)."""
    byte = data[src + (j >> _ONE)]
    return (byte >> _FOUR) if j & _ONE else (byte & np.uint8(15))


@numba.njit(inline="always")
def _code(fmt, data, data16, half, src, plane, j):
    """Column j of the stored row at byte ``src``: its code, or its value for float16 rows.

    ``plane`` is the byte length of one nibble plane (``PLANES`` rows: the high plane follows the low one).
    """
    if fmt == BYTES:
        return np.float32(data[src + j])
    if fmt == NIBBLES:
        return np.float32(_nibble(data, src, j))
    if fmt == HALF:
        return _half(data16[(src >> _ONE) + j], half)
    return np.float32(_nibble(data, src, j) | (_nibble(data, src + plane, j) << _FOUR))


@numba.njit(inline="always")
def _prefetch_row(data, at, stride):
    prefetch_flat(data, at)
    prefetch_flat(data, at + stride - 1)  # a row may straddle two cache lines


@numba.njit(inline="always")
def _start_bag(flat, base, d, pool):
    fill = -np.inf if pool == POOL_MAX else 0.0
    for j in range(d):
        flat[base + j] = fill


@numba.njit(inline="always")
def _finish_bag(flat, base, d, pool, count, bias_sum):
    if pool == POOL_MAX:
        if count == 0:
            for j in range(d):
                flat[base + j] = 0.0
        return
    # One pass adds the bag's summed w * bias (the same for every column) and MEAN's 1 / count.
    inv = np.float32(1.0) / count if pool == POOL_MEAN and count > 0 else np.float32(1.0)
    for j in range(d):
        flat[base + j] = (flat[base + j] + bias_sum) * inv


@numba.njit(parallel=True, cache=True, nogil=True)
def pooled_quantized(fmt, divisor, data, data16, meta32, half, table_off, row_stride, meta_at, dims, pad, key_table,
                     key_col, key_pool, rows, offsets, psw, batch, out):
    """Pool every (key, bag) of a batch into ``out`` ``(batch, width)`` float32.

    ``fmt`` is the rows' :mod:`~recembed.compress.quant_layout` format and ``divisor`` the
    stored scale's steps (:func:`~recembed.compress.quant_rows.step_divisor`). ``data`` is the
    flat uint8 row store; ``data16`` its uint16 view (float16 values or scales; empty with
    float32 scales) and ``meta32`` its float32 view (float32 scales; else empty); ``psw`` is
    empty without per-sample weights. ``key_table[k] < 0`` skips key k (served elsewhere);
    ``offsets`` are the KJT's global offsets.
    """
    width = out.shape[1]
    flat = out.reshape(-1)
    weighted = psw.shape[0] > 0
    scaled = fmt != HALF
    for job in numba.prange(key_table.shape[0] * batch):
        k = job // batch
        b = job - k * batch
        t = key_table[k]
        if t < 0:
            continue
        d, pool, p, stride = np.uint64(dims[t]), key_pool[k], pad[t], row_stride[t]
        plane = (d + _ONE) >> _ONE
        base = np.uint64(b * width + key_col[k])
        _start_bag(flat, base, d, pool)
        bias_sum = np.float32(0.0)
        count = 0
        end = offsets[job + 1]
        for i in range(offsets[job], end):
            if i + _AHEAD < end:
                _prefetch_row(data, table_off[t] + rows[i + _AHEAD] * stride, stride)
            r = rows[i]
            if r == p:
                continue
            count += 1
            at = table_off[t] + r * stride
            src = np.uint64(at)
            step, bias = np.float32(1.0), np.float32(0.0)
            if scaled:
                step, bias = _scale_bias(data16, meta32, half, at + meta_at[t], divisor)
            if pool == POOL_MAX:
                for j in range(d):
                    value = _code(fmt, data, data16, half, src, plane, j) * step + bias
                    flat[base + j] = max(flat[base + j], value)
            else:
                wt = psw[i] if weighted else np.float32(1.0)
                a = wt * step
                bias_sum += wt * bias
                for j in range(d):
                    flat[base + j] += a * _code(fmt, data, data16, half, src, plane, j)
        _finish_bag(flat, base, d, pool, count, bias_sum)


@numba.njit(cache=True, nogil=True)
def gather_rows(rows, offsets, psw, keys, row_base, row_limit, key_mean, batch):
    """The ids of ``keys`` (in that order) as rows of one stacked table: ``rows + row_base[k]``.

    Returns ``(ids (N,), bag_offsets (len(keys) * batch + 1,) from 0, weights (N,) or empty,
    bad)`` for one torch-operator call over every key (see
    :mod:`recembed.compress.quant_torch_ops`). The same pass range-checks each id against
    ``[0, row_limit[k])``; ``bad`` is the first key holding an id outside it (-1: none), and
    the other outputs are then not to be used. The weights fold MEAN in - ``psw / bag
    length`` (1 without ``psw``) for keys with ``key_mean[k]`` - so the SUM-only operator
    pools MEAN with no pass over its output; they are empty when no key needs them.
    """
    total, scaled = 0, psw.shape[0] > 0
    for k in keys:
        total += offsets[(k + 1) * batch] - offsets[k * batch]
        scaled = scaled or key_mean[k]
    ids = np.empty(total, np.int64)
    weights = np.empty(total if scaled else 0, np.float32)
    bag_offsets = np.empty(keys.shape[0] * batch + 1, np.int64)
    bag_offsets[0] = 0
    at = 0
    for n in range(keys.shape[0]):
        k = keys[n]
        base, limit, start = row_base[k], row_limit[k], offsets[k * batch]
        for b in range(batch):
            lo, hi = offsets[k * batch + b], offsets[k * batch + b + 1]
            share = np.float32(1.0) / (hi - lo) if key_mean[k] and hi > lo else np.float32(1.0)
            for i in range(lo, hi):
                r = rows[i]
                if r < 0 or r >= limit:
                    return ids, bag_offsets, weights, k
                ids[at + i - start] = r + base
                if scaled:
                    weights[at + i - start] = psw[i] * share if psw.shape[0] > 0 else share
            bag_offsets[n * batch + b + 1] = at + hi - start
        at += offsets[(k + 1) * batch] - start
    return ids, bag_offsets, weights, -1
