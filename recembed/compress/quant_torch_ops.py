"""Pooling int4 and float16 tables with the embedding-bag operators torch ships.

torch's CPU build carries FBGEMM's quantised embedding-bag kernels as
``torch.ops.quantized.embedding_bag_4bit_rowwise_offsets`` (int4 codes, float16 scale and
bias at the end of each row) and ``embedding_bag_byte_rowwise_offsets`` (int8 codes,
float32 scale and bias). :mod:`recembed.compress.quant_layout` stores int4 rows in the
4-bit operator's layout, so a table's block is passed as it is. int8 tables are not pooled
here (see ``ROUTED_FORMATS``): the numba kernel's int8 loop outruns the byte operator.

Measured facts this module depends on (torch 2.13, checked by tests/compress):
- the operators compute SUM whatever ``mode`` says, so MEAN is pooled as SUM with
  per-sample weights ``1 / bag length`` folded in, and MAX is left to the numba kernel;
- they have no padding index, so tables with ``padding_idx`` are left to the numba kernel;
- they read ``offsets`` as if the first were 0 (and check that the last is ``len(indices)``),
  so the ids handed over are exactly the pooled keys' ids (gathered by
  :func:`gather_rows`, offset into a stack of tables of one
  row stride, so one call pools every key).

float16 tables go through ``torch.nn.functional.embedding_bag`` on a float16 view, whose
result is rounded to float16 once (relative error <= 2**-11 beyond the stored values'
rounding); weighted float16 keys are left to the numba kernel (torch wants float16 weights).

Which keys a path may serve is decided once per set of batch keys by :func:`torch_op_keys`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numba
import numpy as np
import torch
import torch.nn.functional as F

from recembed.compress.quant_layout import BYTES, HALF, NIBBLES

__all__ = ["ROUTED_FORMATS", "gather_rows", "pool_with_torch_ops", "torch_op_available", "torch_op_keys"]

_POOL_SUM, _POOL_MEAN = 0, 1
# Formats whose SUM/MEAN keys go through torch. int8 rows (BYTES16, BYTES) do not: no FBGEMM
# operator reads the 3.5x-smaller BYTES16 rows, and the numba kernel's int8 loop beat the
# byte operator with its wrapper (gathered ids, copies out) on cached tables (~2x) and
# matched it on memory-bound ones - where the bare operator is still ~1.25x faster
# (session 3, benchmarks/compression.py).
ROUTED_FORMATS = (NIBBLES, HALF)


@cache
def torch_op_available(fmt: int) -> bool:
    """Whether this torch build has the operator that reads rows of format ``fmt``."""
    if fmt == HALF:
        return True
    name = "embedding_bag_byte_rowwise_offsets" if fmt == BYTES else "embedding_bag_4bit_rowwise_offsets"
    try:
        getattr(torch.ops.quantized, name)
    except (AttributeError, RuntimeError):
        return False
    return True




def torch_op_keys(fmt: int, scale_dtype: str, key_table: Sequence[int], key_pool: Sequence[int],
                  table_pad: Sequence[int], weighted: bool) -> list[bool]:
    """Per batch key: True when the torch operator can pool it exactly as the numba kernel would.

    ``key_table[k]`` is the key's plain-table index (< 0: not a plain table), ``key_pool[k]``
    its pooling code and ``table_pad[t]`` a table's padding row (< 0: none).
    """
    usable = fmt in ROUTED_FORMATS and torch_op_available(fmt) and not (fmt == NIBBLES and scale_dtype == "float32")
    if fmt == HALF and weighted:
        usable = False
    out = []
    for t, pool in zip(key_table, key_pool):
        ok = usable and t >= 0 and pool in (_POOL_SUM, _POOL_MEAN)
        out.append(bool(ok and (fmt == HALF or table_pad[t] < 0)))
    return out


def pool_with_torch_ops(fmt: int, weight: torch.Tensor, dim: int, ids: torch.Tensor, bag_offsets: torch.Tensor,
                        weights: torch.Tensor | None, mean: torch.Tensor, out: torch.Tensor,
                        padding_idx: int = -1) -> None:
    """Pool K keys' bags with one operator call into ``out`` ``(K, B, D)`` (a view of the batch output).

    Args:
        fmt: the rows' :mod:`~recembed.compress.quant_layout` format: ``NIBBLES`` (int4) or ``HALF``.
        weight: stored rows ``(rows, row_stride)`` uint8, contiguous - one table, or several
            tables of one stride stacked, with ``ids`` already offset into it.
        dim: the tables' embedding dim D.
        ids: ``(N,)`` int64 rows, every key's after the previous one's.
        bag_offsets: ``(K * B + 1,)`` offsets into ``ids``, from 0 to N.
        weights: ``(N,)`` float32 per-sample weights, or None; for int4 they already hold
            MEAN's ``1 / bag length`` (:func:`gather_rows`).
        mean: ``(K,)`` bool, True where a float16 key pools by MEAN (else SUM); ignored for int4.
        out: ``(K, B, D)`` float32, written in place.
        padding_idx: float16 rows only, one table (K = 1): its padding row, skipped and not
            counted by MEAN (-1: none). The int4 operator has none; see :func:`torch_op_keys`.
    """
    keys, batch = out.shape[0], out.shape[1]
    if fmt != HALF:
        pooled = torch.ops.quantized.embedding_bag_4bit_rowwise_offsets(
            weight, ids, bag_offsets, mode=0, per_sample_weights=weights, include_last_offset=True)
        # Key by key: one copy into the transposed (K, B, D) view measured 1.2-1.5x slower.
        for i in range(keys):
            out[i].copy_(pooled[i * batch : (i + 1) * batch, :dim])
        return
    # float16: torch wants float16 weights (1 / length would round), so MEAN divides afterwards,
    # except with a padding row, where only torch knows the count of non-padding ids.
    native_mean = padding_idx >= 0 and bool(mean[0])
    pooled = F.embedding_bag(ids, weight.view(torch.float16), bag_offsets, include_last_offset=True,
                             mode="mean" if native_mean else "sum", padding_idx=None if padding_idx < 0 else padding_idx)
    for i in range(keys):
        out[i].copy_(pooled[i * batch : (i + 1) * batch])
    if bool(mean.any()) and not native_mean:
        lengths = (bag_offsets[1:] - bag_offsets[:-1]).clamp_(min=1).view(keys, batch).to(torch.float32)
        out.mul_(torch.where(mean.view(keys, 1), lengths.reciprocal_(), 1.0).unsqueeze(2))


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
