"""Mixed-dimension embeddings by frequency (Ginart et al., "Mixed Dimension Embeddings", 2019/ISIT 2021).

Popular ids get wide vectors, rare ids narrow ones. Ids are ranked by popularity and
cut into blocks; block ``b`` is a ``(n_b, d_b)`` table and a learned linear map
``P_b`` (``d_b -> D``, no bias) lifts its rows to the common width ``D``::

    vector(i) = P_b E_b[local row of i]        (P_b is the identity when d_b == D)

Popularity: with ``counts`` (one count per id, e.g. training-set frequencies) ids are
ranked by descending count (ties by id) and an ``(ids,)`` int32 rank map is kept - 4 bytes
per id, counted in :meth:`~recembed.compress.base.CompressedTable.num_bytes`; without
``counts``, id order *is* popularity (id 0 most popular, as after a frequency-sorted
vocabulary) and frequencies are assumed Zipf(1), ``p(rank r) ∝ 1 / (r + 1)``.

Blocks: ``block_sizes`` if given, else ``num_blocks`` blocks ending at ranks
``round(ids ** (b / num_blocks))`` (log-spaced: a small head, a large tail).

Dimensions (alpha power rule): ``d_b = clamp(round(D * (p_b / p_0) ** alpha), min_dim, D)``
with ``p_b`` the mean frequency of an id in block b, so block 0 gets the full D.
``alpha=0`` is uniform (no compression); larger alpha narrows the tail faster. With
``compression_ratio`` the smallest alpha whose bytes (tables + projections + rank map)
fit ``ratio * ids * D * itemsize`` is found by bisection; ``block_dims`` sets the widths directly.

The projections are dense Parameters: a fused optimizer trains the block tables inside
backward, and the torch optimizer over ``dense_parameters(model)`` trains the projections.

Example:
    >>> spec = MixedDimSpec(compression_ratio=0.25, num_blocks=4, counts=train_counts)
    >>> cfg = EmbeddingBagConfig(name="t_item", num_embeddings=len(train_counts), embedding_dim=64,
    ...                          feature_names=["item"], compression=spec)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recembed.compress.base import (
    CompressedTable,
    SubTable,
    check_ratio,
    id_space,
    sub_table_init,
)
from recembed.errors import ConfigError
from recembed.tables.config import BaseEmbeddingConfig

__all__ = ["MixedDimEmbeddingTable", "MixedDimSpec", "default_block_sizes", "power_rule_dims"]

DEFAULT_ALPHA = 0.3
_ALPHA_MAX = 64.0


def default_block_sizes(num_ids: int, num_blocks: int) -> list[int]:
    """Log-spaced blocks: block b ends at rank ``round(num_ids ** ((b + 1) / num_blocks))`` (empty blocks merged)."""
    ends = sorted({max(1, round(num_ids ** ((b + 1) / num_blocks))) for b in range(num_blocks)} | {num_ids})
    ends = [e for e in ends if e <= num_ids]
    return [e - s for s, e in zip([0] + ends[:-1], ends)]


def power_rule_dims(popularity: Sequence[float], dim: int, alpha: float, min_dim: int = 1) -> list[int]:
    """``clamp(round(dim * (p_b / p_0) ** alpha), min_dim, dim)`` per block (``p_0`` the first block's)."""
    head = float(popularity[0])
    dims = []
    for p in popularity:
        share = (float(p) / head) ** alpha if head > 0 and p > 0 else 0.0
        dims.append(int(min(dim, max(min_dim, round(dim * share)))))
    return dims


@dataclass(frozen=True, eq=False)
class MixedDimSpec:
    """Frequency blocks of different widths, projected to the table's ``embedding_dim``.

    Give at most one of ``alpha``, ``compression_ratio`` and ``block_dims`` (default
    ``alpha=0.3``). ``block_sizes`` and ``counts`` are checked against the table when built.

    Args:
        alpha: power-rule exponent >= 0.
        compression_ratio: in (0, 1]; alpha is solved for (see the module docstring).
        block_dims: width of each block (1..embedding_dim).
        num_blocks: blocks when ``block_sizes`` is not given.
        block_sizes: ids per block, summing to the table's ids, most popular block first.
        counts: ``(ids,)`` non-negative popularity counts; None means id order is popularity.
        min_dim: narrowest block width for the power rule.
    """

    alpha: float | None = None
    compression_ratio: float | None = None
    block_dims: tuple[int, ...] | None = None
    num_blocks: int = 4
    block_sizes: tuple[int, ...] | None = None
    counts: object = None
    min_dim: int = 1

    def __post_init__(self) -> None:
        chosen = [n for n in ("alpha", "compression_ratio", "block_dims") if getattr(self, n) is not None]
        if len(chosen) > 1:
            raise ConfigError(f"MixedDimSpec: give at most one of alpha, compression_ratio and block_dims, got {chosen}")
        if self.alpha is not None and (isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float))
                                       or not 0 <= self.alpha < float("inf")):
            raise ConfigError(f"MixedDimSpec: alpha must be a finite number >= 0, got {self.alpha!r}")
        if self.compression_ratio is not None:
            check_ratio(self.compression_ratio, "MixedDimSpec")
        _check_positive_int(self.num_blocks, "num_blocks")
        _check_positive_int(self.min_dim, "min_dim")
        if self.block_sizes is not None:
            sizes = _int_tuple(self.block_sizes, "block_sizes")
            object.__setattr__(self, "block_sizes", sizes)
            object.__setattr__(self, "num_blocks", len(sizes))
        if self.block_dims is not None:
            dims = _int_tuple(self.block_dims, "block_dims")
            if self.block_sizes is not None and len(dims) != len(self.block_sizes):
                raise ConfigError(f"MixedDimSpec: {len(dims)} block_dims for {len(self.block_sizes)} block_sizes")
            object.__setattr__(self, "block_dims", dims)
        if self.counts is not None:
            counts = np.asarray(self.counts.detach().cpu() if isinstance(self.counts, torch.Tensor) else self.counts)
            if counts.ndim != 1 or counts.size == 0 or counts.dtype.kind not in "iuf" \
                    or not np.isfinite(counts).all() or (counts < 0).any():
                raise ConfigError("MixedDimSpec: counts must be a non-empty 1-D array of finite numbers >= 0 "
                                  f"(one per id), got shape {counts.shape} dtype {counts.dtype}")
            object.__setattr__(self, "counts", counts.astype(np.float64))

    def build(self, config: BaseEmbeddingConfig, device: torch.device | str | None = None) -> MixedDimEmbeddingTable:
        return MixedDimEmbeddingTable(config, self, device)


def _check_positive_int(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"MixedDimSpec: {name} must be an int >= 1, got {value!r}")


def _int_tuple(values: object, name: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"MixedDimSpec: {name} must be a non-empty list of ints >= 1, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"MixedDimSpec: {name} entries must be ints >= 1, got {v!r} in {list(values)}")
    return tuple(int(v) for v in values)


class _Layout:
    """Where each rank lives and how wide each block is, resolved for one table."""

    def __init__(self, config: BaseEmbeddingConfig, spec: MixedDimSpec):
        ids, dim, name = id_space(config), config.embedding_dim, config.name
        if spec.counts is not None and spec.counts.shape[0] != ids:
            raise ConfigError(f"table '{name}' (mixed_dim): counts has {spec.counts.shape[0]} entries, "
                              f"the table has {ids} ids; give one count per id")
        sizes = list(spec.block_sizes) if spec.block_sizes is not None else default_block_sizes(ids, spec.num_blocks)
        if sum(sizes) != ids:
            raise ConfigError(f"table '{name}' (mixed_dim): block_sizes {sizes} sum to {sum(sizes)}, "
                              f"the table has {ids} ids")
        self.sizes = sizes
        self.rank_of_id: np.ndarray | None = None
        if spec.counts is not None:
            order = np.argsort(-spec.counts, kind="stable")  # most popular first, ties by id
            rank_dtype = np.int32 if ids < 1 << 31 else np.int64
            rank = np.empty(ids, dtype=rank_dtype)
            rank[order] = np.arange(ids, dtype=rank_dtype)
            self.rank_of_id = rank
            freq_by_rank = spec.counts[order]
        else:
            freq_by_rank = 1.0 / np.arange(1, ids + 1, dtype=np.float64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        self.starts = starts
        self.popularity = [float(freq_by_rank[s:e].mean()) for s, e in zip(starts[:-1], starts[1:])]
        itemsize = torch.empty(0, dtype=config.torch_dtype).element_size()
        if spec.block_dims is not None:
            if len(spec.block_dims) != len(sizes):
                raise ConfigError(f"table '{name}' (mixed_dim): {len(spec.block_dims)} block_dims for "
                                  f"{len(sizes)} blocks {sizes}")
            if max(spec.block_dims) > dim:
                raise ConfigError(f"table '{name}' (mixed_dim): block_dims {list(spec.block_dims)} exceed "
                                  f"embedding_dim={dim}")
            self.dims = list(spec.block_dims)
        elif spec.compression_ratio is not None:
            self.dims = self._solve(spec, dim, ids, itemsize, name)
        else:
            self.dims = power_rule_dims(self.popularity, dim, DEFAULT_ALPHA if spec.alpha is None else spec.alpha,
                                        spec.min_dim)

    def num_bytes(self, dims: list[int], dim: int, itemsize: int) -> int:
        tables = sum(n * d for n, d in zip(self.sizes, dims)) * itemsize
        projections = sum(d * dim for d in dims if d != dim) * 4
        return tables + projections + (0 if self.rank_of_id is None else self.rank_of_id.nbytes)

    def _solve(self, spec: MixedDimSpec, dim: int, ids: int, itemsize: int, name: str) -> list[int]:
        budget = spec.compression_ratio * ids * dim * itemsize  # type: ignore[operator]

        def dims_at(alpha: float) -> list[int]:
            return power_rule_dims(self.popularity, dim, alpha, spec.min_dim)

        if self.num_bytes(dims_at(0.0), dim, itemsize) <= budget:
            return dims_at(0.0)
        narrowest = self.num_bytes(dims_at(_ALPHA_MAX), dim, itemsize)
        if narrowest > budget:
            raise ConfigError(
                f"table '{name}' (mixed_dim): compression_ratio={spec.compression_ratio} is out of reach; the "
                f"narrowest blocks ({self.sizes} ids, widths {dims_at(_ALPHA_MAX)}) take {narrowest} bytes, "
                f"ratio {narrowest / (ids * dim * itemsize):.4g}; use a larger ratio or more, smaller head blocks"
            )
        lo, hi = 0.0, _ALPHA_MAX  # bytes fall as alpha grows: find the smallest alpha within budget
        for _ in range(60):
            mid = (lo + hi) / 2
            if self.num_bytes(dims_at(mid), dim, itemsize) <= budget:
                hi = mid
            else:
                lo = mid
        return dims_at(hi)


class MixedDimEmbeddingTable(CompressedTable):
    """Block tables ``block0..`` of widths ``block_dims``, each lifted to D by ``projections[b]``."""

    kind = "mixed_dim"

    def __init__(self, config: BaseEmbeddingConfig, spec: MixedDimSpec, device: torch.device | str | None = None):
        layout = _Layout(config, spec)
        dim = config.embedding_dim
        self.block_sizes = list(layout.sizes)
        self.block_dims = list(layout.dims)
        self.block_names = [f"block{b}" for b in range(len(layout.sizes))]
        tables = [SubTable(n, rows, d, sub_table_init(config))
                  for n, rows, d in zip(self.block_names, layout.sizes, layout.dims)]
        super().__init__(config, tables, device)
        self.projections = nn.ModuleList(
            nn.Identity() if d == dim else nn.Linear(d, dim, bias=False, device=device) for d in layout.dims
        )
        for p in self.projections.parameters():
            p.requires_grad_(config.enable_grad)
        self.register_buffer("block_starts", torch.as_tensor(layout.starts, dtype=torch.int64, device=device),
                             persistent=False)
        rank = None if layout.rank_of_id is None else torch.from_numpy(layout.rank_of_id).to(device)
        self.register_buffer("rank_of_id", rank)

    def lookup_buffers(self) -> list[torch.Tensor]:
        return [] if self.rank_of_id is None else [self.rank_of_id]

    def locate(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Block and row within the block of each id: ``(N,)`` -> two ``(N,)`` int64 tensors."""
        rank = rows if self.rank_of_id is None else self.rank_of_id[rows].to(torch.int64)
        block = torch.bucketize(rank, self.block_starts[1:], right=True)
        return block, rank - self.block_starts[block]

    def _pooled_sum(self, rows: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        bags = offsets.numel() - 1
        num_blocks = len(self.block_names)
        block, local = self.locate(rows)
        bag = torch.repeat_interleave(torch.arange(bags, device=rows.device), offsets[1:] - offsets[:-1])
        # Key-major KJT: block b's ids of bag 0, bag 1, ..., then block b + 1's; stable keeps bag order.
        key = block * bags + bag
        order = torch.argsort(key, stable=True)
        lengths = torch.bincount(key, minlength=num_blocks * bags)
        inner_offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
        pooled = self._inner(self.block_names, local[order], inner_offsets,
                             None if weights is None else weights[order], bags)
        pieces = torch.split(pooled, self.block_dims, dim=1)
        return torch.stack([proj(piece) for proj, piece in zip(self.projections, pieces)]).sum(0)
