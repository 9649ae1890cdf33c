"""Routing a rank's ids to the shards' owners, and rebuilding the owners' batches.

:func:`route` (requesting side) turns the local batch into one message per destination
rank: for each of the destination's local features, the bags of this rank's samples --
whole bags for table-wise, column-wise and data-parallel shards, and for row-wise shards
only the ids in the shard's rows (shifted to local rows, padding ids dropped).
:func:`assemble` (owning side) joins the messages of every source rank into one
KeyedJaggedTensor over the global batch: sources in rank order, so sample ``i`` of rank
``s`` is global sample ``sum(B[:s]) + i``, the order a single process would see.

Both are pure tensor functions (no communication), so they are tested without processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recembed.distributed.layout import CollectionLayout
from recembed.distributed.plan_types import ShardingType
from recembed.distributed.table_state import table_is_plain
from recembed.sparse import KeyedJaggedTensor
from recembed.tables.collection import iter_feature_slices
from recembed.tables.ids import ids_to_rows

__all__ = ["Message", "RoutedBatch", "route", "assemble"]


@dataclass
class Message:
    """What one rank sends one destination: ``lengths`` (keys * B,), ``values`` (N,), ``weights`` (N,) | None."""

    lengths: torch.Tensor
    values: torch.Tensor
    weights: torch.Tensor | None


@dataclass
class RoutedBatch:
    """A local batch cut for every destination, plus the bag sizes MEAN row-wise pooling divides by."""

    batch: int
    messages: list[Message]
    mean_counts: dict[str, torch.Tensor]  # feature -> (B,) non-padding ids per bag


def _row_wise_split(rows: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None,
                    starts: list[int], padding_idx: int | None):
    """Ids bucketed by shard then bag (stable, so each bag keeps its id order).

    Returns per shard ``(lengths (B,), local rows, weights | None)`` and the non-padding
    count of each bag (B,).
    """
    batch = offsets.numel() - 1
    lengths = offsets[1:] - offsets[:-1]
    bag = torch.repeat_interleave(torch.arange(batch, device=rows.device), lengths)
    if padding_idx is not None:
        keep = rows != padding_idx
        rows, bag = rows[keep], bag[keep]
        weights = None if weights is None else weights[keep]
    num_shards = len(starts)
    bounds = torch.tensor(starts[1:], dtype=rows.dtype, device=rows.device)
    owner = torch.bucketize(rows, bounds, right=True)
    key = owner * batch + bag
    order = torch.sort(key, stable=True).indices
    counts = torch.bincount(key, minlength=num_shards * batch).view(num_shards, batch)
    rows_sorted = rows[order]
    weights_sorted = None if weights is None else weights[order]
    sizes = counts.sum(dim=1).tolist()
    pieces, start = [], 0
    for i, size in enumerate(sizes):
        w = None if weights_sorted is None else weights_sorted[start:start + size]
        pieces.append((counts[i], rows_sorted[start:start + size] - starts[i], w))
        start += size
    bag_sizes = torch.bincount(bag, minlength=batch)
    return pieces, bag_sizes


def route(features: KeyedJaggedTensor, layout: CollectionLayout) -> RoutedBatch:
    """Cut the local batch ``features`` (stride B) into one :class:`Message` per rank.

    Ids are validated and hashed here with the original tables' rules, so an error names the
    feature and table exactly as the unsharded collection would.
    """
    batch = features.stride()
    per_feature = {}
    for piece in iter_feature_slices(features):
        cfg = layout.configs[layout.table_of[piece.name]]
        rows = ids_to_rows(piece.ids, cfg, piece.name) if table_is_plain(cfg) else piece.ids
        per_feature[piece.name] = (rows, piece.offsets, piece.weights)
    row_wise: dict[str, tuple] = {}
    mean_counts: dict[str, torch.Tensor] = {}
    for name, spec in layout.specs.items():
        if spec.type is not ShardingType.ROW_WISE:
            continue
        cfg = layout.configs[name]
        starts = [s.rows[0] for s in layout.shards[name]]
        for feature in cfg.feature_names:
            rows, offsets, weights = per_feature[feature]
            pieces, bag_sizes = _row_wise_split(rows, offsets, weights, starts, cfg.padding_idx)
            row_wise[feature] = pieces
            if feature in layout.mean_row_wise:
                mean_counts[feature] = bag_sizes
    messages = []
    for rank, entries in enumerate(layout.entries):
        lengths, values, weights = [], [], []
        for e in entries:
            if e.kind is ShardingType.ROW_WISE:
                index = [s.rank for s in layout.shards[e.table]].index(rank)
                bag_lengths, rows, w = row_wise[e.feature][index]
            else:
                rows, offsets, w = per_feature[e.feature]
                bag_lengths = offsets[1:] - offsets[:-1]
            lengths.append(bag_lengths)
            values.append(rows)
            weights.append(w)
        joined_weights = None
        if features.weights_or_none() is not None:
            joined_weights = torch.cat(weights) if weights else features.weights().new_zeros(0)
        messages.append(Message(
            torch.cat(lengths) if lengths else torch.zeros(0, dtype=torch.int64),
            torch.cat(values) if values else torch.zeros(0, dtype=torch.int64),
            joined_weights,
        ))
    return RoutedBatch(batch, messages, mean_counts)


def assemble(keys: list[str], batch_sizes: list[int], lengths: list[torch.Tensor], values: list[torch.Tensor],
             weights: list[torch.Tensor] | None) -> KeyedJaggedTensor:
    """Join per-source messages into one KeyedJaggedTensor over the global batch.

    Args:
        keys: the owner's local features (K).
        batch_sizes: B_s of every source rank s.
        lengths: per source, ``(K * B_s,)`` key-major bag sizes.
        values: per source, its ids (key-major).
        weights: per source, its per-id weights, or None.
    Returns:
        KJT with ``keys``, stride ``sum(batch_sizes)``, key-major over (key, source, sample).
    """
    num_keys = len(keys)
    total = sum(batch_sizes)
    if num_keys == 0:
        return KeyedJaggedTensor(keys=[], values=torch.zeros(0, dtype=torch.int64),
                                 lengths=torch.zeros(0, dtype=torch.int64), stride=total)
    per_source = [ln.view(num_keys, b) for ln, b in zip(lengths, batch_sizes)]
    joined_lengths = torch.cat(per_source, dim=1).reshape(-1)
    # Each source's values split by key; re-ordered key-major over sources.
    key_sizes = [ln.sum(dim=1).tolist() for ln in per_source]
    value_parts = [torch.split(v, sizes) for v, sizes in zip(values, key_sizes)]
    ordered = [value_parts[s][k] for k in range(num_keys) for s in range(len(values))]
    joined_values = torch.cat(ordered) if ordered else torch.zeros(0, dtype=torch.int64)
    joined_weights = None
    if weights is not None:
        weight_parts = [torch.split(w, sizes) for w, sizes in zip(weights, key_sizes)]
        joined_weights = torch.cat([weight_parts[s][k] for k in range(num_keys) for s in range(len(weights))])
    return KeyedJaggedTensor(keys=list(keys), values=joined_values, lengths=joined_lengths,
                             weights=joined_weights, stride=total)
