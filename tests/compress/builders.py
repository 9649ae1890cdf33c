"""Small collections, batches and reference pooling shared by the compression tests."""

from __future__ import annotations

import torch

from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig


def one_table(compression, num_embeddings: int = 40, dim: int = 6, **fields) -> EmbeddingBagCollection:
    """A collection of one table 't' serving feature 'f'."""
    torch.manual_seed(0)
    cfg = EmbeddingBagConfig(name="t", num_embeddings=num_embeddings, embedding_dim=dim, feature_names=["f"],
                             compression=compression, **fields)
    return EmbeddingBagCollection([cfg])


def bags(lists: list[list[int]], weights: list[list[float]] | None = None) -> KeyedJaggedTensor:
    """A KJT of feature 'f' from per-sample id lists (and optional per-id weights)."""
    if weights is None:
        return KeyedJaggedTensor.from_lists({"f": lists})
    flat_ids = torch.tensor([i for bag in lists for i in bag], dtype=torch.int64)
    flat_w = torch.tensor([w for bag in weights for w in bag], dtype=torch.float32)
    lengths = torch.tensor([len(bag) for bag in lists])
    return KeyedJaggedTensor(["f"], flat_ids, lengths=lengths, weights=flat_w)


def pool(vectors: list[torch.Tensor], mode: str, dim: int, weights: list[float] | None = None) -> torch.Tensor:
    """Reference pooling of one bag's id vectors (an empty bag gives zeros; weighted mean divides by the count)."""
    if not vectors:
        return torch.zeros(dim)
    stacked = torch.stack(vectors)
    if weights is not None:
        stacked = stacked * torch.tensor(weights).unsqueeze(1)
    if mode == "sum":
        return stacked.sum(0)
    if mode == "mean":
        return stacked.sum(0) / len(vectors)
    return stacked.max(0).values
