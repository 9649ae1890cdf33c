"""DeepFM (Guo et al. 2017): a factorization machine and a deep MLP sharing the field embeddings."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
from torch import nn

from recembed.errors import ConfigError
from recembed.models.embedding_setup import DEFAULT_EMBEDDING_LR, with_embedding_optimizer
from recembed.models.inputs import check_dense_in_features, check_dense_features, select_features
from recembed.models.interactions import fm_second_order
from recembed.models.mlp import MLP, ActivationSpec
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig, OptimizerType

__all__ = ["DeepFM"]


class DeepFM(nn.Module):
    """``logit = bias + first order + FM second order + deep(fields)``.

    Fields are the F sparse features' pooled embeddings (all tables must share one width
    k) plus, when there are dense features, one extra field ``Linear(n_dense, k)(dense)``
    (a DLRM-style projection, so dense values take part in the pairwise term).

    - First order: a dim-1, zero-initialised twin of every table (named
      ``<table>_linear``, same features and pooling), summed, plus ``Linear(n_dense, 1)``.
      The twins live in a second collection since a collection maps a feature to one table.
    - Second order: :func:`fm_second_order` over the fields, ``(sum^2 - sum of squares) / 2``.
    - Deep: an MLP over the concatenated fields ``(B, (F [+1]) k)`` with hidden widths
      ``deep_mlp`` (each followed by ``activation``), then a linear layer to one logit.

    Shapes: ``forward(dense (B, n_dense) or None when n_dense == 0, sparse KJT) -> (B,)``.

    Example:
        >>> tables = [EmbeddingBagConfig(name=f"t_{f}", num_embeddings=50, embedding_dim=8, feature_names=[f])
        ...           for f in ("ad", "site", "device")]
        >>> model = DeepFM(2, tables, deep_mlp=[32, 16], embedding_optimizer=None)
        >>> sparse = KeyedJaggedTensor.from_lists({"ad": [[1]], "site": [[2]], "device": [[3]]})
        >>> model(torch.randn(1, 2), sparse).shape
        torch.Size([1])
    """

    def __init__(
        self,
        dense_in_features: int,
        embedding_tables: Sequence[EmbeddingBagConfig],
        deep_mlp: Sequence[int] = (256, 128),
        activation: ActivationSpec = "relu",
        dropout: float = 0.0,
        embedding_optimizer: OptimizerType | str | None = OptimizerType.ROWWISE_ADAGRAD,
        embedding_lr: float = DEFAULT_EMBEDDING_LR,
    ) -> None:
        super().__init__()
        owner = "DeepFM"
        check_dense_in_features(dense_in_features, owner, minimum=0)
        tables = with_embedding_optimizer(embedding_tables, embedding_optimizer, embedding_lr, owner)
        if not tables:
            raise ConfigError(f"{owner}: needs at least one embedding table")
        dim = tables[0].embedding_dim
        for cfg in tables:
            if cfg.embedding_dim != dim:
                raise ConfigError(
                    f"{owner}: table '{cfg.name}' has embedding_dim={cfg.embedding_dim} but table "
                    f"'{tables[0].name}' has {dim}; the FM term needs one width for every field"
                )
        linear_tables = [
            replace(cfg, name=f"{cfg.name}_linear", embedding_dim=1, init="zeros", init_range=None)
            for cfg in tables
        ]
        self.dense_in_features = dense_in_features
        self.embedding_dim = dim
        self.embeddings = EmbeddingBagCollection(tables)
        self.first_order = EmbeddingBagCollection(linear_tables)
        self.features = self.embeddings.feature_names()
        self.dense_field = nn.Linear(dense_in_features, dim) if dense_in_features else None
        self.dense_linear = nn.Linear(dense_in_features, 1, bias=False) if dense_in_features else None
        self.bias = nn.Parameter(torch.zeros(()))
        num_fields = len(self.features) + (1 if dense_in_features else 0)
        self.deep = MLP(num_fields * dim, list(deep_mlp), activation=activation,
                        final_activation=activation if list(deep_mlp) else None, dropout=dropout)
        self.deep_head = nn.Linear(self.deep.out_features, 1)

    def fields(self, dense: torch.Tensor | None, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """The field vectors ``(B, F [+ 1], k)``: each feature's embedding, then the dense field."""
        return self._fields(*self._checked(dense, sparse))

    def forward(self, dense: torch.Tensor | None, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """Click logits ``(B,)``."""
        dense, sparse = self._checked(dense, sparse)
        fields = self._fields(dense, sparse)
        first = self.first_order(sparse).values().sum(dim=1)
        if self.dense_linear is not None:
            first = first + self.dense_linear(dense).squeeze(1)
        deep = self.deep_head(self.deep(fields.flatten(1))).squeeze(1)
        return self.bias + first + fm_second_order(fields) + deep

    def _checked(self, dense: torch.Tensor | None, sparse: KeyedJaggedTensor):
        sparse = select_features(sparse, self.features, "DeepFM")
        return check_dense_features(dense, self.dense_in_features, sparse.stride(), "DeepFM"), sparse

    def _fields(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        pooled = self.embeddings(sparse).values()
        fields = pooled.view(pooled.shape[0], len(self.features), self.embedding_dim)
        if self.dense_field is not None:
            fields = torch.cat([fields, self.dense_field(dense).unsqueeze(1)], dim=1)
        return fields
