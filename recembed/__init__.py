"""recembed: embedding layers for deep recommender systems on PyTorch.

The top level re-exports the names most programs need; everything else lives in
its subpackage (``recembed.data``, ``recembed.models``, ``recembed.retrieval`` ...).
"""

from recembed import errors
from recembed.sparse import JaggedTensor, KeyedJaggedTensor, KeyedTensor
from recembed.tables import (
    DataType,
    Embedding,
    EmbeddingBag,
    EmbeddingBagCollection,
    EmbeddingBagConfig,
    EmbeddingCollection,
    EmbeddingConfig,
    OptimizerType,
    PoolingType,
)

__version__ = "0.1.0"

__all__ = [
    "DataType",
    "Embedding",
    "EmbeddingBag",
    "EmbeddingBagCollection",
    "EmbeddingBagConfig",
    "EmbeddingCollection",
    "EmbeddingConfig",
    "JaggedTensor",
    "KeyedJaggedTensor",
    "KeyedTensor",
    "OptimizerType",
    "PoolingType",
    "errors",
]
