"""Sharded embedding tables over torch.distributed: planner, sharded collections, resharding.

- :func:`shard` / :func:`shard_model` - swap a model's collections for
  :class:`ShardedEmbeddingBagCollection` / :class:`ShardedEmbeddingCollection` (table-wise,
  row-wise, column-wise, data-parallel); :func:`unshard`, :func:`unsharded_copy` gather them back.
- :func:`plan` - choose sharding types and ranks under per-rank memory limits;
  :class:`ShardingPlan`, :class:`ShardingSpec`, :class:`ShardingType`.
- :func:`save_sharded`, :func:`load_sharded`, :func:`load_unsharded`, :func:`load_extra` -
  checkpoints that load at any world size, or into a plain collection.
- :func:`launch`, :func:`init_from_env` - start ranks on this machine, or join a torchrun job.
"""

from recembed.distributed.batching import kjt_rows, local_batch, rank_slice
from recembed.distributed.checkpoint import (
    load_extra,
    load_sharded,
    load_unsharded,
    read_manifest,
    save_sharded,
)
from recembed.distributed.comm import Comm
from recembed.distributed.launch import (
    DEFAULT_TIMEOUT_S,
    RankInfo,
    free_port,
    init_from_env,
    launch,
)
from recembed.distributed.model_sharding import (
    gather_collection,
    shard,
    shard_model,
    unshard,
    unsharded_copy,
)
from recembed.distributed.plan_types import (
    Shard,
    ShardingPlan,
    ShardingSpec,
    ShardingType,
    shard_layout,
)
from recembed.distributed.planner import CostModel, plan
from recembed.distributed.sharded_collection import ShardedEmbeddingBagCollection
from recembed.distributed.sharded_sequence import ShardedEmbeddingCollection

__all__ = [
    "Comm",
    "CostModel",
    "DEFAULT_TIMEOUT_S",
    "RankInfo",
    "Shard",
    "ShardedEmbeddingBagCollection",
    "ShardedEmbeddingCollection",
    "ShardingPlan",
    "ShardingSpec",
    "ShardingType",
    "free_port",
    "gather_collection",
    "init_from_env",
    "kjt_rows",
    "launch",
    "load_extra",
    "load_sharded",
    "local_batch",
    "load_unsharded",
    "plan",
    "rank_slice",
    "read_manifest",
    "save_sharded",
    "shard",
    "shard_layout",
    "shard_model",
    "unshard",
    "unsharded_copy",
]
