"""How big the embedding tables of a model are: parameters and bytes per table.

Works on an ``EmbeddingBagCollection``, a :class:`QuantizedEmbeddingBagCollection`, or any
model holding them. Bytes are what a lookup needs - weights in their dtype, quantised
codes with their scales, index buffers such as a mixed-dimension rank map - and leave out
fused-optimizer state (training-only). ``plain_num_bytes`` is the same table stored plainly
in float32 (``num_embeddings x embedding_dim x 4``), the yardstick compression ratios use.

Example:
    >>> sizes = table_sizes(model)
    >>> sum(s.num_bytes for s in sizes) == compressed_num_bytes(model)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from recembed.compress.base import CompressedTable
from recembed.compress.quantized_collection import QuantizedEmbeddingBagCollection
from recembed.tables.collection import EmbeddingBagCollection

__all__ = ["TableSize", "compressed_num_bytes", "compressed_num_parameters", "find_collections", "table_sizes"]


@dataclass(frozen=True)
class TableSize:
    """One table's size. ``collection`` is the collection's module path (``""`` at the top)."""

    collection: str
    table: str
    kind: str
    num_parameters: int
    num_bytes: int
    plain_num_bytes: int

    @property
    def compression(self) -> float:
        """How many times smaller than the plain float32 table (``plain_num_bytes / num_bytes``)."""
        return self.plain_num_bytes / max(self.num_bytes, 1)


def find_collections(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Every (path, collection) in ``module``, not looking inside a collection (its sub-tables belong to it)."""
    if isinstance(module, (EmbeddingBagCollection, QuantizedEmbeddingBagCollection)):
        return [(prefix, module)]
    found: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        found.extend(find_collections(child, f"{prefix}.{name}" if prefix else name))
    return found


def _kind(table: nn.Module) -> str:
    return table.kind if isinstance(table, CompressedTable) else "plain"


def table_sizes(module: nn.Module) -> list[TableSize]:
    """One :class:`TableSize` per table of every collection in ``module``, in config order."""
    sizes = []
    for path, collection in find_collections(module):
        for cfg in collection.embedding_bag_configs():
            plain = cfg.num_embeddings * cfg.embedding_dim * 4
            if isinstance(collection, QuantizedEmbeddingBagCollection):
                inner = collection.compressed[cfg.name] if cfg.name in collection.compressed else None
                kind = collection.dtype if inner is None else f"{_kind(inner)}+{collection.dtype}"
                params = cfg.num_embeddings * cfg.embedding_dim if inner is None else inner.num_parameters()
                sizes.append(TableSize(path, cfg.name, kind, params, collection.table_num_bytes(cfg.name), plain))
                continue
            table = collection.embedding_bags[cfg.name]
            if isinstance(table, CompressedTable):
                sizes.append(TableSize(path, cfg.name, table.kind, table.num_parameters(), table.num_bytes(), plain))
            else:
                w = table.weight
                sizes.append(TableSize(path, cfg.name, "plain", w.numel(), w.numel() * w.element_size(), plain))
    return sizes


def compressed_num_parameters(module: nn.Module) -> int:
    """Stored embedding values of every table in ``module`` (optimizer state excluded)."""
    return sum(s.num_parameters for s in table_sizes(module))


def compressed_num_bytes(module: nn.Module) -> int:
    """Bytes a lookup needs across every table in ``module`` (optimizer state excluded)."""
    return sum(s.num_bytes for s in table_sizes(module))
