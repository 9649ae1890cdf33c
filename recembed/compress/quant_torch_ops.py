"""Pooling quantised tables with the row-wise embedding-bag operators torch ships.

torch's CPU build carries FBGEMM's quantised embedding-bag kernels as
``torch.ops.quantized.embedding_bag_byte_rowwise_offsets`` (int8 codes, float32 scale and
bias at the end of each row) and ``embedding_bag_4bit_rowwise_offsets`` (int4 codes,
float16 scale and bias). They are JIT-generated SIMD code with prefetching, several times
faster than the numba kernel; :mod:`recembed.compress.quant_layout` stores rows in their
layout so a table's block is passed as it is.

Measured facts this module depends on (torch 2.13, checked by tests/compress):
- both operators compute SUM whatever ``mode`` says, so MEAN is pooled as SUM with
  per-sample weights ``1 / bag length`` folded in, and MAX is left to the numba kernel;
- they have no padding index, so tables with ``padding_idx`` are left to the numba kernel;
- they read ``offsets`` as if the first were 0 (and check that the last is ``len(indices)``),
  so the ids handed over are exactly the pooled keys' ids (gathered by
  :func:`~recembed.compress.quant_kernels.gather_rows`, offset into a stack of tables of one
  row stride, so one call pools every key).

float16 tables go through ``torch.nn.functional.embedding_bag`` on a float16 view, whose
result is rounded to float16 once (relative error <= 2**-11 beyond the stored values'
rounding); weighted float16 keys are left to the numba kernel (torch wants float16 weights).

Which keys a path may serve is decided once per set of batch keys by :func:`torch_op_keys`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch
import torch.nn.functional as F

from recembed.compress.quant_layout import BYTES, HALF, NIBBLES, PLANES

__all__ = ["pool_with_torch_ops", "torch_op_available", "torch_op_keys"]

_POOL_SUM, _POOL_MEAN = 0, 1


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


def _operator(fmt: int):
    if fmt == BYTES:
        return torch.ops.quantized.embedding_bag_byte_rowwise_offsets
    return torch.ops.quantized.embedding_bag_4bit_rowwise_offsets


def torch_op_keys(fmt: int, scale_dtype: str, key_table: Sequence[int], key_pool: Sequence[int],
                  table_pad: Sequence[int], weighted: bool) -> list[bool]:
    """Per batch key: True when the torch operator can pool it exactly as the numba kernel would.

    ``key_table[k]`` is the key's plain-table index (< 0: not a plain table), ``key_pool[k]``
    its pooling code and ``table_pad[t]`` a table's padding row (< 0: none).
    """
    usable = torch_op_available(fmt) and not (fmt == NIBBLES and scale_dtype == "float32")
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
        fmt: the rows' :mod:`~recembed.compress.quant_layout` format.
        weight: stored rows ``(rows, row_stride)`` uint8, contiguous - one table, or several
            tables of one stride stacked, with ``ids`` already offset into it.
        dim: the tables' embedding dim D.
        ids: ``(N,)`` int64 rows, every key's after the previous one's.
        bag_offsets: ``(K * B + 1,)`` offsets into ``ids``, from 0 to N.
        weights: ``(N,)`` float32 per-sample weights, or None; for int8/int4 they already hold
            MEAN's ``1 / bag length`` (:func:`~recembed.compress.quant_kernels.gather_rows`).
        mean: ``(K,)`` bool, True where a float16 key pools by MEAN (else SUM); ignored for int8/int4.
        out: ``(K, B, D)`` float32, written in place.
        padding_idx: float16 rows only, one table (K = 1): its padding row, skipped and not
            counted by MEAN (-1: none). The int8/int4 operators have none; see :func:`torch_op_keys`.
    """
    keys, batch = out.shape[0], out.shape[1]
    if fmt != HALF:
        pooled = _operator(fmt)(weight, ids, bag_offsets, mode=0, per_sample_weights=weights, include_last_offset=True)
        if fmt == PLANES:
            # Columns [0, 2P) are the low nibbles' sums, [2P, 4P) the high nibbles' (P = ceil(D / 2)):
            # code * step + bias = (low + 16 * high) / 17 when the stored scale is 17 steps. One
            # lerp over all keys: key-by-key lerps measured up to 4x slower once the (2x wide)
            # result outgrew the cache.
            high = 2 * ((dim + 1) // 2)
            torch.lerp(pooled[:, :dim].view(keys, batch, dim), pooled[:, high : high + dim].view(keys, batch, dim),
                       16.0 / 17.0, out=out)
        else:
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
