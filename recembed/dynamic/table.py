"""``DynamicEmbeddingTable``: a table whose rows belong to raw ids that come and go.

A collection holds one in place of a plain table when the config has ``dynamic=``
(:class:`~recembed.dynamic.DynamicSpec`). Raw ids go through the table's
:class:`~recembed.dynamic.IdRowMap` (one compiled pass per batch), then the rows are looked
up in ``row_table``: an inner one-table ``EmbeddingBagCollection`` of ``num_embeddings + 1``
rows that copies the config's optimizer, lr, weight_decay, eps, betas, dtype, init and
lookup options, so a fused optimizer trains the rows inside ``loss.backward()`` exactly
as it trains a plain table. Row ``num_embeddings`` is the shared default row.

The clock: in training mode (``module.train()``) every lookup maps, admits, evicts and
expires, and the map's step advances once per batch: at a lookup of a feature already
looked up in the current step (a collection looks each feature up once per forward, so
this is once per forward, whatever the key order), and at every direct call without a
feature name. Rows read in a step are never given away in that step; run ``backward``
before the next training forward (with a fused optimizer the update lands on the rows
the forward read, and the next step may recycle them). In eval mode lookups only read:
unknown or expired ids get the default row, and nothing is counted.

To map several tables' ids at once on threads, :func:`~recembed.dynamic.map_ids_many` gives
each table's rows, which ``lookup_rows`` then pools.

Recycled rows (taken from an evicted or expired id) get fresh values from ``init``'s
distribution - a pure function of ``(DynamicSpec.seed, row, generation)``, see
:mod:`recembed.dynamic.fresh` - and zeroed fused-optimizer state. With ``optimizer=None`` the values are refreshed, but
the state of an outside torch optimizer is not (use a fused optimizer for that).

Example:
    >>> cfg = EmbeddingBagConfig(name="t_item", num_embeddings=4, embedding_dim=8, feature_names=["item"],
    ...                          optimizer="adagrad", dynamic=DynamicSpec(eviction="lru"))
    >>> table = cfg.dynamic.build(cfg)
    >>> table.lookup(torch.tensor([10**12, 7, 7]), torch.tensor([0, 1, 3])).shape
    torch.Size([2, 8])
    >>> table.export()[0].tolist()
    [7, 1000000000000]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from recembed.dynamic._heap import GEN
from recembed.dynamic.fresh import fresh_values, write_fresh_rows, zero_rows
from recembed.dynamic.id_map import LEGACY_STATE_KEYS, STATE_KEYS, IdRowMap
from recembed.dynamic.spec import DefaultRow, DynamicSpec, IdType
from recembed.errors import (
    ConfigError,
    InvalidDtypeError,
    InvalidIdError,
    ShapeMismatchError,
)
from recembed.sparse import KeyedJaggedTensor
from recembed.sparse.hashing import hash_strings
from recembed.tables.collection import EmbeddingBagCollection, FeatureSlice
from recembed.tables.single import ConfiguredTable
from recembed.tables.config import BaseEmbeddingConfig, EmbeddingBagConfig, PoolingType

__all__ = ["DynamicEmbeddingTable"]

Ids = torch.Tensor | Sequence[str] | Sequence[int]
_MAP_PREFIX = "id_map."


def _fresh_init(config: BaseEmbeddingConfig) -> tuple[object, tuple[float, float] | None]:
    """``(init, init_range)`` that draws rows as the plain ``num_embeddings``-row table would."""
    n, d = config.num_embeddings, config.embedding_dim
    if config.init == "uniform":
        return "uniform", config.init_range or (-math.sqrt(1.0 / n), math.sqrt(1.0 / n))
    if config.init == "xavier":
        bound = math.sqrt(6.0 / (n + d))
        return "uniform", (-bound, bound)
    return config.init, config.init_range


def _check_dynamic(config: BaseEmbeddingConfig, spec: DynamicSpec) -> None:
    where = f"table '{config.name}' (dynamic)"
    if config.hash_size is not None:
        raise ConfigError(f"{where}: hash_size={config.hash_size} hashes ids into fixed rows; a dynamic table maps "
                          "raw ids to rows itself, so leave hash_size unset")
    if isinstance(config.init, torch.Tensor):
        raise ConfigError(f"{where}: a pretrained init tensor has no ids; warm-start with load_export(ids, vectors)")
    if config.num_shards != 1:
        raise ConfigError(f"{where}: num_shards={config.num_shards}; dynamic tables are not sharded yet")
    if config.padding_idx is not None and spec.default_row is not DefaultRow.ZERO:
        raise ConfigError(f"{where}: padding_idx needs default_row='zero' (padding ids read the zero default row)")


def _write_rows(target: torch.Tensor, rows: torch.Tensor, values: torch.Tensor | None) -> None:
    """``target[rows] = values`` (zeros when None) in place, for a few thousand rows of a big table.

    Zeros for a float32 CPU tensor are written by a compiled loop that prefetches the scattered
    rows; far cheaper than a fancy assignment, which waits on each row's cache miss in turn.
    """
    if values is None and target.device.type == "cpu" and target.dtype == torch.float32:
        view = target.numpy()
        zero_rows(view.reshape(view.shape[0], -1), rows.numpy())
        return
    index = rows.to(target.device)
    if values is None:
        target[index] = 0
    else:
        target[index] = values.to(device=target.device, dtype=target.dtype)


class DynamicEmbeddingTable(ConfiguredTable):
    """Raw ids -> rows -> vectors: ``lookup(ids (N,), offsets (B + 1,), weights) -> (B, dim)``.

    Attributes:
        config: the table config (``num_embeddings`` is the capacity).
        spec: the :class:`DynamicSpec`.
        id_map: the :class:`IdRowMap` (saved in ``state_dict`` under ``id_map.*``).
        row_table: the inner collection holding the ``num_embeddings + 1`` trained rows.
    """

    def __init__(self, config: BaseEmbeddingConfig, spec: DynamicSpec, device: torch.device | str | None = None):
        super().__init__()
        _check_dynamic(config, spec)
        self.config, self.spec = config, spec
        capacity = config.num_embeddings
        self.id_map = IdRowMap(
            capacity, min_count=spec.min_count, counter=spec.counter.value, eviction=spec.eviction.value,
            ttl=spec.ttl, padding_id=config.padding_idx, counter_capacity=spec.counter_capacity,
            sketch_width=spec.sketch_width, sketch_depth=spec.sketch_depth, seed=spec.seed,
        )
        self._init, self._init_range = _fresh_init(config)
        pooling = config.pooling if config.pooling is not PoolingType.NONE else PoolingType.SUM
        c = config
        self._inner_config = EmbeddingBagConfig(
            name=c.name, num_embeddings=capacity + 1, embedding_dim=c.embedding_dim, feature_names=[c.name],
            pooling=pooling, init=self._init, init_range=self._init_range,
            padding_idx=capacity if spec.default_row is DefaultRow.ZERO else None,
            max_norm=c.max_norm, norm_type=c.norm_type, scale_grad_by_freq=c.scale_grad_by_freq, sparse=c.sparse,
            enable_grad=c.enable_grad, optimizer=c.optimizer, lr=c.lr, weight_decay=c.weight_decay, eps=c.eps,
            betas=c.betas, dtype=c.dtype,
        )
        self.row_table = EmbeddingBagCollection([self._inner_config], device=device)
        self._step_features: set[str] | None = None  # features looked up in the current step

    @property
    def step(self) -> int:
        """Training steps counted by the map's clock."""
        return self.id_map.step

    def rows_weight(self) -> torch.Tensor:
        """The ``(num_embeddings + 1, dim)`` trained rows (a live Parameter); the last is the default row."""
        return self.row_table.embedding_bags[self.config.name].weight

    def fused_optimizer(self):
        """The rows' fused optimizer as a torch ``Optimizer`` (for LR schedulers), or None."""
        return self.row_table.fused_optimizer()

    def num_live(self) -> int:
        """Ids that own a live row now."""
        return self.id_map.num_live()

    # ---- ids -> rows ----------------------------------------------------------------------
    def _where(self, feature: str | None) -> str:
        name = self.config.name
        return f"feature '{feature}' (table '{name}')" if feature else f"table '{name}'"

    def as_ids(self, ids: Ids, feature: str | None = None) -> torch.Tensor:
        """Checked int64 ids ``(N,)``: integer tensors as they are, strings hashed (``id_type="str"`` only)."""
        if isinstance(ids, np.ndarray):
            ids = ids.tolist() if ids.dtype.kind in "OUS" else torch.from_numpy(ids)
        if isinstance(ids, (list, tuple)):
            strings = [t for t in ids if isinstance(t, str)]
            if strings and self.spec.id_type is not IdType.STR:
                raise InvalidDtypeError(
                    f"{self._where(feature)}: got the string id {strings[0]!r}, but the table takes int64 ids; "
                    "build it with DynamicSpec(id_type='str') to hash strings"
                )
            if strings:
                if len(strings) != len(ids):
                    odd = next(t for t in ids if not isinstance(t, str))
                    raise InvalidDtypeError(f"{self._where(feature)}: ids mix strings and {type(odd).__name__} "
                                            f"({odd!r}); pass all strings or an integer tensor")
                return hash_strings(list(ids), seed=self.config.hash_seed)
            ids = torch.tensor(list(ids), dtype=torch.int64) if ids else torch.zeros(0, dtype=torch.int64)
        if not isinstance(ids, torch.Tensor):
            raise InvalidDtypeError(f"{self._where(feature)}: ids must be an integer tensor or a list of strings, "
                                    f"got {type(ids).__name__}")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise InvalidDtypeError(f"{self._where(feature)}: ids must be integers, got dtype {ids.dtype}")
        return ids.reshape(-1).to(torch.int64)

    def _advance_clock(self, feature: str | None) -> None:
        if self._step_features is None or feature is None or feature in self._step_features:
            self.id_map.advance()
            self._step_features = set()
        if feature is not None:
            self._step_features.add(feature)

    def map_ids(self, ids: Ids, feature: str | None = None) -> torch.Tensor:
        """Rows of ``ids`` ``(N,)`` int64; in training mode this admits, evicts and expires.

        The default row is ``num_embeddings``.
        """
        keys = self.as_ids(ids, feature)
        device = self.rows_weight().device
        flat = keys.detach().cpu().numpy()
        if self.training:
            self._advance_clock(feature)
            rows, recycled = self.id_map.assign(flat)
            if recycled.size:
                self._refresh_rows(recycled)
        else:
            rows = self.id_map.find(flat)
        return torch.from_numpy(rows).to(device)

    @torch.no_grad()
    def _refresh_rows(self, rows: np.ndarray) -> None:
        """Fresh initial values and zero fused-optimizer state for ``rows``."""
        weight = self.rows_weight().data
        generations = self.id_map.meta[rows, GEN]
        index = torch.from_numpy(rows)
        if weight.device.type == "cpu" and weight.dtype == torch.float32:
            write_fresh_rows(weight.numpy(), rows, self._init, self._init_range, rows, generations, self.spec.seed)
        else:
            values = fresh_values(self._init, self._init_range, self.config.embedding_dim, rows, generations,
                                  self.spec.seed)
            _write_rows(weight, index, torch.from_numpy(values))
        self._zero_state(index)

    @torch.no_grad()
    def _zero_state(self, rows: torch.Tensor | None) -> None:
        """Zero the fused optimizer's state of ``rows`` (None: of every row)."""
        group = self.row_table.fused
        if group is None:
            return
        state = group.state[self.config.name]
        for buffer in state.elem_state() + state.row_state():
            if rows is None:
                buffer.zero_()
            else:
                _write_rows(buffer, rows, None)

    # ---- lookups -------------------------------------------------------------------------
    def lookup(self, ids: Ids, offsets: torch.Tensor, per_sample_weights: torch.Tensor | None = None,
               feature: str | None = None) -> torch.Tensor:
        """Pool bags of raw ids ``(N,)`` with ``offsets (B + 1,)``; returns ``(B, dim)``.

        With ``default_row="zero"``, ids without a row are left out of bags (and of MEAN's count).
        """
        c = self.config
        if per_sample_weights is not None and c.pooling is PoolingType.MAX:
            raise ConfigError(f"table '{c.name}': per-sample weights need SUM or MEAN pooling, not MAX")
        keys = self.as_ids(ids, feature)
        offsets = self._checked_offsets(offsets, keys.numel(), feature)  # before mapping: a bad batch changes nothing
        return self._pool(self.map_ids(keys, feature), offsets, per_sample_weights)

    @staticmethod
    def lookup_many(items: Sequence[tuple["DynamicEmbeddingTable", FeatureSlice]]) -> list[torch.Tensor]:
        """Pool several features' bags, ``[(table, piece), ...]`` -> one ``(B, dim)`` per item.

        The collections call this once per batch for all their dynamic features, so the
        training-time mapping of the tables runs on two threads (``map_ids_many``) and the
        rows of distinct tables with fused optimizers are pooled in one fused call
        (:mod:`recembed.dynamic.joint`).
        """
        from recembed.dynamic.joint import joint_lookup
        from recembed.dynamic.parallel import map_ids_many  # parallel builds on this module

        tables = [table for table, _ in items]
        pieces = [piece for _, piece in items]
        weights = [piece.weights for piece in pieces]
        rows = map_ids_many(tables, [piece.ids for piece in pieces], [piece.name for piece in pieces])
        offsets = [t._checked_bags(r, p.offsets, p.weights, p.name) for t, p, r in zip(tables, pieces, rows)]
        joint = joint_lookup(tables, rows, offsets, weights)  # one fused call for all of them, when they allow it
        if joint is not None:
            return joint
        return [t._pool(r, o, w) for t, r, o, w in zip(tables, rows, offsets, weights)]

    def lookup_rows(self, rows: torch.Tensor, offsets: torch.Tensor, per_sample_weights: torch.Tensor | None = None,
                    feature: str | None = None) -> torch.Tensor:
        """``lookup`` for ids already mapped by ``map_ids`` / ``map_ids_many``: rows ``(N,)`` -> ``(B, dim)``."""
        return self._pool(rows, self._checked_bags(rows, offsets, per_sample_weights, feature), per_sample_weights)

    def _checked_bags(self, rows: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None,
                      feature: str | None) -> torch.Tensor:
        """``offsets`` as int64 ``(B + 1,)`` after checking them against ``rows`` and ``weights`` against the pooling."""
        if weights is not None and self.config.pooling is PoolingType.MAX:
            raise ConfigError(f"table '{self.config.name}': per-sample weights need SUM or MEAN pooling, not MAX")
        return self._checked_offsets(offsets, rows.numel(), feature)

    def _checked_offsets(self, offsets: torch.Tensor, n: int, feature: str | None) -> torch.Tensor:
        offsets = torch.as_tensor(offsets, dtype=torch.int64)
        if offsets.dim() != 1 or offsets.numel() < 1 or int(offsets[-1]) != n:
            raise ShapeMismatchError(f"{self._where(feature)}: offsets must be (B + 1,) ending at len(ids)={n}, "
                                     f"got shape {tuple(offsets.shape)}")
        return offsets

    def lookup_sequence(self, ids: Ids, feature: str | None = None) -> torch.Tensor:
        """One vector per raw id: ``(N,)`` -> ``(N, dim)`` (zeros for ids without a row when ``default_row="zero"``)."""
        rows = self.map_ids(ids, feature)
        singles = torch.arange(rows.numel() + 1, dtype=torch.int64, device=rows.device)
        return self._pool(rows, singles, None)

    def forward(self, ids: Ids, offsets: torch.Tensor | None = None,
                per_sample_weights: torch.Tensor | None = None) -> torch.Tensor:
        """``lookup`` when ``offsets`` is given, else ``lookup_sequence``."""
        if offsets is None:
            return self.lookup_sequence(ids)
        return self.lookup(ids, offsets, per_sample_weights)

    def _pool(self, rows: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        name = self.config.name
        features = KeyedJaggedTensor([name], rows, offsets=offsets, weights=weights, stride=offsets.numel() - 1)
        return self.row_table(features).values()

    # ---- serving -------------------------------------------------------------------------
    @torch.no_grad()
    def export(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The live rows for serving: ``(ids (M,) int64 sorted, vectors (M, dim))``.

        String tables export the 64-bit hashes of their strings.
        """
        ids, rows = self.id_map.live()
        weight = self.rows_weight().detach()
        return torch.from_numpy(ids), weight[torch.from_numpy(rows).to(weight.device)].clone()

    @torch.no_grad()
    def load_export(self, ids: Ids, vectors: torch.Tensor) -> None:
        """Warm-start from :meth:`export` output: the table is emptied, then id ``k`` gets row ``k``.

        Args:
            ids: ``(M,)`` distinct int64 ids (or strings, for ``id_type="str"``), ``M <= num_embeddings``.
            vectors: ``(M, dim)`` their vectors.
        The rows are marked seen at the current step with count 1, the fused optimizer's state
        of every row is zeroed, and pending admission counts are kept.
        """
        keys = self.as_ids(ids)
        c = self.config
        if vectors.dim() != 2 or vectors.shape != (keys.numel(), c.embedding_dim):
            raise ShapeMismatchError(f"table '{c.name}': load_export vectors must be ({keys.numel()}, "
                                     f"{c.embedding_dim}) for {keys.numel()} ids, got {tuple(vectors.shape)}")
        if keys.numel() > c.num_embeddings:
            raise ConfigError(f"table '{c.name}': load_export got {keys.numel()} ids but the table holds "
                              f"num_embeddings={c.num_embeddings} rows")
        flat = keys.cpu().numpy()
        if np.unique(flat).size != flat.size:
            raise InvalidIdError(f"table '{c.name}': load_export ids must be distinct")
        if c.padding_idx is not None and bool((flat == c.padding_idx).any()):
            raise InvalidIdError(f"table '{c.name}': load_export ids contain the padding id {c.padding_idx}")
        rows = torch.from_numpy(self.id_map.place(flat))
        weight = self.rows_weight()
        weight.data[rows.to(weight.device)] = vectors.to(device=weight.device, dtype=weight.dtype)
        self._zero_state(None)
        self._step_features = None

    # ---- state_dict ----------------------------------------------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for key, array in self.id_map.state_arrays().items():
            destination[prefix + _MAP_PREFIX + key] = torch.from_numpy(array)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        head = prefix + _MAP_PREFIX
        mine = {k[len(head):]: v for k, v in state_dict.items() if k.startswith(head)}
        rest = {k: v for k, v in state_dict.items() if not k.startswith(head)}
        super()._load_from_state_dict(rest, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        needed = ("step", "stamp") + STATE_KEYS
        missing = [head + k for k in needed if k not in mine]
        unexpected_keys.extend(head + k for k in mine if k not in needed and k not in LEGACY_STATE_KEYS)
        if missing:
            missing_keys.extend(missing)
            return
        arrays = {k: mine[k].detach().cpu().numpy() for k in needed}
        problem = self._state_problem(arrays)
        if problem:
            error_msgs.append(f"table '{self.config.name}' (dynamic): {problem}")
            return
        self.id_map.load_state_arrays(arrays)
        self._step_features = None

    def _state_problem(self, arrays: dict[str, np.ndarray]) -> str | None:
        for key, shape in self.id_map.expected_shapes().items():
            if arrays[key].shape != shape:
                return (f"saved {_MAP_PREFIX}{key} has shape {arrays[key].shape}, expected {shape} "
                        "(same num_embeddings and DynamicSpec needed)")
        widths = {"free_rows": None, "lfu_heap": 4, "pending": 3}
        for key, bound in self.id_map.bounds().items():
            a = arrays[key]
            ok = a.ndim == (1 if widths[key] is None else 2) and (a.ndim == 1 or a.shape[1] == widths[key])
            if not ok or a.shape[0] > bound:
                return f"saved {_MAP_PREFIX}{key} has shape {a.shape}; at most {bound} rows fit this table's spec"
        return None

    def extra_repr(self) -> str:
        c, s = self.config, self.spec
        parts = [f"{c.num_embeddings}, {c.embedding_dim}", f"name={c.name!r}", f"min_count={s.min_count}",
                 f"eviction={s.eviction.value}"]
        if s.ttl is not None:
            parts.append(f"ttl={s.ttl}")
        if c.optimizer is not None:
            parts.append(f"optimizer={c.optimizer.name}")
        return ", ".join(parts)
