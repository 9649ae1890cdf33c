"""The tensors that make up one table of a plain collection, under keys every module shares.

A table is ``"weight"`` (rows, dim) plus ``"state.<buffer>"`` for its fused optimizer state
(``(rows, dim)``, ``(rows,)``, or the scalars ``step`` and ``lr``); a compressed or dynamic
table is ``"module.<state_dict key>"`` instead (it is never split). Sharding slices these
tensors (:func:`slice_block`), checkpoints store them, and :func:`unsharded_key` says where
each lives in a plain collection's ``state_dict``. Works for both
:class:`~recembed.tables.EmbeddingBagCollection` and :class:`~recembed.tables.EmbeddingCollection`.
"""

from __future__ import annotations

from typing import Union

import torch

from recembed.tables import EmbeddingBagCollection, EmbeddingCollection
from recembed.tables.config import BaseEmbeddingConfig

__all__ = ["Collection", "collection_configs", "table_is_plain", "table_tensors", "slice_block", "unsharded_key"]

Collection = Union[EmbeddingBagCollection, EmbeddingCollection]


def table_is_plain(cfg: BaseEmbeddingConfig) -> bool:
    """One row per id in a plain table (not a compressed or dynamic module)."""
    return cfg.compression is None and cfg.dynamic is None


def collection_configs(collection: Collection) -> list[BaseEmbeddingConfig]:
    """The table configs of either kind of collection, in order."""
    if isinstance(collection, EmbeddingBagCollection):
        return collection.embedding_bag_configs()
    return collection.embedding_configs()


def _tables(collection: Collection):
    return collection.embedding_bags if isinstance(collection, EmbeddingBagCollection) else collection.embeddings


def table_tensors(collection: Collection, name: str) -> dict[str, torch.Tensor]:
    """Table ``name``'s tensors by key (see the module docstring): the live storage, so copying
    into them changes the table."""
    module = _tables(collection)[name]
    config = next(c for c in collection_configs(collection) if c.name == name)
    if not table_is_plain(config):
        return {f"module.{k}": v for k, v in module.state_dict().items()}  # detached views of the live tensors
    out = {"weight": module.weight.data}
    if collection.fused is not None and name in collection.fused.state:
        out.update({f"state.{k}": v for k, v in collection.fused.state[name].named_buffers()})
    return out


def slice_block(tensor: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    """A table-shaped tensor's block: (rows, dim) -> rows x cols, (rows,) -> rows, scalars unchanged."""
    if tensor.dim() == 2:
        return tensor[rows[0]:rows[1], cols[0]:cols[1]]
    if tensor.dim() == 1:
        return tensor[rows[0]:rows[1]]
    return tensor


def unsharded_key(name: str, key: str, sequence: bool = False) -> str:
    """Where a :func:`table_tensors` key lives in a plain collection's ``state_dict``
    (``sequence``: an EmbeddingCollection, whose tables are under ``embeddings``)."""
    tables = "embeddings" if sequence else "embedding_bags"
    kind, _, rest = key.partition(".")
    if kind == "weight":
        return f"{tables}.{name}.weight"
    if kind == "state":
        return f"fused.state.{name}.{rest}"
    return f"{tables}.{name}.{rest}"
