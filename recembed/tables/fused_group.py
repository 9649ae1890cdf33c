"""The tables of a collection that carry a fused optimizer, looked up and updated together.

float32 tables on the CPU share one flat weight array (each table's ``weight`` Parameter
is a view into it, so users read, initialise and copy into it as before) and one flat
array per state kind; a single numba call pools every feature, and a single call in
backward updates every touched row of every table. Other tables (float16/bfloat16, or
on an accelerator) take the torch-native path with the same numerics.

``loss.backward()`` applies the update: no gradient tensor is made for these tables.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

from recembed.errors import ConfigError
from recembed.kernels import fused_cpu
from recembed.kernels.fused_torch import KeySlot, TableSlot
from recembed.kernels.host_memory import empty_float32
from recembed.optim.fused_optimizer import FusedOptimizer
from recembed.optim.state import TableOptimizerState
from recembed.sparse import KeyedJaggedTensor
from recembed.tables.config import EmbeddingBagConfig, PoolingType
from recembed.tables.fused_batch import FusedBatch, torch_pooled_groups
from recembed.tables.ids import remap_suspect_keys
from recembed.tables.table_dict import TableDict

__all__ = ["FusedTableGroup"]

_POOL_CODE = {PoolingType.SUM: 0, PoolingType.MEAN: 1, PoolingType.MAX: 2}
BACKENDS = ("auto", "cpu", "torch")


class _FlatStore:
    """The CPU fp32 tables' weights and state as views into shared flat arrays.

    Each tensor starts on a cache line (a multiple of 16 floats) and at a whole number of
    its rows, so rows never straddle more cache lines than they must and a 2-D
    ``(-1, dim)`` view of a flat array sees every table of that dim at whole rows.
    """

    def __init__(self, tensors_per_kind: list[list[torch.Tensor]]):
        self.flats: list[torch.Tensor] = []
        self.offsets: list[np.ndarray] = []
        self.views: list[list[torch.Tensor]] = []
        for tensors in tensors_per_kind:
            starts, end = [], 0
            for t in tensors:
                align = math.lcm(int(t.shape[-1]) if t.dim() == 2 else 1, 16)
                end = -(-end // align) * align
                starts.append(end)
                end += t.numel()
            flat = empty_float32(end)  # huge-page backed when large; gaps between tables are never read
            views = []
            for t, start in zip(tensors, starts):
                view = flat[start : start + t.numel()].view(t.shape)
                view.copy_(t.detach())
                views.append(view)
            self.flats.append(flat)
            self.offsets.append(np.array(starts, np.int64))
            self.views.append(views)

    def still_bound(self, tensors_per_kind: list[list[torch.Tensor]]) -> bool:
        for views, tensors in zip(self.views, tensors_per_kind):
            for v, t in zip(views, tensors):
                if t.data_ptr() != v.data_ptr() or t.shape != v.shape or t.device.type != "cpu":
                    return False
        return True


class FusedTableGroup(nn.Module):
    """Tables with ``optimizer`` set; ``forward(kjt) -> (out (B, D_out), feature names)``.

    ``state`` holds one :class:`TableOptimizerState` per table. ``backend`` is ``"auto"``
    (numba for float32 CPU tables, torch otherwise), ``"cpu"`` or ``"torch"``; the
    environment variable ``RECEMBED_FUSED_BACKEND`` sets the default.
    """

    def __init__(self, configs: list[EmbeddingBagConfig], tables: nn.ModuleDict, backend: str | None = None):
        super().__init__()
        self.configs = {c.name: c for c in configs}
        self.table_names = [c.name for c in configs]
        self.__dict__["_tables"] = tables  # owned by the collection; not registered twice
        device = tables[self.table_names[0]].weight.device
        self.state = TableDict({c.name: TableOptimizerState(c, device) for c in configs})
        self.backend = backend or os.environ.get("RECEMBED_FUSED_BACKEND", "auto")
        if self.backend not in BACKENDS:
            raise ConfigError(f"fused backend must be one of {BACKENDS}, got {self.backend!r}")
        self.features = [f for c in configs for f in c.feature_names]
        self._feature_table = {f: i for i, c in enumerate(configs) for f in c.feature_names}
        self._flat: _FlatStore | None = None
        self._plans: dict[tuple[str, ...], dict] = {}
        self._generator: torch.Generator | None = None

    @classmethod
    def build(cls, configs: list[EmbeddingBagConfig], tables: nn.ModuleDict) -> FusedTableGroup:
        return cls(configs, tables)

    def optimizer(self) -> FusedOptimizer:
        """A torch ``Optimizer`` view of the per-table learning rates, for LR schedulers."""
        return FusedOptimizer({n: self._tables[n].weight for n in self.table_names}, self.state)

    # ---- layout -------------------------------------------------------------------------
    def _cpu_indices(self) -> list[int]:
        if self.backend == "torch":
            return []
        out = []
        for i, name in enumerate(self.table_names):
            w = self._tables[name].weight
            if w.device.type == "cpu" and w.dtype == torch.float32:
                out.append(i)
            elif self.backend == "cpu":
                raise ConfigError(f"table '{name}': the numba backend needs float32 CPU weights, got {w.dtype} on {w.device}")
        return out

    def _kinds(self, cpu: list[int]) -> list[list[torch.Tensor]]:
        names = [self.table_names[i] for i in cpu]
        weights = [self._tables[n].weight.data for n in names]
        first = [self.state[n].elem_state()[0] for n in names if len(self.state[n].elem_names) > 0]
        second = [self.state[n].elem_state()[1] for n in names if len(self.state[n].elem_names) > 1]
        rowwise = [self.state[n].row_state()[0] for n in names if self.state[n].row_names]
        return [weights, first, second, rowwise]

    def _bind_flat(self, cpu: list[int]) -> _FlatStore:
        kinds = self._kinds(cpu)
        if self._flat is not None and self._flat.still_bound(kinds):
            return self._flat
        store = _FlatStore(kinds)
        names = [self.table_names[i] for i in cpu]
        for name, view in zip(names, store.views[0]):
            self._tables[name].weight.data = view
        it1, it2, itr = iter(store.views[1]), iter(store.views[2]), iter(store.views[3])
        for name in names:
            st = self.state[name]
            for k, buf in enumerate(st.elem_names):
                setattr(st, buf, next(it1) if k == 0 else next(it2))
            for buf in st.row_names:
                setattr(st, "row_" + buf, next(itr))
        self._flat = store
        self._plans.clear()
        return store

    def _table_arrays(self, cpu: list[int], store: _FlatStore) -> dict[str, np.ndarray]:
        n = len(cpu)
        arr = {k: np.full(n, -1, np.int64) for k in ("w_off", "dim", "pad", "code", "s1_off", "s2_off", "r_off", "row_bits")}
        c1 = c2 = cr = 0
        for j, i in enumerate(cpu):
            cfg = self.configs[self.table_names[i]]
            st = self.state[cfg.name]
            arr["w_off"][j] = store.offsets[0][j]
            arr["dim"][j] = cfg.embedding_dim
            arr["pad"][j] = -1 if cfg.padding_idx is None else cfg.padding_idx
            arr["code"][j] = st.code
            arr["row_bits"][j] = max(cfg.num_embeddings - 1, 0).bit_length()
            if len(st.elem_names) > 0:
                arr["s1_off"][j] = store.offsets[1][c1]
                c1 += 1
            if len(st.elem_names) > 1:
                arr["s2_off"][j] = store.offsets[2][c2]
                c2 += 1
            if st.row_names:
                arr["r_off"][j] = store.offsets[3][cr]
                cr += 1
        return arr

    def _plan(self, keys: tuple[str, ...], cpu: list[int], store: _FlatStore | None) -> dict:
        cache_key = keys + tuple(str(i) for i in cpu)
        plan = self._plans.get(cache_key)
        if plan is not None:
            return plan
        cols, col = {}, 0
        for f in self.features:
            cols[f] = col
            col += self.configs[self.table_names[self._feature_table[f]]].embedding_dim
        cpu_pos = {t: j for j, t in enumerate(cpu)}
        key_table = np.full(len(keys), -1, np.int64)
        key_col = np.zeros(len(keys), np.int64)
        key_pool = np.zeros(len(keys), np.int64)
        torch_keys = []
        check_table = np.full(len(keys), -1, np.int64)
        hashed_keys = []
        for k, key in enumerate(keys):
            if key not in self._feature_table:
                continue
            t = self._feature_table[key]
            if self.configs[self.table_names[t]].hash_size is None:
                check_table[k] = t
            else:
                hashed_keys.append((k, t))
            pool = _POOL_CODE[self.configs[self.table_names[t]].pooling]
            key_col[k], key_pool[k] = cols[key], pool
            if t in cpu_pos:
                key_table[k] = cpu_pos[t]
            else:
                torch_keys.append(KeySlot(k, t, cols[key], pool))
        plan = {"width": col, "key_table": key_table, "key_col": key_col, "key_pool": key_pool,
                "torch_keys": torch_keys, "check_table": check_table, "hashed_keys": hashed_keys,
                "num_rows": np.array([self.configs[n].num_embeddings for n in self.table_names], np.int64)}
        if cpu and store is not None:
            plan["tables"] = self._table_arrays(cpu, store)
            plan["max_dim"] = int(max(plan["tables"]["dim"]))
            served = [[k for k in range(len(keys)) if key_table[k] == j] for j in range(len(cpu))]
            plan["table_key_start"] = np.cumsum([0] + [len(ks) for ks in served]).astype(np.int64)
            plan["table_keys"] = np.array([k for ks in served for k in ks], np.int64)
        self._plans[cache_key] = plan
        return plan

    # ---- forward / backward -------------------------------------------------------------
    def _rows(self, features: KeyedJaggedTensor, plan: dict, check_table: np.ndarray | None = None) -> torch.Tensor:
        """Validated (and, where configured, hashed) int64 rows for the whole KJT.

        ``check_table`` (default ``plan["check_table"]``) says which keys to range-check here;
        keys that torch's ``embedding_bag`` reads are left to its own bounds check (see
        :meth:`forward`).
        """
        check_table = plan["check_table"] if check_table is None else check_table
        values = features.values()
        rows = values.to(torch.int64)
        batch = features.stride()
        if batch == 0:
            return rows
        offsets = features.offsets()
        if rows.device.type != "cpu":
            suspects = [k for k in range(len(check_table)) if check_table[k] >= 0]
        elif (check_table >= 0).any():
            # One parallel pass checks every plain key; only a failing key is re-checked in
            # torch, to raise the error that names the feature, table, id and range.
            bad = fused_cpu.find_bad_rows(rows.numpy(), offsets.numpy(), check_table, plan["num_rows"], batch)
            suspects = [k for k in range(len(bad)) if bad[k] >= 0]
        else:
            suspects = []
        suspects += [k for k, _ in plan["hashed_keys"]]
        keys = features.keys()
        return remap_suspect_keys(features, rows, suspects,
                                  lambda k: self.configs[self.table_names[self._feature_table[keys[k]]]])

    def forward(self, features: KeyedJaggedTensor) -> tuple[torch.Tensor, list[str]]:
        batch = features.stride()
        cpu = self._cpu_indices()
        store = self._bind_flat(cpu) if cpu else None
        plan = self._plan(tuple(features.keys()), cpu, store)
        weights = features.weights_or_none()
        if weights is not None:
            self._check_weights(features.keys(), weights)
        # Keys pooled by torch's embedding_bag are bounds-checked by it; when it refuses a
        # batch, the full check runs to raise the error that names feature, table and range.
        zero_pads = store is not None and _padding_rows_zero(plan, store)
        unchecked = _torch_checked_keys(plan, weights is not None, zero_pads) if store is not None else None
        rows = self._rows(features, plan, unchecked)
        recheck = None if unchecked is None else (lambda: self._rows(features, plan))
        ctx = FusedBatch(self, plan, store, cpu, rows, features.offsets(), weights, batch, recheck, zero_pads)
        out = ctx.forward()
        if torch.is_grad_enabled():
            anchor = torch.empty(0, requires_grad=True)
            out = _FusedLookup.apply(anchor, out, ctx)
        return out, self.features

    def _check_weights(self, keys: list[str], weights: torch.Tensor) -> None:
        if weights.requires_grad:
            raise ConfigError("per-sample weights that require grad are not supported by fused tables; "
                              "use optimizer=None for tables whose weights are learned")
        for key in keys:
            t = self._feature_table.get(key)
            if t is not None and self.configs[self.table_names[t]].pooling is PoolingType.MAX:
                raise ConfigError(f"table '{self.table_names[t]}': per-sample weights need SUM or MEAN pooling, "
                                  f"not MAX (feature '{key}')")

    def torch_slots(self) -> list[TableSlot]:
        slots = []
        for name in self.table_names:
            cfg, st = self.configs[name], self.state[name]
            slots.append(TableSlot(self._tables[name].weight.data, st.elem_state(), st.row_state(), st.code,
                                   -1 if cfg.padding_idx is None else cfg.padding_idx))
        return slots


def _torch_checked_keys(plan: dict, weighted: bool, zero_pads: bool) -> np.ndarray:
    """``plan["check_table"]`` without the keys torch's ``embedding_bag`` pools (it bounds-checks them)."""
    cached = plan.get(("unchecked", weighted, zero_pads))
    if cached is None:
        groups, _ = torch_pooled_groups(plan, weighted, zero_pads)
        cached = plan["check_table"].copy()
        for g in groups:
            cached[g["keys"]] = -1
        plan[("unchecked", weighted, zero_pads)] = cached
    return cached


def _padding_rows_zero(plan: dict, store: _FlatStore) -> bool:
    """Whether every CPU table's padding row (if any) holds zeros now (a user may have written one)."""
    pads = plan["tables"]["pad"]
    return all(int(p) < 0 or not bool(store.views[0][j][int(p)].any()) for j, p in enumerate(pads))


class _FusedLookup(torch.autograd.Function):
    """Passes pooled values through; its backward applies the fused update."""

    @staticmethod
    def forward(ctx, anchor: torch.Tensor, out: torch.Tensor, batch: FusedBatch) -> torch.Tensor:
        ctx.batch = batch
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.batch is None:
            raise RuntimeError("fused tables were already updated by this graph's backward; it cannot run twice")
        ctx.batch.backward(grad)
        ctx.batch = None  # free the batch's arrays; a second backward is an error, as in torch
        return None, None, None
