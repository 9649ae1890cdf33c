"""The sharded stand-in of an :class:`~recembed.tables.EmbeddingCollection` (one vector per id).

A sequence lookup is a pooled lookup in which every id is its own bag: with the N ids of a
rank's batch laid out as N one-id bags (feature k's bags at its own positions, empty
elsewhere), a :class:`ShardedEmbeddingBagCollection` over SUM-pooled copies of the tables
returns each id's vector in row ``position`` of its feature's columns. So every sharding
type, the fused optimizers and the checkpoints work unchanged.

The price: the exchanged pooled block is ``(N, sum of all features' dims)`` per rank, of
which each row uses one feature's columns, so the traffic is about F times that of a
dedicated sequence exchange for F sequence features of equal width.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import torch
from torch import nn

from recembed.distributed.comm import Comm
from recembed.distributed.plan_types import ShardingSpec
from recembed.distributed.sharded_collection import ShardedEmbeddingBagCollection
from recembed.distributed.table_state import table_is_plain, table_tensors
from recembed.errors import ConfigError
from recembed.sparse import JaggedTensor, KeyedJaggedTensor
from recembed.tables import (
    EmbeddingBagCollection,
    EmbeddingBagConfig,
    EmbeddingCollection,
    EmbeddingConfig,
)
from recembed.tables.collection import iter_feature_slices
from recembed.tables.config import PoolingType

__all__ = ["ShardedEmbeddingCollection", "as_bag_collection", "as_sequence_collection"]


def _bag_config(cfg: EmbeddingConfig) -> EmbeddingBagConfig:
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "pooling"}
    fields.update(init="zeros", init_range=None)
    return EmbeddingBagConfig(**fields, pooling=PoolingType.SUM)


def _copy_tables(source, target, names) -> None:
    with torch.no_grad():
        for name in names:
            src = table_tensors(source, name)
            for key, tensor in table_tensors(target, name).items():
                tensor.copy_(src[key])


def as_bag_collection(collection: EmbeddingCollection) -> EmbeddingBagCollection:
    """A SUM-pooled collection with the same tables (weights and fused state copied)."""
    configs = collection.embedding_configs()
    for cfg in configs:
        if not table_is_plain(cfg):
            raise ConfigError(f"table '{cfg.name}': compressed or dynamic sequence tables are not sharded")
    bags = EmbeddingBagCollection([_bag_config(c) for c in configs])
    _copy_tables(collection, bags, [c.name for c in configs])
    return bags


def as_sequence_collection(bags: EmbeddingBagCollection, configs: list[EmbeddingConfig]) -> EmbeddingCollection:
    """The inverse of :func:`as_bag_collection`: an EmbeddingCollection of ``configs`` holding ``bags``' tables."""
    sequence = EmbeddingCollection([dataclasses.replace(c, init="zeros", init_range=None) for c in configs])
    _copy_tables(bags, sequence, [c.name for c in configs])
    return sequence


class ShardedEmbeddingCollection(nn.Module):
    """``forward(KJT stride B_r) -> dict[feature, JaggedTensor]`` with values ``(N_feature, dim)``,
    equal to the unsharded EmbeddingCollection's output for this rank's batch.

    Args are those of :class:`ShardedEmbeddingBagCollection`; ``inner`` is the sharded
    pooled collection doing the work.
    """

    def __init__(self, collection: EmbeddingCollection, specs: Mapping[str, ShardingSpec],
                 comm: Comm | None = None, loss_reduction: str = "mean") -> None:
        super().__init__()
        if not isinstance(collection, EmbeddingCollection):
            raise ConfigError(f"ShardedEmbeddingCollection takes an EmbeddingCollection, got {type(collection).__name__}")
        self._configs = collection.embedding_configs()
        self.inner = ShardedEmbeddingBagCollection(as_bag_collection(collection), specs, comm, loss_reduction)

    def embedding_configs(self) -> list[EmbeddingConfig]:
        return list(self._configs)

    def feature_names(self) -> list[str]:
        return self.inner.feature_names()

    @property
    def sharding_specs(self) -> dict[str, ShardingSpec]:
        return self.inner.sharding_specs

    def fused_optimizer(self):
        return self.inner.fused_optimizer()

    def forward(self, features: KeyedJaggedTensor) -> dict[str, JaggedTensor]:
        self.inner._check_keys(features)
        pieces = list(iter_feature_slices(features))
        sizes = [p.ids.numel() for p in pieces]
        total = sum(sizes)
        # Feature k's ids become one-id bags at positions [start_k, start_k + n_k) of a batch of `total`.
        lengths = torch.zeros(len(pieces), total, dtype=torch.int64, device=features.values().device)
        start = 0
        for k, n in enumerate(sizes):
            lengths[k, start:start + n] = 1
            start += n
        bags = KeyedJaggedTensor(keys=[p.name for p in pieces], values=torch.cat([p.ids for p in pieces]),
                                 lengths=lengths.view(-1), stride=total)
        pooled = self.inner(bags)
        out, start = {}, 0
        for piece, n in zip(pieces, sizes):
            vectors = pooled[piece.name][start:start + n]
            out[piece.name] = JaggedTensor.from_embeddings(vectors, offsets=piece.offsets, weights=piece.weights)
            start += n
        return out
