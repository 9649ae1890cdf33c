"""DCN-v2 (Wang et al. 2021): explicit feature crosses beside or before a deep MLP."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from recembed.errors import ConfigError
from recembed.models.embedding_setup import DEFAULT_EMBEDDING_LR, with_embedding_optimizer
from recembed.models.inputs import check_dense_in_features, check_dense_features, select_features
from recembed.models.interactions import CrossNetwork
from recembed.models.mlp import MLP, ActivationSpec
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig, OptimizerType

__all__ = ["DCNv2"]

STRUCTURES = ("stacked", "parallel")


class DCNv2(nn.Module):
    """Deep & Cross Network v2 over ``x_0 = [dense, pooled embedding of every feature]``.

    ``x_0`` has width ``D = n_dense + sum of the features' embedding dims``; tables may
    have different widths (the cross network works on the flat concatenation, not on
    per-field vectors). The :class:`CrossNetwork` applies ``num_cross_layers`` layers
    ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` (``W_l = U_l V_l^T`` with ``low_rank``).

    - ``structure="stacked"``: ``x_0 -> cross -> deep MLP -> linear head``.
    - ``structure="parallel"``: ``[cross(x_0), deep(x_0)] -> linear head``.

    ``deep_mlp`` lists hidden widths (each followed by ``activation``); a linear head then
    maps the result to one logit, so ``deep_mlp`` does not end with 1. It may be empty
    (a cross network alone, for ``stacked``).

    Shapes: ``forward(dense (B, n_dense) or None when n_dense == 0, sparse KJT) -> (B,)``.

    Example:
        >>> tables = [EmbeddingBagConfig(name="t_ad", num_embeddings=100, embedding_dim=7, feature_names=["ad"]),
        ...           EmbeddingBagConfig(name="t_site", num_embeddings=30, embedding_dim=16, feature_names=["site"])]
        >>> model = DCNv2(3, tables, num_cross_layers=2, low_rank=4, deep_mlp=[32, 16], embedding_optimizer=None)
        >>> sparse = KeyedJaggedTensor.from_lists({"ad": [[1], [2]], "site": [[5], [6, 7]]})
        >>> model(torch.randn(2, 3), sparse).shape   # x_0 is 3 + 7 + 16 = 26 wide
        torch.Size([2])
    """

    def __init__(
        self,
        dense_in_features: int,
        embedding_tables: Sequence[EmbeddingBagConfig],
        num_cross_layers: int = 3,
        low_rank: int | None = None,
        deep_mlp: Sequence[int] = (256, 128),
        structure: str = "stacked",
        activation: ActivationSpec = "relu",
        dropout: float = 0.0,
        embedding_optimizer: OptimizerType | str | None = OptimizerType.ROWWISE_ADAGRAD,
        embedding_lr: float = DEFAULT_EMBEDDING_LR,
    ) -> None:
        super().__init__()
        owner = "DCNv2"
        check_dense_in_features(dense_in_features, owner, minimum=0)
        if structure not in STRUCTURES:
            raise ConfigError(f"{owner}: structure={structure!r} is not one of {STRUCTURES}")
        tables = with_embedding_optimizer(embedding_tables, embedding_optimizer, embedding_lr, owner)
        self.dense_in_features = dense_in_features
        self.structure = structure
        self.embeddings = EmbeddingBagCollection(tables)
        self.features = self.embeddings.feature_names()
        width = dense_in_features + sum(cfg.embedding_dim * len(cfg.feature_names) for cfg in tables)
        self.input_width = width
        self.cross = CrossNetwork(width, num_cross_layers, low_rank)
        # Every deep layer, the last included, is followed by the activation: the head is the output layer.
        self.deep = MLP(width, list(deep_mlp), activation=activation,
                        final_activation=activation if list(deep_mlp) else None, dropout=dropout)
        head_in = self.deep.out_features if structure == "stacked" else width + self.deep.out_features
        self.head = nn.Linear(head_in, 1)

    def input_vector(self, dense: torch.Tensor | None, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """``x_0``: dense features then each feature's pooled embedding, ``(B, D)``."""
        sparse = select_features(sparse, self.features, "DCNv2")
        dense = check_dense_features(dense, self.dense_in_features, sparse.stride(), "DCNv2")
        pooled = self.embeddings(sparse).values()
        return torch.cat([dense.to(device=pooled.device, dtype=pooled.dtype), pooled], dim=1)

    def forward(self, dense: torch.Tensor | None, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """Click logits ``(B,)``."""
        x0 = self.input_vector(dense, sparse)
        if self.structure == "stacked":
            hidden = self.deep(self.cross(x0))
        else:
            hidden = torch.cat([self.cross(x0), self.deep(x0)], dim=1)
        return self.head(hidden).squeeze(1)
