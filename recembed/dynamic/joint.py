"""One fused lookup for the rows of several dynamic tables.

Each :class:`~recembed.dynamic.table.DynamicEmbeddingTable` trains its rows in an inner
one-table collection. Looked up one by one, a batch of 8 dynamic features makes 8 fused
forward and 8 fused backward calls, each on one table (so each backward sorts its one
table on one thread) plus a gradient copy per table. A :class:`JointRows` group runs the
rows of all of them through one :class:`~recembed.tables.fused_group.FusedTableGroup`, as a
collection does for its plain tables: one forward call, one backward call.

The joint group owns nothing: its tables are the inner tables' modules and its optimizer
state is the inner groups' own ``TableOptimizerState`` objects, so ``state_dict``,
checkpoints, LR schedules and the refresh of recycled rows see the same tensors. Like any
fused group it keeps the weights and state in one flat array and makes the tables' tensors
views into it; a later direct lookup through a table's own inner collection moves them back
(a copy), so mixing the two ways is correct, only slower.

Example:
    >>> specs = [EmbeddingBagConfig(name=f"t{i}", num_embeddings=8, embedding_dim=4, feature_names=[f"f{i}"],
    ...                             optimizer="sgd", dynamic=DynamicSpec()) for i in range(2)]
    >>> ebc = EmbeddingBagCollection(specs)   # its dynamic tables are looked up jointly
    >>> ebc(KeyedJaggedTensor.from_lists({"f0": [[10**12]], "f1": [[3, 4]]})).values().shape
    torch.Size([1, 8])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from recembed.sparse import KeyedJaggedTensor
from recembed.tables.fused_group import FusedTableGroup
from recembed.tables.table_dict import TableDict

if TYPE_CHECKING:
    from recembed.dynamic.table import DynamicEmbeddingTable

__all__ = ["JointRows", "joint_lookup"]


class JointRows:
    """A fused group over the inner row tables of ``tables`` (distinct, each with a fused optimizer)."""

    def __init__(self, tables: Sequence[DynamicEmbeddingTable]):
        inner = [t.row_table for t in tables]
        names = [t.config.name for t in tables]
        configs = [c.fused.configs[n] for c, n in zip(inner, names)]
        modules = TableDict({n: c.embedding_bags[n] for c, n in zip(inner, names)})
        self.group = FusedTableGroup(configs, modules, backend=inner[0].fused.backend)
        self.group.state = TableDict({n: c.fused.state[n] for c, n in zip(inner, names)})
        self.names = names
        self.dims = [c.embedding_dim for c in configs]

    def __call__(self, rows: Sequence[torch.Tensor], offsets: Sequence[torch.Tensor],
                 weights: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        """Pool ``rows[k]`` (already mapped) in the bags ``offsets[k]`` ``(B + 1,)`` with ``weights[k]``
        (all None or none); one ``(B, dim_k)`` per table."""
        lengths = torch.cat([o[1:] - o[:-1] for o in offsets])
        joined_weights = None if weights[0] is None else torch.cat(list(weights))
        features = KeyedJaggedTensor(self.names, torch.cat(list(rows)), lengths=lengths, weights=joined_weights,
                                     stride=offsets[0].numel() - 1)
        out, _ = self.group(features)
        return list(torch.split(out, self.dims, dim=1))


def _joinable(tables: Sequence[DynamicEmbeddingTable], weights: Sequence[torch.Tensor | None]) -> bool:
    """One joint call fits: two or more distinct tables, each with a fused optimizer, all on one
    device, and per-sample weights on every feature or on none."""
    if len(tables) < 2 or len({id(t) for t in tables}) != len(tables):
        return False
    if any(t.row_table.fused is None for t in tables):
        return False
    if len({t.rows_weight().device for t in tables}) != 1:
        return False
    return len({w is None for w in weights}) == 1


def joint_lookup(tables: Sequence[DynamicEmbeddingTable], rows: Sequence[torch.Tensor],
                 offsets: Sequence[torch.Tensor], weights: Sequence[torch.Tensor | None]) -> list[torch.Tensor] | None:
    """``tables``' bags pooled in one fused call, or None when they cannot share one (the caller
    then looks them up one by one). The group is kept on the first table for the next batch."""
    if not _joinable(tables, weights):
        return None
    key = tuple(id(t) for t in tables)
    cached = tables[0].__dict__.get("_joint_rows")
    if cached is None or cached[0] != key:
        cached = (key, JointRows(tables))
        tables[0].__dict__["_joint_rows"] = cached  # not a submodule: it owns no state of its own
    return cached[1](rows, offsets, weights)
