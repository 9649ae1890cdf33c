"""Collections of tables keyed by name, fed by a KeyedJaggedTensor.

``EmbeddingBagCollection`` pools each feature's bags into one vector per sample and
returns a :class:`KeyedTensor`; ``EmbeddingCollection`` returns one vector per id as a
``dict[str, JaggedTensor]``. Several features may share one table. Tables with a fused
``optimizer`` are looked up and updated together (see :mod:`recembed.tables.fused_group`);
the others go through the plain-autograd seam, so any torch optimizer trains them.

Example:
    >>> ebc = EmbeddingBagCollection([
    ...     EmbeddingBagConfig(name="t_product", num_embeddings=10, embedding_dim=64, feature_names=["product"]),
    ...     EmbeddingBagConfig(name="t_user", num_embeddings=10, embedding_dim=64, feature_names=["user"]),
    ... ])
    >>> kjt = KeyedJaggedTensor.from_lists({"product": [[1, 2, 1], [5]], "user": [[2, 3], [4, 1]]})
    >>> ebc(kjt).values().shape
    torch.Size([2, 128])
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import torch
from torch import nn

from recembed.errors import ConfigError, UnknownKeyError
from recembed.sparse import JaggedTensor, KeyedJaggedTensor, KeyedTensor
from dataclasses import fields as dataclass_fields

from recembed.tables.config import BaseEmbeddingConfig, EmbeddingBagConfig, EmbeddingConfig, PoolingType
from recembed.optim.fused_optimizer import FusedOptimizer
from recembed.tables.fused_group import FusedTableGroup
from recembed.tables.ids import ids_to_rows
from recembed.kernels.lookup import sequence_lookup
from recembed.tables.single import Embedding, EmbeddingBag
from recembed.tables.table_dict import TableDict

__all__ = ["EmbeddingBagCollection", "EmbeddingCollection", "FeatureSlice", "iter_feature_slices"]


class FeatureSlice:
    """One feature's part of a KeyedJaggedTensor: flat ids (N,), offsets (B + 1,), weights (N,) or None."""

    __slots__ = ("name", "ids", "offsets", "weights")

    def __init__(self, name: str, ids: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None):
        self.name, self.ids, self.offsets, self.weights = name, ids, offsets, weights


def iter_feature_slices(features: KeyedJaggedTensor) -> Iterator[FeatureSlice]:
    """Yield each key's ids, local offsets and weights without copying the values."""
    stride = features.stride()
    offsets = features.offsets()
    values = features.values()
    weights = features.weights_or_none()
    for k, key in enumerate(features.keys()):
        local = offsets[k * stride : (k + 1) * stride + 1]
        start, end = int(local[0]), int(local[-1])
        yield FeatureSlice(
            key, values[start:end], local - start, None if weights is None else weights[start:end]
        )


def _check_tables(tables: Sequence[BaseEmbeddingConfig], kind: type, collection: str) -> dict[str, str]:
    """Validate a collection's configs; returns feature name -> table name."""
    if isinstance(tables, BaseEmbeddingConfig) or not isinstance(tables, (list, tuple)) or not tables:
        raise ConfigError(f"{collection} needs a non-empty list of {kind.__name__}, got {tables!r}")
    feature_to_table: dict[str, str] = {}
    names: set[str] = set()
    for cfg in tables:
        if not isinstance(cfg, kind):
            raise ConfigError(f"{collection} takes {kind.__name__} entries, got {type(cfg).__name__}")
        if cfg.name in names:
            raise ConfigError(f"{collection}: two tables are named '{cfg.name}'")
        names.add(cfg.name)
        for feature in cfg.feature_names:
            if feature in feature_to_table:
                raise ConfigError(
                    f"{collection}: feature '{feature}' is served by both table '{feature_to_table[feature]}' "
                    f"and table '{cfg.name}'; a feature maps to one table"
                )
            feature_to_table[feature] = cfg.name
    return feature_to_table


def _check_keys(features: KeyedJaggedTensor, feature_to_table: Mapping[str, str], collection: str) -> None:
    if not isinstance(features, KeyedJaggedTensor):
        raise ConfigError(f"{collection} takes a KeyedJaggedTensor, got {type(features).__name__}")
    served = list(feature_to_table)
    present = set(features.keys())
    for key in features.keys():
        if key not in feature_to_table:
            raise UnknownKeyError(f"{collection}: unknown feature '{key}'; no table serves it (served: {served})")
    for feature in served:
        if feature not in present:
            raise UnknownKeyError(
                f"{collection}: feature '{feature}' (table '{feature_to_table[feature]}') is missing from the batch "
                f"(batch keys: {list(features.keys())})"
            )


class EmbeddingBagCollection(nn.Module):
    """Pooled tables keyed by name: ``forward(KeyedJaggedTensor) -> KeyedTensor``.

    The output's keys are the features in table-config order; ``values()`` is
    ``(batch, sum of the features' dims)`` in float32 (low-precision tables are cast up).

    Args:
        tables: one ``EmbeddingBagConfig`` per table.
        device: where the weights live.
    """

    def __init__(self, tables: Sequence[EmbeddingBagConfig], device: torch.device | str | None = None) -> None:
        super().__init__()
        self._feature_to_table = _check_tables(tables, EmbeddingBagConfig, "EmbeddingBagCollection")
        self._configs = list(tables)
        self.embedding_bags = TableDict({cfg.name: _table_module(cfg, device) for cfg in tables})
        self._output_keys = [f for cfg in tables for f in cfg.feature_names]
        self._output_dims = [cfg.embedding_dim for cfg in tables for _ in cfg.feature_names]
        # Compressed tables train their own rows (fused or not); the group takes the plain ones.
        fused = [cfg for cfg in tables if cfg.optimizer is not None and _builder(cfg) is None]
        self.fused = FusedTableGroup.build(fused, self.embedding_bags) if fused else None

    @classmethod
    def from_pretrained(
        cls, tables: Sequence[EmbeddingBagConfig], weights: Mapping[str, torch.Tensor], freeze: bool = True
    ) -> "EmbeddingBagCollection":
        """A collection whose named tables start from ``weights[name]`` (num_embeddings, dim)."""
        return cls(_with_pretrained(tables, weights, freeze))

    def embedding_bag_configs(self) -> list[EmbeddingBagConfig]:
        return list(self._configs)

    def feature_names(self) -> list[str]:
        return list(self._output_keys)

    def fused_optimizer(self):
        """A ``torch.optim.Optimizer`` over the fused tables' learning rates (for LR schedulers),
        or None when no table has a fused optimizer. Its ``step()`` does nothing: the update
        happens in ``loss.backward()``."""
        return _fused_optimizer(self.fused, self.embedding_bags)

    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        """Pool every feature: ``features`` with stride B -> KeyedTensor (B, sum of dims)."""
        _check_keys(features, self._feature_to_table, "EmbeddingBagCollection")
        fused_values = None
        if self.fused is not None:
            fused_values, fused_names = self.fused(features)
            if fused_names == self._output_keys:  # every table fused: the kernel's output is the result
                return KeyedTensor(keys=list(self._output_keys), length_per_key=list(self._output_dims),
                                   values=fused_values)
        pooled: dict[str, torch.Tensor] = {}
        if fused_values is not None:
            widths = [self.embedding_bags[self._feature_to_table[f]].embedding_dim for f in fused_names]
            pooled.update(zip(fused_names, torch.split(fused_values, widths, dim=1)))
        batched: dict[type, list] = {}  # table kinds that look up several tables at once
        for piece in iter_feature_slices(features):
            if piece.name in pooled:
                continue
            table = self.embedding_bags[self._feature_to_table[piece.name]]
            if callable(getattr(type(table), "lookup_many", None)):
                batched.setdefault(type(table), []).append((table, piece))
            else:
                pooled[piece.name] = table.lookup(piece.ids, piece.offsets, piece.weights, feature=piece.name)
        for kind, items in batched.items():
            pooled.update(zip((piece.name for _, piece in items), kind.lookup_many(items)))
        tensors = [pooled[k].float() for k in self._output_keys]
        values = torch.cat(tensors, dim=1) if tensors else torch.empty(features.stride(), 0)
        return KeyedTensor(keys=list(self._output_keys), length_per_key=list(self._output_dims), values=values)


class EmbeddingCollection(nn.Module):
    """Unpooled tables keyed by name: ``forward(KJT) -> dict[feature, JaggedTensor]``.

    Each JaggedTensor has values ``(N_feature, dim)`` and the batch's lengths.
    """

    def __init__(self, tables: Sequence[EmbeddingConfig], device: torch.device | str | None = None) -> None:
        super().__init__()
        self._feature_to_table = _check_tables(tables, EmbeddingConfig, "EmbeddingCollection")
        self._configs = list(tables)
        self.embeddings = TableDict({cfg.name: _sequence_table_module(cfg, device) for cfg in tables})
        # Fused tables run through the pooled kernels with one-id bags: a sequence lookup.
        fused = [_as_bag_config(cfg) for cfg in tables if cfg.optimizer is not None and _builder(cfg) is None]
        self.fused = FusedTableGroup.build(fused, self.embeddings) if fused else None
        self._fused_columns: dict[str, tuple[int, int]] = {}
        col = 0
        for cfg in fused:
            for feature in cfg.feature_names:
                self._fused_columns[feature] = (col, col + cfg.embedding_dim)
                col += cfg.embedding_dim

    def fused_optimizer(self):
        """The fused tables' ``torch.optim.Optimizer`` face for LR schedulers, or None."""
        return _fused_optimizer(self.fused, self.embeddings)

    @classmethod
    def from_pretrained(
        cls, tables: Sequence[EmbeddingConfig], weights: Mapping[str, torch.Tensor], freeze: bool = True
    ) -> "EmbeddingCollection":
        """A collection whose named tables start from ``weights[name]`` (num_embeddings, dim)."""
        return cls(_with_pretrained(tables, weights, freeze))

    def embedding_configs(self) -> list[EmbeddingConfig]:
        return list(self._configs)

    def forward(self, features: KeyedJaggedTensor) -> dict[str, JaggedTensor]:
        _check_keys(features, self._feature_to_table, "EmbeddingCollection")
        out: dict[str, JaggedTensor] = {}
        for piece in iter_feature_slices(features):
            table = self.embeddings[self._feature_to_table[piece.name]]
            if piece.name in self._fused_columns:
                single = KeyedJaggedTensor(keys=[piece.name], values=piece.ids,
                                           lengths=torch.ones_like(piece.ids, dtype=torch.int64), stride=piece.ids.numel())
                lo, hi = self._fused_columns[piece.name]
                vectors = self.fused(single)[0][:, lo:hi]
            elif hasattr(table, "lookup_sequence"):
                vectors = table.lookup_sequence(piece.ids, feature=piece.name)
            elif _builder(table.config) is not None:  # a pooled-only table: bags of one id each
                unit = torch.arange(piece.ids.numel() + 1, dtype=torch.int64, device=piece.ids.device)
                vectors = table.lookup(piece.ids, unit, None, feature=piece.name)
            else:
                c = table.config
                rows = ids_to_rows(piece.ids, c, piece.name)
                vectors = sequence_lookup(table.weight, rows, c.padding_idx, c.max_norm, c.norm_type,
                                          c.scale_grad_by_freq, c.sparse)
            out[piece.name] = JaggedTensor.from_embeddings(vectors, offsets=piece.offsets, weights=piece.weights)
        return out


def _fused_optimizer(group: FusedTableGroup | None, tables: TableDict) -> FusedOptimizer | None:
    """One optimizer face over the group's tables and the fused sub-tables of built tables."""
    parts = [None if group is None else group.optimizer()]
    parts += [m.fused_optimizer() for m in tables.values()
              if _builder(m.config) is not None and callable(getattr(m, "fused_optimizer", None))]
    return FusedOptimizer.combine(parts)


def _builder(cfg: BaseEmbeddingConfig):
    """The spec that builds this table's module (compressed or dynamic), or None for a plain table."""
    return cfg.compression if cfg.compression is not None else cfg.dynamic


def _table_module(cfg: EmbeddingBagConfig, device: torch.device | str | None) -> nn.Module:
    builder = _builder(cfg)
    if builder is not None:
        return builder.build(cfg, device)
    return EmbeddingBag(cfg.num_embeddings, cfg.embedding_dim, config=cfg, device=device)


def _sequence_table_module(cfg: EmbeddingConfig, device: torch.device | str | None) -> nn.Module:
    builder = _builder(cfg)
    if builder is not None:
        # Built as a SUM-pooled table; the collection feeds it bags of one id (a sequence lookup).
        return builder.build(_as_bag_config(cfg), device)
    return Embedding(cfg.num_embeddings, cfg.embedding_dim, config=cfg, device=device)


def _as_bag_config(cfg: EmbeddingConfig) -> EmbeddingBagConfig:
    fields = {f.name: getattr(cfg, f.name) for f in dataclass_fields(cfg) if f.name != "pooling"}
    return EmbeddingBagConfig(**fields, pooling=PoolingType.SUM)


def _with_pretrained(tables: Sequence[BaseEmbeddingConfig], weights: Mapping[str, torch.Tensor], freeze: bool):
    from dataclasses import replace

    names = {cfg.name for cfg in tables}
    for name in weights:
        if name not in names:
            raise UnknownKeyError(f"pretrained weights for unknown table '{name}' (tables: {sorted(names)})")
    return [
        replace(cfg, init=weights[cfg.name], enable_grad=not freeze, optimizer=None if freeze else cfg.optimizer)
        if cfg.name in weights else cfg
        for cfg in tables
    ]
