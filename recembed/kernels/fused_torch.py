"""Torch-native fused lookup and update: the same numerics as the CPU kernels, on any device.

Used for GPU tables and for float16/bfloat16 tables (rows are updated in float32 and
written back with stochastic rounding). Work is done per table with vectorised torch
ops: occurrences' gradient contributions are summed per unique row with ``index_add_``,
then :func:`recembed.optim.rules.update_rows_torch` updates those rows and their state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recembed.optim.rules import update_rows_torch

__all__ = ["TableSlot", "KeySlot", "torch_forward", "torch_backward_update", "stochastic_round"]

_POOL_MODE = {0: 0, 1: 1, 2: 2}  # our pooling code -> aten embedding_bag mode (sum, mean, max)


@dataclass
class TableSlot:
    """One table as the torch path sees it."""

    weight: torch.Tensor  # (rows, D), any float dtype
    elem_state: list[torch.Tensor]  # (rows, D) float32 each
    row_state: list[torch.Tensor]  # (rows,) float32 each
    code: int
    padding_idx: int  # -1 for none


@dataclass
class KeySlot:
    """One KeyedJaggedTensor key served by the group."""

    key_index: int
    table: int
    col: int
    pool: int  # 0 sum, 1 mean, 2 max


def _key_bags(rows: torch.Tensor, offsets: torch.Tensor, psw: torch.Tensor | None, slot: KeySlot, batch: int):
    local = offsets[slot.key_index * batch : (slot.key_index + 1) * batch + 1]
    start, end = int(local[0]), int(local[-1])
    weights = None if psw is None else psw[start:end]
    return rows[start:end], local - start, weights


def torch_forward(tables: list[TableSlot], keys: list[KeySlot], rows, offsets, psw, batch: int, out: torch.Tensor):
    """Fill ``out`` (B, D_out) with every key's pooled vectors; returns MAX winners per key index."""
    winners: dict[int, torch.Tensor] = {}
    for slot in keys:
        table = tables[slot.table]
        ids, local, weights = _key_bags(rows, offsets, psw, slot, batch)
        w = table.weight
        d = w.shape[1]
        mean_weighted = slot.pool == 1 and weights is not None
        mode = 0 if mean_weighted else _POOL_MODE[slot.pool]
        pooled, _, bag_size, max_idx = torch.embedding_bag(
            w, ids, local, False, mode, False, None if weights is None else weights.to(w.dtype), True,
            None if table.padding_idx < 0 else table.padding_idx,  # aten reads -1 as the last row
        )
        pooled = pooled.float()
        if mean_weighted:
            counts = _non_pad_counts(ids, local, table.padding_idx)
            pooled = pooled / counts.clamp(min=1).unsqueeze(1).to(pooled.dtype)
        if slot.pool == 2:
            empty = (local[1:] - local[:-1]) == 0
            winners[slot.key_index] = torch.where(empty.unsqueeze(1), torch.full_like(max_idx, -1), max_idx)
        out[:, slot.col : slot.col + d] = pooled
    return winners


def _non_pad_counts(ids: torch.Tensor, local: torch.Tensor, padding_idx: int) -> torch.Tensor:
    lengths = local[1:] - local[:-1]
    if padding_idx < 0:
        return lengths
    bag = torch.repeat_interleave(torch.arange(lengths.numel(), device=ids.device), lengths)
    pads = torch.zeros_like(lengths).index_add_(0, bag, (ids == padding_idx).to(lengths.dtype))
    return lengths - pads


def _contributions(slot: KeySlot, table: TableSlot, ids, local, weights, grad, winners):
    """Rows touched by one key and their gradient contributions ``(rows (M,), grads (M, D))``."""
    d = table.weight.shape[1]
    g = grad[:, slot.col : slot.col + d]
    if slot.pool == 2:
        won = winners[slot.key_index]  # (B, D) row ids, -1 for empty bags
        b_idx, j_idx = torch.nonzero(won >= 0, as_tuple=True)
        rows = won[b_idx, j_idx]
        uniq, inv = torch.unique(rows, return_inverse=True)
        contrib = torch.zeros(uniq.numel(), d, dtype=torch.float32, device=g.device)
        contrib.index_put_((inv, j_idx), g[b_idx, j_idx].float(), accumulate=True)
        return uniq, contrib
    lengths = local[1:] - local[:-1]
    bag = torch.repeat_interleave(torch.arange(lengths.numel(), device=ids.device), lengths)
    scale = torch.ones(ids.numel(), dtype=torch.float32, device=ids.device) if weights is None else weights.float()
    if slot.pool == 1:
        counts = _non_pad_counts(ids, local, table.padding_idx).clamp(min=1).float()
        scale = scale / counts[bag]
    keep = ids != table.padding_idx if table.padding_idx >= 0 else None
    if keep is not None:
        ids, bag, scale = ids[keep], bag[keep], scale[keep]
    return ids, g[bag].float() * scale.unsqueeze(1)


def torch_backward_update(tables: list[TableSlot], keys: list[KeySlot], rows, offsets, psw, batch: int,
                          grad: torch.Tensor, winners, hypers: list[list[float]], generator=None) -> None:
    """Sum each touched row's gradient over the batch and apply its table's rule in place."""
    per_table: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    for slot in keys:
        table = tables[slot.table]
        ids, local, weights = _key_bags(rows, offsets, psw, slot, batch)
        r, c = _contributions(slot, table, ids, local, weights, grad, winners)
        per_table.setdefault(slot.table, ([], []))
        per_table[slot.table][0].append(r)
        per_table[slot.table][1].append(c)
    for t, (row_parts, grad_parts) in per_table.items():
        table = tables[t]
        all_rows = torch.cat(row_parts)
        if all_rows.numel() == 0:
            continue
        uniq, inv = torch.unique(all_rows, return_inverse=True)
        g = torch.zeros(uniq.numel(), table.weight.shape[1], dtype=torch.float32, device=grad.device)
        g.index_add_(0, inv, torch.cat(grad_parts))
        w = table.weight[uniq].float()
        elem = [s[uniq] for s in table.elem_state]
        rowwise = [s[uniq] for s in table.row_state]
        new_w, new_elem, new_row = update_rows_torch(table.code, w, g, elem, rowwise, hypers[t])
        with torch.no_grad():
            table.weight[uniq] = stochastic_round(new_w, table.weight.dtype, generator)
            for dst, src in zip(table.elem_state, new_elem):
                dst[uniq] = src
            for dst, src in zip(table.row_state, new_row):
                dst[uniq] = src


def stochastic_round(x: torch.Tensor, dtype: torch.dtype, generator: torch.Generator | None = None) -> torch.Tensor:
    """Round float32 ``x`` to ``dtype``, up or down with probability by distance (unbiased).

    float32 passes through. bfloat16 adds uniform noise below the kept mantissa bits and
    truncates; float16 picks between the two neighbouring float16 values.
    """
    if dtype == torch.float32:
        return x
    if dtype == torch.bfloat16:
        bits = x.contiguous().view(torch.int32)
        noise = torch.randint(0, 1 << 16, bits.shape, dtype=torch.int32, device=x.device, generator=generator)
        rounded = (bits + noise) & -65536
        finite = torch.isfinite(x)
        return torch.where(finite, rounded.view(torch.float32), x).to(torch.bfloat16)
    if dtype == torch.float16:
        near = x.to(torch.float16)
        near_f = near.float()
        toward = torch.where(near_f > x, torch.full_like(near, float("-inf")), torch.full_like(near, float("inf")))
        other = torch.nextafter(near, toward)
        gap = (other.float() - near_f).abs()
        p_other = torch.where(gap > 0, (x - near_f).abs() / gap, torch.zeros_like(gap))
        draw = torch.rand(x.shape, device=x.device, generator=generator)
        return torch.where(draw < p_other, other, near)
    raise ValueError(f"stochastic rounding to {dtype} is not supported")
