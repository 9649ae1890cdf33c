"""What every compressed table shares: id checks, padding, pooling, and its fused sub-tables.

A compression spec (:class:`~recembed.compress.BloomSpec`, :class:`~recembed.compress.QRSpec`
...) builds a :class:`CompressedTable`, which an ``EmbeddingBagCollection`` holds in place
of a plain table and calls through ``lookup``. The compressed table's rows live in small
sub-tables held by an inner ``EmbeddingBagCollection``: each sub-table copies the outer
config's optimizer, lr, weight_decay, eps, betas, dtype, enable_grad and sparse, so a
fused optimizer trains the sub-table rows inside ``loss.backward()`` exactly as it trains
a plain table, and without one they are ordinary autograd Parameters.

How a bag is pooled:

- *Linear* kinds (hashed, Bloom, QR ``add`` and ``concat``, mixed-dimension, ROBE): a
  bag's vector is a weighted sum of sub-table rows, so the inner collection pools each bag
  in one call; MEAN divides by the bag's id count.
- MAX pooling, and QR ``mult`` (a product is not linear): each id's vector is built first
  from an unpooled lookup (inner bags of one id), combined, then pooled in torch with
  autograd; the fused update still happens in the inner collection's backward.

Padding: ids equal to ``padding_idx`` are dropped before the lookup, so they add nothing,
get no gradient and are left out of MEAN's count - what a zero padding row does in a plain
table - without spending a row of the compressed table on it.

Options that only make sense for one row per id (``max_norm``, ``scale_grad_by_freq``, a
pretrained ``init`` tensor, sharding) are rejected when the table is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from recembed.errors import ConfigError
from recembed.kernels.lookup import pooled_lookup
from recembed.sparse import KeyedJaggedTensor
from recembed.tables.collection import EmbeddingBagCollection
from recembed.tables.single import ConfiguredTable
from recembed.tables.config import (
    BaseEmbeddingConfig,
    EmbeddingBagConfig,
    InitSpec,
    PoolingType,
)
from recembed.tables.ids import ids_to_rows
from recembed.tables.init import initialise_weight

__all__ = ["CompressedTable", "SubTable", "check_ratio", "compressed_rows", "drop_padding", "id_space"]


def check_ratio(value: object, owner: str) -> float:
    """``value`` as a float in (0, 1], or ConfigError naming ``owner``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 < value <= 1.0:
        raise ConfigError(
            f"{owner}: compression_ratio must be a number in (0, 1] (compressed size / plain size; "
            f"0.1 means 10x smaller), got {value!r}"
        )
    return float(value)


def compressed_rows(num_ids: int, ratio: float) -> int:
    """Rows of a table ``ratio`` times the size of one with ``num_ids`` rows: ``max(1, ceil(ratio * num_ids))``."""
    # The small epsilon keeps 0.1 * 1000 from rounding up to 101 through float error.
    return max(1, math.ceil(ratio * num_ids - 1e-9))


def id_space(config: BaseEmbeddingConfig) -> int:
    """Distinct row ids a table sees: ``hash_size`` when ids are hashed, else ``num_embeddings``."""
    return config.hash_size if config.hash_size is not None else config.num_embeddings


def drop_padding(
    rows: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None, padding_idx: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Remove ``padding_idx`` ids from the bags: ``(rows (N,), offsets (B + 1,), weights)`` -> the same without them."""
    if padding_idx is None or rows.numel() == 0:
        return rows, offsets, weights
    keep = rows != padding_idx
    if bool(keep.all()):
        return rows, offsets, weights
    kept_before = torch.cat([keep.new_zeros(1, dtype=torch.int64), keep.to(torch.int64).cumsum(0)])
    return rows[keep], kept_before[offsets], None if weights is None else weights[keep]


@dataclass(frozen=True)
class SubTable:
    """One inner table of a compressed table: ``rows`` x ``dim``, filled by ``init`` (in place)."""

    name: str
    rows: int
    dim: int
    init: InitSpec


def fill_ones(weight: torch.Tensor) -> None:
    """Initialiser: every entry 1 (QR ``mult``'s quotient table starts as the identity factor)."""
    weight.fill_(1.0)


def sub_table_init(outer: BaseEmbeddingConfig, parts: int = 1) -> InitSpec:
    """The initialiser of a sub-table whose ``parts`` rows are summed into one vector.

    A callable ``init`` is used as given. A named one draws as on the sub-table's shape,
    except that ``"uniform"`` keeps the plain table's range (``init_range``, default
    ``±sqrt(1 / num_embeddings)``), and every draw is scaled by ``1 / sqrt(parts)`` so a
    sum of ``parts`` rows starts with about the spread of one plain row.
    """
    init = outer.init
    if isinstance(init, torch.Tensor):
        raise ConfigError(
            f"table '{outer.name}': a pretrained init tensor holds one row per id, which a compressed "
            "table does not have; use a named or callable initialiser"
        )
    if callable(init) and not isinstance(init, str):
        return init
    name = str(init)
    bounds = outer.init_range
    if name == "uniform" and bounds is None:
        bound = math.sqrt(1.0 / outer.num_embeddings)
        bounds = (-bound, bound)
    scale = 1.0 / math.sqrt(parts)

    def draw(weight: torch.Tensor) -> None:
        shape_cfg = EmbeddingBagConfig(name=f"{outer.name}.init", num_embeddings=weight.shape[0],
                                       embedding_dim=weight.shape[1], init=name, init_range=bounds)
        initialise_weight(weight, shape_cfg)
        if scale != 1.0:
            weight.mul_(scale)

    return draw


def _check_compressible(config: BaseEmbeddingConfig, kind: str) -> None:
    where = f"table '{config.name}' ({kind})"
    if not isinstance(config, EmbeddingBagConfig):
        raise ConfigError(
            f"{where}: compressed tables serve pooled lookups; use EmbeddingBagConfig in an EmbeddingBagCollection"
        )
    if config.max_norm is not None or config.scale_grad_by_freq:
        raise ConfigError(f"{where}: max_norm and scale_grad_by_freq act on one row per id; "
                          "compressed tables do not support them")
    if config.num_shards != 1:
        raise ConfigError(f"{where}: num_shards={config.num_shards}; compressed tables are not sharded yet")


class CompressedTable(ConfiguredTable):
    """Stands in for one ``EmbeddingBag``: ``lookup(ids (N,), offsets (B + 1,), weights (N,) | None) -> (B, D)``.

    Subclasses set ``kind``, build their :class:`SubTable` list, and implement
    ``_pooled_sum(rows, offsets, weights) -> (B, D)`` (the weighted sum of each bag's id
    vectors; linear kinds) and/or ``id_vectors(rows) -> (N, D)``. ``rows`` are the ids after
    the config's checks (and ``hash_size`` hashing), with padding removed.

    Attributes:
        config: the outer table config.
        sub_tables: inner ``EmbeddingBagCollection``; its tables hold every trained row.
    """

    kind = "compressed"
    linear = True

    def __init__(self, config: BaseEmbeddingConfig, sub_tables: Sequence[SubTable],
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        _check_compressible(config, self.kind)
        self.config = config
        c = config
        inner = [
            EmbeddingBagConfig(
                name=s.name, num_embeddings=s.rows, embedding_dim=s.dim, feature_names=[s.name], pooling="sum",
                init=s.init, optimizer=c.optimizer, lr=c.lr, weight_decay=c.weight_decay, eps=c.eps,
                betas=c.betas, dtype=c.dtype, enable_grad=c.enable_grad, sparse=c.sparse,
            )
            for s in sub_tables
        ]
        self.sub_tables = EmbeddingBagCollection(inner, device=device)

    def sub_table_weight(self, name: str) -> torch.Tensor:
        """The ``(rows, dim)`` weight of sub-table ``name`` (a live Parameter)."""
        return self.sub_tables.embedding_bags[name].weight

    def fused_optimizer(self):
        """The sub-tables' fused optimizer as a torch ``Optimizer`` (for LR schedulers), or None."""
        return self.sub_tables.fused_optimizer()

    def num_parameters(self) -> int:
        """Trained values: every sub-table entry and projection weight (optimizer state excluded)."""
        inner = self.sub_tables
        if callable(getattr(inner, "num_parameters", None)):  # quantised sub-tables count their stored values
            return inner.num_parameters() + sum(p.numel() for p in self._own_parameters())
        return sum(p.numel() for p in self.parameters())

    def num_bytes(self) -> int:
        """Bytes a lookup needs: parameters in their dtypes plus index buffers (optimizer state excluded)."""
        inner = self.sub_tables
        if callable(getattr(inner, "num_bytes", None)):
            inner_bytes = inner.num_bytes()
        else:
            inner_bytes = sum(p.numel() * p.element_size() for p in inner.parameters())
        own = sum(p.numel() * p.element_size() for p in self._own_parameters())
        return inner_bytes + own + sum(b.numel() * b.element_size() for b in self.lookup_buffers())

    def _own_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("sub_tables.")]

    def lookup_buffers(self) -> list[torch.Tensor]:
        """Non-trained tensors a lookup reads (e.g. an id -> rank map); counted by :meth:`num_bytes`."""
        return []

    # ---- lookup -------------------------------------------------------------------------
    def rows_of(self, ids: torch.Tensor, feature: str | None) -> torch.Tensor:
        """Checked int64 rows of raw ids (range-checked, or hashed when ``hash_size`` is set)."""
        return ids_to_rows(ids, self.config, feature)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, per_sample_weights: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Same as :meth:`lookup`: ``ids`` (N,), ``offsets`` (B + 1,) -> (B, D)."""
        return self.lookup(ids, offsets, per_sample_weights)

    def lookup(self, ids: torch.Tensor, offsets: torch.Tensor, per_sample_weights: torch.Tensor | None = None,
               feature: str | None = None) -> torch.Tensor:
        """Pool bags of raw ids ``(N,)`` with ``offsets (B + 1,)``; returns ``(B, embedding_dim)`` float32."""
        c = self.config
        if per_sample_weights is not None and c.pooling is PoolingType.MAX:
            raise ConfigError(f"table '{c.name}': per-sample weights need SUM or MEAN pooling, not MAX")
        rows = self.rows_of(ids, feature)
        rows, offsets, weights = drop_padding(rows, offsets.to(torch.int64), per_sample_weights, c.padding_idx)
        if c.pooling is PoolingType.MAX or not self.linear:
            vectors = self.id_vectors(rows)
            positions = torch.arange(rows.numel(), device=rows.device)
            return pooled_lookup(vectors, positions, offsets, weights, c.pooling.value)  # type: ignore[union-attr]
        out = self._pooled_sum(rows, offsets, weights)
        if c.pooling is PoolingType.MEAN:
            counts = (offsets[1:] - offsets[:-1]).clamp(min=1).to(out.dtype)
            out = out / counts.unsqueeze(1)
        return out

    def id_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        """One vector per row: ``(N,)`` -> ``(N, D)`` (a pooled sum over bags of one id)."""
        singles = torch.arange(rows.numel() + 1, device=rows.device)
        return self._pooled_sum(rows, singles, None)

    def _pooled_sum(self, rows: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} builds vectors per id; use id_vectors")

    def _inner(self, keys: list[str], values: torch.Tensor, offsets: torch.Tensor,
               weights: torch.Tensor | None, stride: int) -> torch.Tensor:
        """Pool (SUM) sub-table rows: a key-major KJT of ``keys`` with ``stride`` bags -> ``(stride, sum of dims)``."""
        features = KeyedJaggedTensor(keys, values, offsets=offsets, weights=weights, stride=stride)
        return self.sub_tables(features).values()

    def extra_repr(self) -> str:
        c = self.config
        return f"{c.num_embeddings}, {c.embedding_dim}, name={c.name!r}, pooling={c.pooling.name}"  # type: ignore[union-attr]

