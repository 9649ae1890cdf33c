"""Initialisers for table weights.

| name            | distribution                                        |
|-----------------|-----------------------------------------------------|
| "normal"        | N(0, 1), as ``torch.nn.Embedding``                  |
| "scaled_normal" | N(0, (1/dim)^2), as Spotlight's ``ScaledEmbedding`` |
| "uniform"       | U(min, max), default ``±sqrt(1/num_embeddings)`` as TorchRec |
| "xavier"        | Xavier/Glorot uniform                               |
| "zeros"         | all zeros (bias tables)                             |

A callable fills the tensor in place; a tensor is copied in as pretrained weights.
The padding row (``padding_idx``) is zeroed after a named or callable initialiser, as in
PyTorch; a pretrained tensor is kept as given (as ``nn.Embedding.from_pretrained``).
"""

from __future__ import annotations

import math

import torch

from recembed.tables.config import BaseEmbeddingConfig

__all__ = ["initialise_weight"]


@torch.no_grad()
def initialise_weight(weight: torch.Tensor, config: BaseEmbeddingConfig, generator: torch.Generator | None = None) -> None:
    """Fill ``weight`` (num_embeddings, embedding_dim) in place as ``config.init`` says.

    Random draws are made in float32 and then cast, so a float16 table starts from the
    same values (rounded) as its float32 twin.
    """
    init = config.init
    shape = (config.num_embeddings, config.embedding_dim)
    if isinstance(init, torch.Tensor):
        weight.copy_(init.to(device=weight.device, dtype=weight.dtype))
    elif callable(init) and not isinstance(init, str):
        init(weight)
    elif init == "zeros":
        weight.zero_()
    else:
        # Draw straight into float32 weights; other dtypes draw in float32 first.
        values = weight if weight.dtype == torch.float32 else torch.empty(shape, dtype=torch.float32, device=weight.device)
        if init == "normal":
            values.normal_(0.0, 1.0, generator=generator)
        elif init == "scaled_normal":
            values.normal_(0.0, 1.0 / config.embedding_dim, generator=generator)
        elif init == "uniform":
            lo, hi = config.init_range or (-math.sqrt(1.0 / config.num_embeddings), math.sqrt(1.0 / config.num_embeddings))
            values.uniform_(lo, hi, generator=generator)
        elif init == "xavier":
            bound = math.sqrt(6.0 / (config.num_embeddings + config.embedding_dim))
            values.uniform_(-bound, bound, generator=generator)
        if values is not weight:
            weight.copy_(values)
    # torch zeroes the padding row of freshly initialised tables but keeps a pretrained
    # tensor's row as given (nn.Embedding.from_pretrained); do the same for parity.
    if config.padding_idx is not None and not isinstance(init, torch.Tensor):
        weight[config.padding_idx].zero_()
