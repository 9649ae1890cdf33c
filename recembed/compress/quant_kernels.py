"""Pooled lookup over quantised tables (numba): dequantise only the rows a bag touches.

The main path of :class:`~recembed.compress.quantized_collection.QuantizedEmbeddingBagCollection`
for int8 tables, and the path for every key torch does not pool (MAX, padding ids with
int4, weighted float16 keys, builds without the FBGEMM operators) - see
:mod:`recembed.compress.quant_torch_ops`.

All tables of a quantised collection share one flat byte array; each row is its codes then
its (scale, bias), laid out as :mod:`recembed.compress.quant_layout` says. A table is
described by its byte offset, row stride and the byte position of (scale, bias) in a row.

One call pools every (feature, bag) of a batch straight into its output columns; each
id's row adds ``(w * step) * q + w * bias`` per column, and MEAN divides by the count of
non-padding ids at the end of a bag. int8 SUM/MEAN keys - the common case - have their own
flat loop (:func:`_int8_sums`); everything else goes through one general loop
(:func:`_pool_any`). What made the int8 loop as fast as float32 lookups (measured with
benchmarks/compression.py, one thread: 2.4x ``F.embedding_bag`` on the CTR model's tables,
about 1.0x on two 1M x 32 tables read at random; session 2's route through FBGEMM's
operators gave 0.97x and 0.71x):

- rows are prefetched ``_AHEAD`` ids ahead across bag boundaries (bags of a few ids left
  session 2's kernel, which prefetched within a bag, waiting on nearly every cache miss),
  both cache lines of a row (prefetching only the first halved lookups/s on large tables),
  into L2 rather than L1 (:func:`~recembed.kernels.prefetch.prefetch_flat_l2`: 1.5x on large tables);
- each id is range-checked in the same pass (no separate pass, no gathered copy of ids);
- no branch on format or pooling inside the loop, and the general loop in a function of
  its own: with its branches in the same function (even never taken), LLVM made the int8
  loop 1.5-3x slower;
- float16 scales are widened by one instruction (F16C), not arithmetic: ~1.3x on bags of one;
- ``error_model="numpy"``: Python's division-by-zero check on each row's scale cost 2x;
- with several numba threads and a large batch, the (key, bag) jobs are split into chunks.

float16 values and scales are widened by F16C's conversion instruction through a small
LLVM intrinsic (numba has no float16 type on the CPU), or arithmetically from their bit
fields on CPUs without it; non-finite values never occur (quantisation rejects them).

Pooling codes: 0 SUM, 1 MEAN (weighted sum / count of non-padding ids), 2 MAX.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from llvmlite.binding import get_host_cpu_features
from numba.core import types
from numba.extending import intrinsic

from recembed.compress.quant_layout import BYTES, BYTES16, HALF, NIBBLES
from recembed.kernels.prefetch import prefetch_flat_l2

__all__ = ["half_exponent_scales", "needs_general_loop", "pooled_quantized"]

POOL_SUM, POOL_MEAN, POOL_MAX = 0, 1, 2
# Ids prefetched ahead of use. Measured on 1M x 32 int8 tables (uniform ids, bags of 4, one
# thread): 4 ahead 36, 8 ahead 51, 16 ahead 63, 32 ahead 74 M lookups/s; no change on cached tables.
_AHEAD = 32
_ASSIGN, _ADD, _MAX = 0, 1, 2  # how a row meets its bag's output: first row, later rows, MAX

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


@intrinsic
def _half_bits_to_float(typingctx, bits):
    """float32 of float16 ``bits`` (uint16): one conversion instruction (F16C ``vcvtph2ps`` on x86)."""
    if not isinstance(bits, types.Integer) or bits.bitwidth != 16:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(bits), codegen


def _host_has_f16c() -> bool:
    try:
        return bool(get_host_cpu_features().get("f16c", False))
    except RuntimeError:  # llvmlite cannot tell on this platform
        return False


# Without F16C, LLVM would turn the conversion into a call to a runtime helper numba may not
# link; the arithmetic widening below is then used instead (a constant, so the other branch
# is compiled out). The conversion instruction made int8 lookups with bags of one ~1.3x faster.
_F16C = _host_has_f16c()


@numba.njit(inline="always")
def _half(bits, pow2):
    """float32 value of finite float16 ``bits``: the conversion instruction, or (without F16C)
    ``(1024 * [e > 0] + mantissa) * pow2[e]``, negated for the sign bit."""
    if _F16C:
        return _half_bits_to_float(bits)
    e = (bits >> 10) & 31
    v = np.float32((bits & 1023) + (1024 if e > 0 else 0)) * pow2[e]
    return -v if bits & 0x8000 else v


# Indices are unsigned (np.uint64): numba then skips its negative-index wraparound and the
# inner loops vectorise (signed indices ran ~4x slower).
_ONE = np.uint64(1)
_FOUR = np.uint64(4)


@numba.njit(inline="always")
def _meet(mode, flat, at, value):
    """Write ``value`` into the bag's output element ``at`` as ``mode`` says (a constant per loop)."""
    if mode == _ASSIGN:
        flat[at] = value
    elif mode == _ADD:
        flat[at] += value
    else:
        flat[at] = max(flat[at], value)


@numba.njit(inline="always")
def _row_into(fmt, mode, data, data16, pow2, src, d, a, c, flat, base):
    """Meet ``a * x + c`` of every column x of the stored row at byte ``src`` with the bag's output at ``base``.

    x is the code (int8/int4) or the value (float16). The branches are outside the column
    loops, so each loop is one straight vectorisable pass.
    """
    if fmt == BYTES or fmt == BYTES16:
        for j in range(d):
            _meet(mode, flat, base + j, np.float32(data[src + j]) * a + c)
    elif fmt == NIBBLES:
        pairs = d >> _ONE
        for p in range(pairs):  # column 2p is the low nibble of byte p, 2p + 1 the high one
            byte = data[src + p]
            _meet(mode, flat, base + p + p, np.float32(byte & np.uint8(15)) * a + c)
            _meet(mode, flat, base + p + p + _ONE, np.float32(byte >> _FOUR) * a + c)
        if d & _ONE:
            _meet(mode, flat, base + d - _ONE, np.float32(data[src + pairs] & np.uint8(15)) * a + c)
    else:  # HALF
        half_at = src >> _ONE
        for j in range(d):
            _meet(mode, flat, base + j, _half(data16[half_at + j], pow2) * a + c)


@numba.njit(inline="always")
def _step_bias(fmt, data16, meta32, pow2, at, divisor):
    """(step, bias) of the row whose (scale, bias) start at byte ``at``; the stored scale is ``divisor`` steps."""
    if fmt == HALF:
        return np.float32(1.0), np.float32(0.0)
    if meta32.shape[0] == 0:  # float16 (scale, bias)
        m = np.uint64(at >> 1)
        return _half(data16[m], pow2) / divisor, _half(data16[m + _ONE], pow2)
    m = np.uint64(at >> 2)
    return meta32[m] / divisor, meta32[m + _ONE]


@numba.njit(inline="always")
def _prefetch_ahead(data, rows, i, key_end, t_off, stride):
    """Prefetch the row of the id ``_AHEAD`` places on, if it is still this key's (never another table's)."""
    if i + _AHEAD < key_end:
        ahead = t_off + rows[i + _AHEAD] * stride  # a wild id only prefetches nothing useful
        prefetch_flat_l2(data, ahead)
        prefetch_flat_l2(data, ahead + stride - 1)  # a row may straddle two cache lines


@numba.njit(inline="always")
def _int8_row(flat, base, data, src, d, step, bias, first):
    """``flat[base:base + d]`` (=, or += unless ``first``) ``code * step + bias`` of the int8 row at byte ``src``."""
    if first:
        for j in range(d):
            flat[base + j] = np.float32(data[src + j]) * step + bias
    else:
        for j in range(d):
            flat[base + j] += np.float32(data[src + j]) * step + bias


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _int8_sums(divisor, data, data16, meta32, pow2, table_off, row_stride, meta_at, dims, num_rows, pad, key_table,
               key_col, key_pool, rows, offsets, psw, batch, out, job_lo, job_hi):
    """The SUM/MEAN keys among jobs ``[job_lo, job_hi)`` of int8 rows (``BYTES16`` or ``BYTES``); MAX keys are
    left to :func:`_pool_any`. Arguments and result as :func:`_pool_any`."""
    width = out.shape[1]
    flat = out.reshape(-1)
    half_meta = meta32.shape[0] == 0
    weighted = psw.shape[0] > 0
    inv_divisor = np.float32(1.0) / divisor
    for k in range(job_lo // batch, (job_hi + batch - 1) // batch):
        t = key_table[k]
        if t < 0 or key_pool[k] == POOL_MAX:
            continue
        d, p, stride, limit = np.uint64(dims[t]), pad[t], row_stride[t], num_rows[t]
        t_off, m_at, mean = table_off[t], meta_at[t], key_pool[k] == POOL_MEAN
        key_end = offsets[(k + 1) * batch]
        for b in range(max(job_lo - k * batch, 0), min(job_hi - k * batch, batch)):
            base = np.uint64(b * width + key_col[k])
            count = 0
            for i in range(offsets[k * batch + b], offsets[k * batch + b + 1]):
                if i + _AHEAD < key_end:  # (written out: through an inline helper this loop ran 1.4x slower)
                    ahead = t_off + rows[i + _AHEAD] * stride
                    prefetch_flat_l2(data, ahead)
                    prefetch_flat_l2(data, ahead + stride - 1)
                r = rows[i]
                if r < 0 or r >= limit:
                    return k
                if r == p:
                    continue
                count += 1
                at = t_off + r * stride
                if half_meta:
                    m = np.uint64((at + m_at) >> 1)
                    step, bias = _half(data16[m], pow2) * inv_divisor, _half(data16[m + _ONE], pow2)
                else:
                    m = np.uint64((at + m_at) >> 2)
                    step, bias = meta32[m] * inv_divisor, meta32[m + _ONE]
                if weighted:
                    step, bias = step * psw[i], bias * psw[i]
                _int8_row(flat, base, data, np.uint64(at), d, step, bias, count == 1)
            if count == 0:
                for j in range(d):
                    flat[base + j] = 0.0
            elif mean and count > 1:
                inv = np.float32(1.0 / count)
                for j in range(d):
                    flat[base + j] *= inv
    return -1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _pool_any(fmt, skip_int8_sums, divisor, data, data16, meta32, pow2, table_off, row_stride, meta_at, dims,
              num_rows, pad, key_table, key_col, key_pool, rows, offsets, psw, batch, out, job_lo, job_hi):
    """Pool the (key, bag) jobs ``[job_lo, job_hi)`` (job = key * batch + bag) of rows of format ``fmt``; with
    ``skip_int8_sums``, SUM/MEAN keys are skipped (:func:`_int8_sums` pools them).

    Returns the first key found holding an id outside its table (its output is then
    unfinished), or -1. Arguments as :func:`pooled_quantized`.
    """
    width = out.shape[1]
    flat = out.reshape(-1)
    weighted = psw.shape[0] > 0
    for job in range(job_lo, job_hi):
        k = job // batch
        t, pool = key_table[k], key_pool[k]
        if t < 0 or (skip_int8_sums and pool != POOL_MAX):
            continue
        d, p, stride, limit = np.uint64(dims[t]), pad[t], row_stride[t], num_rows[t]
        t_off, m_at = table_off[t], meta_at[t]
        base = np.uint64((job - k * batch) * width + key_col[k])
        key_end = offsets[(k + 1) * batch]
        count = 0
        for i in range(offsets[job], offsets[job + 1]):
            _prefetch_ahead(data, rows, i, key_end, t_off, stride)
            r = rows[i]
            if r < 0 or r >= limit:
                return k
            if r == p:
                continue
            count += 1
            at = t_off + r * stride
            step, bias = _step_bias(fmt, data16, meta32, pow2, at + m_at, divisor)
            src = np.uint64(at)
            if pool == POOL_MAX:
                if count == 1:
                    _row_into(fmt, _ASSIGN, data, data16, pow2, src, d, step, bias, flat, base)
                else:
                    _row_into(fmt, _MAX, data, data16, pow2, src, d, step, bias, flat, base)
                continue
            w = psw[i] if weighted else np.float32(1.0)
            if count == 1:
                _row_into(fmt, _ASSIGN, data, data16, pow2, src, d, w * step, w * bias, flat, base)
            else:
                _row_into(fmt, _ADD, data, data16, pow2, src, d, w * step, w * bias, flat, base)
        if count == 0:
            for j in range(d):
                flat[base + j] = 0.0
        elif pool == POOL_MEAN and count > 1:
            inv = np.float32(1.0 / count)
            for j in range(d):
                flat[base + j] *= inv
    return -1


# Each loop is its own compiled function, called from Python: inside one function with the
# general loop (even never run), the int8 loop ran 3x slower on bags of one id (measured).
@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _int8_sums_in_chunks(divisor, data, data16, meta32, pow2, table_off, row_stride, meta_at, dims, num_rows, pad,
                         key_table, key_col, key_pool, rows, offsets, psw, batch, out, chunks):
    jobs = key_table.shape[0] * batch
    bad = np.full(chunks, -1, np.int64)
    for c in numba.prange(chunks):
        bad[c] = _int8_sums(divisor, data, data16, meta32, pow2, table_off, row_stride, meta_at, dims, num_rows, pad,
                            key_table, key_col, key_pool, rows, offsets, psw, batch, out, c * jobs // chunks,
                            (c + 1) * jobs // chunks)
    return _first_bad(bad)


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _pool_any_in_chunks(fmt, skip_int8_sums, divisor, data, data16, meta32, pow2, table_off, row_stride, meta_at,
                        dims, num_rows, pad, key_table, key_col, key_pool, rows, offsets, psw, batch, out, chunks):
    jobs = key_table.shape[0] * batch
    bad = np.full(chunks, -1, np.int64)
    for c in numba.prange(chunks):
        bad[c] = _pool_any(fmt, skip_int8_sums, divisor, data, data16, meta32, pow2, table_off, row_stride, meta_at,
                           dims, num_rows, pad, key_table, key_col, key_pool, rows, offsets, psw, batch, out,
                           c * jobs // chunks, (c + 1) * jobs // chunks)
    return _first_bad(bad)


@numba.njit(inline="always")
def _first_bad(bad):
    for c in range(bad.shape[0]):
        if bad[c] >= 0:
            return bad[c]
    return -1


def needs_general_loop(fmt: int, key_table: np.ndarray, key_pool: np.ndarray) -> bool:
    """Whether any served key needs the general loop: all but int8 SUM/MEAN keys do."""
    if fmt != BYTES and fmt != BYTES16:
        return True
    return bool((key_pool[key_table >= 0] == POOL_MAX).any())


_PARALLEL_MIN_IDS = 1 << 15  # below this, waking worker threads costs more than it saves


def pooled_quantized(fmt: int, divisor: float, data: np.ndarray, data16: np.ndarray, meta32: np.ndarray,
                     table_off: np.ndarray, row_stride: np.ndarray, meta_at: np.ndarray, dims: np.ndarray,
                     num_rows: np.ndarray, pad: np.ndarray, key_table: np.ndarray, key_col: np.ndarray,
                     key_pool: np.ndarray, rows: np.ndarray, offsets: np.ndarray, psw: np.ndarray, batch: int,
                     out: np.ndarray, needs_general: bool | None = None) -> int:
    """Pool every (key, bag) of a batch into ``out`` ``(batch, width)`` float32; returns a bad key or -1.

    ``fmt`` is the rows' :mod:`~recembed.compress.quant_layout` format and ``divisor`` the
    stored scale's steps (:func:`~recembed.compress.quant_rows.step_divisor`). ``data`` is the
    flat uint8 row store; ``data16`` its uint16 view (float16 values or scales; else empty) and
    ``meta32`` its float32 view (float32 scales; else empty); ``psw`` (N,) float32 per-sample
    weights, empty without. Per plain table t: ``table_off`` / ``row_stride`` / ``meta_at`` in
    bytes, ``dims``, ``num_rows`` and ``pad`` (padding row, -1: none). Per batch key k:
    ``key_table[k]`` (< 0: served elsewhere, skipped), ``key_col[k]`` (its first output column)
    and ``key_pool[k]``. ``rows`` (N,) int64 and ``offsets`` (K * batch + 1,) are the KJT's
    (offsets global, from 0).

    Returns -1, or the first key found holding an id outside ``[0, num_rows)`` of its table:
    nothing outside a table is read, ``out`` is unfinished, and the caller raises. Runs on
    numba's threads when there are several and the batch is large. ``needs_general`` is
    :func:`needs_general_loop` of the keys (computed when None; callers cache it).
    """
    if needs_general is None:
        needs_general = needs_general_loop(fmt, key_table, key_pool)
    args = (np.float32(divisor), data, data16, meta32, half_exponent_scales(), table_off, row_stride, meta_at, dims,
            num_rows, pad, key_table, key_col, key_pool, rows, offsets, psw, batch, out)
    int8 = fmt == BYTES or fmt == BYTES16
    threads = numba.get_num_threads()
    if threads > 1 and len(rows) >= _PARALLEL_MIN_IDS:
        bad = _int8_sums_in_chunks(*args, 4 * threads) if int8 else -1
        if bad < 0 and needs_general:
            bad = _pool_any_in_chunks(fmt, int8, *args, 4 * threads)
        return int(bad)
    jobs = len(key_table) * batch
    bad = _int8_sums(*args, 0, jobs) if int8 else -1
    if bad < 0 and needs_general:
        bad = _pool_any(fmt, int8, *args, 0, jobs)
    return int(bad)
