"""Where every shard of a collection lives, and how the pieces map back to output columns.

Built once from the tables' configs and the plan, identically on every rank, so each rank
knows what every other rank holds without asking. Rank ``d`` keeps one local
``EmbeddingBagCollection`` of its shards: first its table-wise, row-wise and column-wise
shards (in table-config order), then the data-parallel replicas. Its output columns in that
order are what it sends back: the first ``sent_width[d]`` columns go to the requesting
ranks, the last ``dp_width`` stay on the rank (data-parallel lookups are local).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import torch

from recembed.distributed.plan_types import (
    Shard,
    ShardingSpec,
    ShardingType,
    shard_layout,
)
from recembed.distributed.table_state import table_is_plain
from recembed.errors import ConfigError
from recembed.optim.rules import STATE_LAYOUT
from recembed.tables.config import (
    BaseEmbeddingConfig,
    EmbeddingBagConfig,
    OptimizerType,
    PoolingType,
)

__all__ = ["LocalEntry", "CollectionLayout", "check_spec", "shard_config", "shard_state_bytes"]

#: Optimizers whose update couples a row's columns (a per-row statistic or norm); splitting the
#: columns over ranks would change their result, so column-wise sharding refuses them.
ROW_COUPLED = (OptimizerType.ROWWISE_ADAGRAD, OptimizerType.ROWWISE_ADAM, OptimizerType.LAMB)


def check_spec(cfg: BaseEmbeddingConfig, spec: ShardingSpec, world_size: int) -> None:
    """Raise ConfigError if ``spec`` cannot shard ``cfg`` exactly; the message says why and what works."""
    t, where = spec.type, f"table '{cfg.name}'"
    if not table_is_plain(cfg) and t not in (ShardingType.TABLE_WISE, ShardingType.DATA_PARALLEL):
        raise ConfigError(f"{where}: a compressed or dynamic table can be table_wise or data_parallel, not {t.value}")
    if t is ShardingType.ROW_WISE:
        if cfg.pooling is PoolingType.MAX:
            raise ConfigError(f"{where}: row_wise sharding adds partial sums, which MAX pooling cannot use; "
                              "use table_wise, column_wise or data_parallel")
        if len(spec.ranks) > cfg.num_embeddings:
            raise ConfigError(f"{where}: row_wise over {len(spec.ranks)} ranks needs at least that many rows "
                              f"(it has {cfg.num_embeddings})")
    if t is ShardingType.COLUMN_WISE:
        if cfg.optimizer in ROW_COUPLED:
            raise ConfigError(f"{where}: column_wise sharding would split the per-row statistics of "
                              f"optimizer={cfg.optimizer.name}; use SGD, ADAGRAD or ADAM, or another sharding type")
        if cfg.max_norm is not None:
            raise ConfigError(f"{where}: max_norm renormalises whole rows, which column_wise sharding splits")
        if len(spec.ranks) > cfg.embedding_dim:
            raise ConfigError(f"{where}: column_wise over {len(spec.ranks)} ranks needs at least that many "
                              f"dimensions (embedding_dim={cfg.embedding_dim})")
    if t is ShardingType.DATA_PARALLEL:
        if spec.ranks and sorted(spec.ranks) != list(range(world_size)):
            raise ConfigError(f"{where}: data_parallel replicates on every rank; give no ranks (or all "
                              f"{world_size}), got {spec.ranks}")
        if cfg.optimizer is not None and cfg.dtype.value != "float32":
            raise ConfigError(f"{where}: data_parallel replicas of a {cfg.dtype.value} table with a fused optimizer "
                              "would drift apart (stochastic rounding differs per rank); use float32 or table_wise")


@dataclass(frozen=True)
class LocalEntry:
    """One feature served by one shard on a rank, in that rank's local key order."""

    feature: str
    table: str
    kind: ShardingType
    shard: Shard


def shard_config(cfg: EmbeddingBagConfig, kind: ShardingType, shard: Shard) -> EmbeddingBagConfig:
    """The config of the local table holding ``shard`` (ids arrive already mapped to local rows).

    Row-wise shards pool with SUM (the requesting rank divides for MEAN) and drop
    padding (padding ids are never routed). Weights start at zero; the caller copies them in.
    """
    if not table_is_plain(cfg):
        return cfg
    fields: dict = {"init": "zeros", "init_range": None, "hash_size": None, "num_shards": 1}
    if kind is ShardingType.ROW_WISE:
        fields.update(num_embeddings=shard.num_rows, pooling=PoolingType.SUM, padding_idx=None)
    elif kind is ShardingType.COLUMN_WISE:
        fields.update(embedding_dim=shard.num_cols)
    return replace(cfg, **fields)


class CollectionLayout:
    """The shards of one collection's tables over ``world_size`` ranks.

    Attributes:
        configs: the original table configs, by name, in collection order.
        shards: per table, its shards in shard order.
        entries: per rank, its :class:`LocalEntry` list (sent shards first, then replicas).
        sent_width: per rank, the output columns it sends back to requesters.
        dp_width: columns of the data-parallel replicas (the same on every rank).
        output_keys, output_dims: the collection's output features and widths.
    """

    def __init__(self, configs: Sequence[EmbeddingBagConfig], specs: Mapping[str, ShardingSpec], world_size: int):
        self.world_size = world_size
        self.configs = {c.name: c for c in configs}
        self.specs = dict(specs)
        for cfg in configs:
            check_spec(cfg, self.specs[cfg.name], world_size)
        self.shards = {c.name: shard_layout(self.specs[c.name], c.num_embeddings, c.embedding_dim, world_size)
                       for c in configs}
        self.table_of = {f: c.name for c in configs for f in c.feature_names}
        self.output_keys = [f for c in configs for f in c.feature_names]
        self.output_dims = [c.embedding_dim for c in configs for _ in c.feature_names]
        starts = torch.tensor([0] + self.output_dims).cumsum(0).tolist()
        self.feature_col = dict(zip(self.output_keys, starts))
        self.output_width = starts[-1]
        self.entries: list[list[LocalEntry]] = []
        self.local_tables: list[list[tuple[str, ShardingType, Shard]]] = []
        for rank in range(world_size):
            tables = []
            for want_dp in (False, True):
                for cfg in configs:
                    kind = self.specs[cfg.name].type
                    if (kind is ShardingType.DATA_PARALLEL) != want_dp:
                        continue
                    for shard in self.shards[cfg.name]:
                        if shard.rank == rank:
                            tables.append((cfg.name, kind, shard))
            self.local_tables.append(tables)
            self.entries.append([LocalEntry(f, name, kind, shard) for name, kind, shard in tables
                                 for f in self.configs[name].feature_names])
        self.sent_width = [sum(e.shard.num_cols for e in ents if e.kind is not ShardingType.DATA_PARALLEL)
                           for ents in self.entries]
        dp = [e for e in self.entries[0] if e.kind is ShardingType.DATA_PARALLEL]
        self.dp_width = sum(e.shard.num_cols for e in dp)
        self._build_column_maps(dp)

    def _build_column_maps(self, dp: list[LocalEntry]) -> None:
        # received column j (ranks' sent columns side by side, rank order) -> output column
        cols = []
        for ents in self.entries:
            for e in ents:
                if e.kind is ShardingType.DATA_PARALLEL:
                    continue
                base = self.feature_col[e.feature] + e.shard.cols[0]
                cols.extend(range(base, base + e.shard.num_cols))
        self.received_to_output = torch.tensor(cols, dtype=torch.int64)
        dp_cols = []
        for e in dp:
            base = self.feature_col[e.feature]
            dp_cols.extend(range(base, base + e.shard.num_cols))
        self.dp_to_output = torch.tensor(dp_cols, dtype=torch.int64)
        # Output features whose pooled value is a sum of row-wise partials divided by the bag size.
        self.mean_row_wise = [f for c in self.configs.values() if self.specs[c.name].type is ShardingType.ROW_WISE
                              and c.pooling is PoolingType.MEAN for f in c.feature_names]

    def local_configs(self, rank: int) -> list[EmbeddingBagConfig]:
        """Configs of the local collection on ``rank``, in its entry order."""
        return [shard_config(self.configs[name], kind, shard) for name, kind, shard in self.local_tables[rank]]

    def shard_bytes(self, name: str, shard: Shard) -> int:
        """Bytes of one shard's weights plus its fused optimizer state."""
        cfg = self.configs[name]
        return shard_state_bytes(cfg, shard.num_rows, shard.num_cols)


def shard_state_bytes(cfg: BaseEmbeddingConfig, rows: int, cols: int) -> int:
    """Weights (in the table's dtype) plus optimizer state (float32, per STATE_LAYOUT) of a rows x cols block."""
    weight = rows * cols * torch.empty((), dtype=cfg.torch_dtype).element_size()
    if cfg.optimizer is None:
        return weight
    elem, row = STATE_LAYOUT[cfg.optimizer]
    return weight + 4 * (len(elem) * rows * cols + len(row) * rows)
