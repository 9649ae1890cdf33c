"""Pooled lookup over quantised tables (numba): dequantise only the rows a bag touches.

All tables of a quantised collection share one flat byte array. A row is its codes (int8,
int4 pairs, or float16 bit patterns) followed, for int8/int4, by its float16 or float32
(scale, bias) - one contiguous read per id, as FBGEMM lays rows out, instead of a second
cache miss in a separate scale array. A table is described by its byte offset, row stride
and the byte position of (scale, bias) within a row (see
:class:`~recembed.compress.quantized_collection.QuantizedEmbeddingBagCollection`).

One call pools every (feature, bag) of a batch, in parallel over bags; each bag
accumulates ``w * (q * scale + bias)`` in float32 straight into its output slice, as
``(w * scale) * q`` per column plus ``sum(w * bias)`` once at the end. Within a bag, rows
are prefetched a few ids ahead. float16 values are widened arithmetically from their bit
fields (numba has no float16 type on the CPU); non-finite values never occur (quantisation
rejects them).

Pooling codes: 0 SUM, 1 MEAN (weighted sum / count of non-padding ids), 2 MAX.
"""

from __future__ import annotations

import numba
import numpy as np

from recembed.kernels.prefetch import prefetch_flat

__all__ = ["half_exponent_scales", "pooled_float16", "pooled_int4", "pooled_int8"]

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


# Each format has its own kernel, so no inner loop tests the format; the shared steps are
# inlined helpers. Indices are unsigned (np.uint64): numba then skips its negative-index
# wraparound and the inner loops vectorise (signed indices ran ~4x slower).
_ONE = np.uint64(1)


@numba.njit(inline="always")
def _scale_bias(meta16, meta32, half, at):
    """(scale, bias) stored at byte ``at``: float16 pairs through ``meta16``, else float32 through ``meta32``."""
    if meta16.shape[0] > 0:
        m = np.uint64(at >> 1)
        return _half(meta16[m], half), _half(meta16[m + _ONE], half)
    m = np.uint64(at >> 2)
    return meta32[m], meta32[m + _ONE]


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
def pooled_int8(data, meta16, meta32, half, table_off, row_stride, meta_at, dims, pad, key_table, key_col, key_pool,
                rows, offsets, psw, batch, out):
    """int8 tables. ``data`` is the flat uint8 row store; ``meta16`` / ``meta32`` are its uint16 /
    float32 views (the one not used is empty); ``psw`` is empty without per-sample weights.
    ``key_table[k] < 0`` skips key k (served elsewhere); ``offsets`` are the KJT's global offsets."""
    width = out.shape[1]
    flat = out.reshape(-1)
    weighted = psw.shape[0] > 0
    for job in numba.prange(key_table.shape[0] * batch):
        k = job // batch
        b = job - k * batch
        t = key_table[k]
        if t < 0:
            continue
        d, pool, p, stride = np.uint64(dims[t]), key_pool[k], pad[t], row_stride[t]
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
            scale, bias = _scale_bias(meta16, meta32, half, at + meta_at[t])
            if pool == POOL_MAX:
                for j in range(d):
                    flat[base + j] = max(flat[base + j], np.float32(data[src + j]) * scale + bias)
            else:
                wt = psw[i] if weighted else np.float32(1.0)
                a = wt * scale
                bias_sum += wt * bias
                for j in range(d):
                    flat[base + j] += a * np.float32(data[src + j])
        _finish_bag(flat, base, d, pool, count, bias_sum)


@numba.njit(parallel=True, cache=True, nogil=True)
def pooled_int4(data, meta16, meta32, half, table_off, row_stride, meta_at, dims, pad, key_table, key_col, key_pool,
                rows, offsets, psw, batch, out):
    """int4 tables: two codes per byte (column 2j in the low nibble, 2j + 1 in the high); else as :func:`pooled_int8`."""
    width = out.shape[1]
    flat = out.reshape(-1)
    weighted = psw.shape[0] > 0
    for job in numba.prange(key_table.shape[0] * batch):
        k = job // batch
        b = job - k * batch
        t = key_table[k]
        if t < 0:
            continue
        d, pool, p, stride = np.uint64(dims[t]), key_pool[k], pad[t], row_stride[t]
        pairs = d >> _ONE
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
            scale, bias = _scale_bias(meta16, meta32, half, at + meta_at[t])
            if pool == POOL_MAX:
                for j in range(d):
                    byte = data[src + (j >> _ONE)]
                    q = (byte >> 4) if j & _ONE else (byte & 15)
                    flat[base + j] = max(flat[base + j], np.float32(q) * scale + bias)
            else:
                wt = psw[i] if weighted else np.float32(1.0)
                a = wt * scale
                bias_sum += wt * bias
                for jb in range(pairs):
                    byte = data[src + jb]
                    flat[base + (jb << _ONE)] += a * np.float32(byte & 15)
                    flat[base + (jb << _ONE) + _ONE] += a * np.float32(byte >> 4)
                if d & _ONE:
                    flat[base + d - _ONE] += a * np.float32(data[src + pairs] & 15)
        _finish_bag(flat, base, d, pool, count, bias_sum)


@numba.njit(parallel=True, cache=True, nogil=True)
def pooled_float16(data, data16, half, table_off, row_stride, dims, pad, key_table, key_col, key_pool, rows, offsets,
                   psw, batch, out):
    """float16 tables: ``data16`` is the uint16 view of ``data``; values are widened through ``half``."""
    width = out.shape[1]
    flat = out.reshape(-1)
    weighted = psw.shape[0] > 0
    for job in numba.prange(key_table.shape[0] * batch):
        k = job // batch
        b = job - k * batch
        t = key_table[k]
        if t < 0:
            continue
        d, pool, p, stride = np.uint64(dims[t]), key_pool[k], pad[t], row_stride[t]
        base = np.uint64(b * width + key_col[k])
        _start_bag(flat, base, d, pool)
        count = 0
        end = offsets[job + 1]
        for i in range(offsets[job], end):
            if i + _AHEAD < end:
                _prefetch_row(data, table_off[t] + rows[i + _AHEAD] * stride, stride)
            r = rows[i]
            if r == p:
                continue
            count += 1
            src = np.uint64((table_off[t] + r * stride) >> 1)
            if pool == POOL_MAX:
                for j in range(d):
                    flat[base + j] = max(flat[base + j], _half(data16[src + j], half))
            else:
                wt = psw[i] if weighted else np.float32(1.0)
                for j in range(d):
                    flat[base + j] += wt * _half(data16[src + j], half)
        _finish_bag(flat, base, d, pool, count, np.float32(0.0))
