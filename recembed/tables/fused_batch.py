"""One forward/backward of a :class:`~recembed.tables.fused_group.FusedTableGroup` on a batch.

Forward splits the group's keys three ways:

- float32 CPU SUM/MEAN keys whose table has no padding row (or, under SUM, a padding row
  of zeros, which adds nothing) and, for MEAN, no per-sample weights: torch's ``embedding_bag`` (FBGEMM's JIT kernels inside torch) on the table's
  view of the flat weights, one call per key, grouped by (dim, pooling) and concatenated;
  when one group covers every output column in order, the concatenation *is* the output;
- the other float32 CPU keys (MAX, padding rows, weighted MEAN): the numba kernel;
- keys of other tables (float16/bfloat16, accelerators): the torch-native twin.

Backward applies the optimizer to the rows of each path from the same ``rows`` and
``offsets`` the forward saw; nothing is recomputed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from recembed.errors import ConfigError
from recembed.kernels import fused_cpu
from recembed.kernels.fused_torch import torch_backward_update, torch_forward
from recembed.kernels.fused_update import default_parts, fused_backward

__all__ = ["FusedBatch", "torch_pooled_groups"]

_POOL_SUM, _POOL_MEAN, _POOL_MAX = 0, 1, 2
_MODES = {_POOL_SUM: "sum", _POOL_MEAN: "mean"}


def torch_pooled_groups(plan: dict, weighted: bool, zero_pads: bool = False) -> tuple[list[dict], np.ndarray]:
    """Which CPU keys torch's ``embedding_bag`` pools, and what is left to the numba kernel.

    Returns the groups (each: ``keys`` in column order, ``dim``, ``mode``, ``cols`` and ``block``, the output column span when the keys'
    columns are contiguous, else None) and the numba kernel's ``key_table`` (keys not for
    it set to -1). ``zero_pads``: every padding row holds zeros, so SUM keys of tables with
    one may go to torch (a zero row adds nothing; torch's own ``padding_idx`` leaves its
    fast kernel). Cached in ``plan`` per ``(weighted, zero_pads)``.
    """
    cached = plan.get(("torch_groups", weighted, zero_pads))
    if cached is not None:
        return cached
    t = plan["tables"]
    key_table, key_pool, key_col = plan["key_table"], plan["key_pool"], plan["key_col"]
    numba_table = key_table.copy()
    by_kind: dict[tuple[int, int], list[int]] = {}
    for k in range(len(key_table)):
        j = key_table[k]
        pool = int(key_pool[k])
        padded = t["pad"][j] >= 0 and not (zero_pads and pool == _POOL_SUM)
        if j < 0 or pool == _POOL_MAX or padded or (weighted and pool == _POOL_MEAN):
            continue
        by_kind.setdefault((int(t["dim"][j]), pool), []).append(k)
        numba_table[k] = -1
    groups = []
    for (dim, pool), ks in by_kind.items():
        ks.sort(key=lambda k: key_col[k])
        cols = [int(key_col[k]) for k in ks]
        contiguous = all(cols[i + 1] == cols[i] + dim for i in range(len(cols) - 1))
        groups.append({
            "keys": np.array(ks, np.int64),
            "dim": dim, "mode": _MODES[pool], "cols": cols,
            "block": (cols[0], cols[0] + dim * len(ks)) if contiguous else None,
        })
    plan[("torch_groups", weighted, zero_pads)] = (groups, numba_table)
    return groups, numba_table


def _check_packable(group, cpu: list[int], row_bits: np.ndarray, num_ids: int) -> None:
    """The backward packs (row, occurrence) into one int64; say which table and batch do not fit."""
    occurrence_bits = max(num_ids - 1, 0).bit_length()
    for j, bits in enumerate(row_bits):
        if bits + occurrence_bits > 63:
            name = group.table_names[cpu[j]]
            raise ConfigError(f"table '{name}': {group.configs[name].num_embeddings} rows and a batch of {num_ids} ids "
                              f"need {bits} + {occurrence_bits} bits, over the 63 the fused CPU backward packs them "
                              f"into; split the batch or use backend='torch'")


class FusedBatch:
    """What one forward saw, kept for its backward."""

    def __init__(self, group, plan, store, cpu, rows, offsets, weights, batch, recheck=None, zero_pads=False):
        self.group, self.plan, self.store, self.cpu, self.batch = group, plan, store, cpu, batch
        self.zero_pads = zero_pads
        self.recheck = recheck  # the full id check, run when torch's embedding_bag refuses the ids
        self.rows, self.offsets = rows.contiguous(), offsets.contiguous()
        self.weights = None if weights is None else weights.float().contiguous()
        self.argmax = np.zeros((0, 0), np.int64)
        self.winners = None
        self._key_bounds: list[int] | None = None  # each key's first id (and the end), made on first use
        self._local_starts: torch.Tensor | None = None  # (K, B): bag starts relative to the key's first id

    def _has_cpu_keys(self) -> bool:
        return self.store is not None and bool((self.plan["key_table"] >= 0).any())

    def forward(self) -> torch.Tensor:
        p = self.plan
        out = None
        if self._has_cpu_keys():
            out = self._cpu_forward()
        if out is None:
            # Every column is written below (a fused feature missing from the batch is rejected earlier).
            out = torch.empty(self.batch, p["width"], dtype=torch.float32, device=self.rows.device)
        if p["torch_keys"]:
            self.winners = torch_forward(self.group.torch_slots(), p["torch_keys"], self.rows, self.offsets,
                                         self.weights, self.batch, out)
        return out

    def _cpu_forward(self) -> torch.Tensor:
        p, t = self.plan, self.plan["tables"]
        groups, numba_table = torch_pooled_groups(p, self.weights is not None, self.zero_pads)
        width = p["width"]
        try:
            pooled = [self._torch_pool(g) for g in groups]
        except RuntimeError:
            if self.recheck is not None:
                self.recheck()  # raises the error naming the feature, table, id and allowed range
            raise
        whole = (len(groups) == 1 and groups[0]["block"] == (0, width) and not p["torch_keys"]
                 and not (numba_table >= 0).any())
        if whole:
            return pooled[0]
        out = torch.empty(self.batch, width, dtype=torch.float32)
        for g, values in zip(groups, pooled):
            if g["block"] is not None:
                out[:, g["block"][0] : g["block"][1]] = values
            else:
                d = g["dim"]
                for j, col in enumerate(g["cols"]):
                    out[:, col : col + d] = values[:, j * d : (j + 1) * d]
        if (numba_table >= 0).any():
            has_max = bool((p["key_pool"][numba_table >= 0] == _POOL_MAX).any())
            self.argmax = np.zeros((self.batch, width) if has_max else (0, 0), np.int64)
            psw = self.weights.numpy() if self.weights is not None else np.zeros(0, np.float32)
            fused_cpu.pooled_forward(self.store.flats[0].numpy(), t["w_off"], t["dim"], t["pad"], numba_table,
                                     p["key_col"], p["key_pool"], self.rows.numpy(), self.offsets.numpy(), psw,
                                     self.batch, out.numpy(), self.argmax)
        return out

    def _torch_pool(self, g: dict) -> torch.Tensor:
        """``(B, n * dim)``: the group's keys pooled side by side by torch's ``embedding_bag``.

        One call per key on the table's own view, with the key's ids as a slice (no copy);
        measured faster than one call over ids regathered bag by bag. Every key's bag starts,
        relative to its first id, come from one subtraction for the whole batch.
        """
        if self.batch == 0:
            return torch.empty(0, g["dim"] * len(g["keys"]), dtype=torch.float32)
        if self._key_bounds is None:
            starts = self.offsets[:-1].view(-1, self.batch)
            self._key_bounds = self.offsets[:: self.batch].tolist()
            self._local_starts = starts - starts[:, :1]
        bounds, local = self._key_bounds, self._local_starts
        views, key_table = self.store.views[0], self.plan["key_table"]
        pooled = []
        for k in g["keys"].tolist():
            first, last = bounds[k], bounds[k + 1]
            weights = None if self.weights is None else self.weights[first:last]
            pooled.append(F.embedding_bag(self.rows[first:last], views[key_table[k]], local[k], mode=g["mode"],
                                          per_sample_weights=weights))
        return pooled[0] if len(pooled) == 1 else torch.cat(pooled, 1)

    def backward(self, grad: torch.Tensor) -> None:
        group, p = self.group, self.plan
        hypers = [group.state[name].advance() for name in group.table_names]
        if self._has_cpu_keys():
            self._cpu_backward(grad.float().contiguous(), hypers)
        if p["torch_keys"]:
            torch_backward_update(group.torch_slots(), p["torch_keys"], self.rows, self.offsets, self.weights,
                                  self.batch, grad.float(), self.winners, hypers)

    def _cpu_backward(self, grad: torch.Tensor, hypers: list[list[float]]) -> None:
        p, t, s = self.plan, self.plan["tables"], self.store
        _check_packable(self.group, self.cpu, t["row_bits"], len(self.rows))
        psw = self.weights.numpy() if self.weights is not None else np.zeros(0, np.float32)
        hyper = np.array([hypers[i] for i in self.cpu], dtype=np.float64)
        fused_backward(s.flats[0].numpy(), s.flats[1].numpy(), s.flats[2].numpy(), s.flats[3].numpy(),
                       t["w_off"], t["dim"], t["pad"], t["code"], t["s1_off"], t["s2_off"], t["r_off"], hyper,
                       t["row_bits"], p["table_key_start"], p["table_keys"], p["key_col"], p["key_pool"], self.rows.numpy(),
                       self.offsets.numpy(), psw, self.batch, grad.numpy(), self.argmax, default_parts(len(self.cpu)))
