"""The planner: per table a sharding type and ranks, minimising the busiest rank's cost.

Cost model (per training step, per rank; see docs/distributed.md for the derivation):
a rank pays for the bytes it sends and receives over the network, and for the embedding
bytes it reads and writes in memory. For a table with F features of width D, local batch
B, and L ids per local batch, every (requesting rank s, owning rank d != s) pair moves

===============  ======================  ==========================  =================
type             ids s -> d (bytes)      pooled d -> s + grads back  owner lookups
===============  ======================  ==========================  =================
table-wise       8 (L + B F)             2 * 4 B F D                 W L rows x D
row-wise (m)     8 (L / m + B F)         2 * 4 B F D                 W L / m rows x D
column-wise (m)  8 (L + B F)             2 * 4 B F D / m             W L rows x D / m
data-parallel    8 (L + B F)             4 B F D (grads only)        W L rows x D
===============  ======================  ==========================  =================

Memory per shard is its weights plus fused optimizer state
(:data:`recembed.optim.rules.STATE_LAYOUT`, float32). Tables are placed largest first; for
each, every allowed candidate that fits in memory (table-wise on each rank, row-wise over
all ranks, column-wise over the 2, 4, ... least-loaded ranks, data-parallel) is scored,
in one pass by the largest per-rank cost it leads to ("balance") and in another by the
total cost ("thrift"); the plan whose busiest rank is cheaper wins.

Example:
    >>> tables = [EmbeddingBagConfig(name=f"t{i}", num_embeddings=10_000 * (i + 1), embedding_dim=16)
    ...           for i in range(4)]
    >>> p = plan(tables, world_size=2, per_rank_memory_bytes=4 << 20, batch_size=256)
    >>> sorted(p.specs)
    ['t0', 't1', 't2', 't3']
    >>> print(p.table())                                    # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from torch import nn

from recembed.distributed.layout import check_spec, shard_state_bytes
from recembed.distributed.plan_types import (
    ShardingPlan,
    ShardingSpec,
    ShardingType,
    shard_layout,
)
from recembed.distributed.table_state import collection_configs
from recembed.errors import ConfigError, UnknownKeyError
from recembed.tables.config import BaseEmbeddingConfig, PoolingType

__all__ = ["CostModel", "plan", "tables_of", "candidate_costs"]


@dataclass(frozen=True)
class CostModel:
    """Bandwidths that turn bytes into seconds.

    Defaults: 10 Gbit/s network per rank (a common data-centre NIC; NVLink is ~100x more)
    and 10 GB/s of random-row memory traffic per rank.
    """

    network_bytes_per_s: float = 1.25e9
    memory_bytes_per_s: float = 1e10
    id_bytes: int = 8
    value_bytes: int = 4


def tables_of(model_or_tables: nn.Module | Sequence[BaseEmbeddingConfig]) -> dict[str, BaseEmbeddingConfig]:
    """Plan names -> configs, from a model (its collections, see :func:`shard`) or a list of configs."""
    if isinstance(model_or_tables, nn.Module):
        from recembed.distributed.model_sharding import (
            ambiguous_table_names,
            find_collections,
            plan_key,
        )

        collections = find_collections(model_or_tables)
        ambiguous = ambiguous_table_names(collections)
        return {plan_key(path, cfg.name, ambiguous): cfg for path, c in collections for cfg in collection_configs(c)}
    out: dict[str, BaseEmbeddingConfig] = {}
    for cfg in model_or_tables:
        if not isinstance(cfg, BaseEmbeddingConfig):
            raise ConfigError(f"plan: tables must be EmbeddingBagConfig or EmbeddingConfig entries, "
                              f"got {type(cfg).__name__}")
        if cfg.name in out:
            raise ConfigError(f"plan: two tables are named '{cfg.name}'")
        out[cfg.name] = cfg
    return out


def candidate_costs(cfg: BaseEmbeddingConfig, spec: ShardingSpec, world_size: int, batch_size: int,
                    ids_per_batch: float, model: CostModel = CostModel()) -> tuple[list[float], list[float]]:
    """Per rank, the (memory bytes, seconds per step) that placing ``cfg`` by ``spec`` adds."""
    w, n_ids, ib, vb = world_size, ids_per_batch, model.id_bytes, model.value_bytes
    # Vectors returned per rank: one per bag (B F), or one per id for a sequence (unpooled) table.
    bags = n_ids if cfg.pooling is PoolingType.NONE else batch_size * len(cfg.feature_names)
    shards = shard_layout(spec, cfg.num_embeddings, cfg.embedding_dim, world_size)
    memory = [0.0] * w
    net = [0.0] * w
    lookup = [0.0] * w
    state_factor = 2 + 2 * _state_per_element(cfg)  # read + write of the row and its state
    m = len(shards)
    for shard in shards:
        d = shard.rank
        memory[d] += shard_state_bytes(cfg, shard.num_rows, shard.num_cols)
        if spec.type is ShardingType.ROW_WISE:
            ids_in, out_cols, rows_looked = n_ids / m, cfg.embedding_dim, w * n_ids / m
        elif spec.type is ShardingType.COLUMN_WISE:
            ids_in, out_cols, rows_looked = n_ids, shard.num_cols, w * n_ids
        else:
            ids_in, out_cols, rows_looked = n_ids, cfg.embedding_dim, w * n_ids
        lookup[d] += rows_looked * shard.num_cols * vb * state_factor
        per_pair = ib * (ids_in + bags)
        per_pair += vb * bags * out_cols * (1 if spec.type is ShardingType.DATA_PARALLEL else 2)
        for s in range(w):
            if s != d:
                net[s] += per_pair
                net[d] += per_pair
    cost = [net[r] / model.network_bytes_per_s + lookup[r] / model.memory_bytes_per_s for r in range(w)]
    return memory, cost


def _state_per_element(cfg: BaseEmbeddingConfig) -> float:
    from recembed.optim.rules import STATE_LAYOUT

    if cfg.optimizer is None:
        return 0.0
    elem, row = STATE_LAYOUT[cfg.optimizer]
    return len(elem) + len(row) / cfg.embedding_dim


def _candidates(cfg: BaseEmbeddingConfig, world_size: int, cost: list[float]) -> list[ShardingSpec]:
    order = sorted(range(world_size), key=lambda r: (cost[r], r))  # least loaded first
    everyone = tuple(range(world_size))
    if cfg.num_shards > 1:
        if cfg.num_shards > world_size:
            raise ConfigError(f"table '{cfg.name}': num_shards={cfg.num_shards} exceeds the world size {world_size}")
        chosen = tuple(sorted(order[:cfg.num_shards]))
        out = [ShardingSpec(ShardingType.ROW_WISE, chosen), ShardingSpec(ShardingType.COLUMN_WISE, chosen)]
    else:
        out = [ShardingSpec(ShardingType.TABLE_WISE, (r,)) for r in range(world_size)]
        if world_size > 1:
            out.append(ShardingSpec(ShardingType.ROW_WISE, everyone))
            out.append(ShardingSpec(ShardingType.DATA_PARALLEL))
            m = 2
            while m <= world_size:
                out.append(ShardingSpec(ShardingType.COLUMN_WISE, tuple(sorted(order[:m]))))
                m *= 2
    valid = []
    for spec in out:
        try:
            check_spec(cfg, spec, world_size)
            shard_layout(spec, cfg.num_embeddings, cfg.embedding_dim, world_size)
        except ConfigError:
            continue
        valid.append(spec)
    return valid


def plan(tables: nn.Module | Sequence[BaseEmbeddingConfig], world_size: int,
         per_rank_memory_bytes: float | Sequence[float] | None = None,
         expected_ids_per_batch: Mapping[str, float] | None = None, batch_size: int = 512,
         cost_model: CostModel | None = None) -> ShardingPlan:
    """Choose each table's sharding type and ranks.

    Args:
        tables: a model (every EmbeddingBagCollection / EmbeddingCollection in it) or a list of configs.
        world_size: number of ranks.
        per_rank_memory_bytes: memory for tables + optimizer state on each rank (one number
            for all, or one per rank); None means no limit.
        expected_ids_per_batch: per table name, ids looked up per *local* batch over all its
            features (default: ``batch_size`` per feature, i.e. one id per bag).
        batch_size: samples per rank per step.
        cost_model: bandwidths; see :class:`CostModel`.

    Returns:
        A :class:`ShardingPlan` with per-table estimates (``plan.table()`` prints it).

    Raises:
        ConfigError: a table cannot be placed within the memory limits (the message says how
            much it needs and how much the emptiest rank has left).
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ConfigError(f"plan: world_size must be an int >= 1, got {world_size!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"plan: batch_size must be an int >= 1, got {batch_size!r}")
    configs = tables_of(tables)
    model = cost_model or CostModel()
    limits = _limits(per_rank_memory_bytes, world_size)
    ids = dict(expected_ids_per_batch or {})
    for name in ids:
        if name not in configs:
            raise UnknownKeyError(f"plan: expected_ids_per_batch names unknown table '{name}' (tables: {sorted(configs)})")
    ordered = sorted(configs, key=lambda n: -shard_state_bytes(configs[n], configs[n].num_embeddings,
                                                                configs[n].embedding_dim))
    n_ids = {n: float(ids.get(n, batch_size * len(configs[n].feature_names))) for n in configs}
    # Two greedy passes, then the better whole plan: "balance" scores each placement by the busiest
    # rank it leads to, "thrift" by the total work; each alone can be far from the best
    # (e.g. balance splits every small table column-wise when one table per rank is cheaper).
    results, errors = [], []
    for policy in ("balance", "thrift"):
        try:
            results.append(_greedy(configs, ordered, n_ids, world_size, batch_size, limits, model, policy))
        except ConfigError as exc:
            errors.append(exc)
    if not results:
        raise errors[0]
    specs, estimates, used_mem, used_cost = min(results, key=lambda r: (max(r[3]), sum(r[3])))
    return ShardingPlan({n: specs[n] for n in configs}, world_size, {n: estimates[n] for n in configs},
                        used_mem, used_cost)


def _greedy(configs, ordered, n_ids, world_size, batch_size, limits, model, policy):
    used_mem, used_cost = [0.0] * world_size, [0.0] * world_size
    specs: dict[str, ShardingSpec] = {}
    estimates: dict[str, dict[str, float]] = {}
    for name in ordered:
        cfg = configs[name]
        best = None
        for spec in _candidates(cfg, world_size, used_cost):
            mem, cost = candidate_costs(cfg, spec, world_size, batch_size, n_ids[name], model)
            new_mem = [a + b for a, b in zip(used_mem, mem)]
            if any(m > lim for m, lim in zip(new_mem, limits)):
                continue
            new_cost = [a + b for a, b in zip(used_cost, cost)]
            # Rounded to the nanosecond: sums taken in another order must tie, so the next key decides.
            busiest, total = round(max(new_cost), 9), round(sum(new_cost), 9)
            score = (busiest, total, max(new_mem)) if policy == "balance" else (total, busiest, max(new_mem))
            if best is None or score < best[0]:
                best = (score, spec, mem, cost)
        if best is None:
            _raise_no_fit(cfg, name, world_size, used_mem, limits)
        _, spec, mem, cost = best
        used_mem = [a + b for a, b in zip(used_mem, mem)]
        used_cost = [a + b for a, b in zip(used_cost, cost)]
        specs[name] = spec
        estimates[name] = {"bytes": float(sum(mem)), "lookups": n_ids[name] * world_size}
    return specs, estimates, used_mem, used_cost


def _limits(per_rank: float | Sequence[float] | None, world_size: int) -> list[float]:
    if per_rank is None:
        return [math.inf] * world_size
    if isinstance(per_rank, (int, float)) and not isinstance(per_rank, bool):
        values = [float(per_rank)] * world_size
    else:
        values = [float(v) for v in per_rank]
        if len(values) != world_size:
            raise ConfigError(f"plan: per_rank_memory_bytes has {len(values)} entries for {world_size} ranks")
    if any(v <= 0 for v in values):
        raise ConfigError(f"plan: per_rank_memory_bytes must be > 0, got {values}")
    return values


def _raise_no_fit(cfg, name, world_size, used, limits) -> None:
    need = shard_state_bytes(cfg, cfg.num_embeddings, cfg.embedding_dim)
    free = max(lim - u for lim, u in zip(limits, used))
    raise ConfigError(
        f"plan: table '{name}' ({cfg.num_embeddings} x {cfg.embedding_dim}, {need:,} bytes with optimizer state) "
        f"does not fit: split over all {world_size} ranks it needs about {need / world_size:,.0f} bytes per rank, "
        f"and the emptiest rank has {free:,.0f} bytes left of its limit; add ranks or memory, or shrink the table"
    )
