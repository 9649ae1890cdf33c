"""Table configs, initialisers, single tables and collections."""

from recembed.tables.collection import EmbeddingBagCollection, EmbeddingCollection
from recembed.tables.config import (
    DataType,
    EmbeddingBagConfig,
    EmbeddingConfig,
    OptimizerType,
    PoolingType,
)
from recembed.tables.single import Embedding, EmbeddingBag

__all__ = [
    "DataType",
    "Embedding",
    "EmbeddingBag",
    "EmbeddingBagCollection",
    "EmbeddingBagConfig",
    "EmbeddingCollection",
    "EmbeddingConfig",
    "OptimizerType",
    "PoolingType",
]
