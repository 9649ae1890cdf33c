"""Matrix factorisation: a user vector dotted with an item vector, plus biases."""

from __future__ import annotations

import torch
from torch import nn

from recembed.errors import ConfigError, ShapeMismatchError
from recembed.models.embedding_setup import DEFAULT_EMBEDDING_LR, resolve_embedding_optimizer
from recembed.models.inputs import select_features
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig, OptimizerType, PoolingType
from recembed.tables.config import InitSpec
from recembed.tables.ids import ids_to_rows

__all__ = ["DotProduct"]


class DotProduct(nn.Module):
    """``score(u, i) = <p_u, q_i> + b_u + b_i + global_mean`` (biased matrix factorisation).

    Four tables: ``user_factors`` (num_users, d) and ``item_factors`` (num_items, d)
    initialised by ``init``, and the dim-1 ``user_bias`` / ``item_bias`` tables starting at
    zero. The factor tables sit in one :class:`EmbeddingBagCollection` and the biases in a
    second, because a collection maps each feature to one table. Bags are SUM-pooled, so a
    row with several user ids scores their summed vectors (the usual input has one id each).

    Args:
        num_users, num_items: table sizes; ids must lie in ``[0, num_users)`` / ``[0, num_items)``.
        embedding_dim: d.
        user_feature, item_feature: the batch keys holding user and item ids.
        use_biases: add the two bias tables.
        global_mean: a constant added to every score (e.g. the mean training rating); kept as
            a buffer, not trained.
        init: initialiser of the factor tables (see :mod:`recembed.tables.init`).
        embedding_optimizer: fused optimizer updating all four tables inside backward, or
            None for plain autograd (then a torch optimizer trains them).
        embedding_lr, weight_decay: the fused optimizer's step size and L2 decay. With
            ``embedding_optimizer=None`` put the decay on the torch optimizer instead.

    Shapes: ``forward(kjt)`` with stride B -> ``(B,)`` scores.

    Example:
        >>> model = DotProduct(100, 50, 8, embedding_optimizer=None)
        >>> kjt = KeyedJaggedTensor.from_lists({"user": [[3], [7]], "item": [[1], [4]]})
        >>> model(kjt).shape
        torch.Size([2])
        >>> model.score_items(torch.tensor([3, 7])).shape   # every item for two users
        torch.Size([2, 50])
    """

    global_mean: torch.Tensor

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int,
        user_feature: str = "user",
        item_feature: str = "item",
        use_biases: bool = True,
        global_mean: float = 0.0,
        init: InitSpec = "scaled_normal",
        embedding_optimizer: OptimizerType | str | None = OptimizerType.ROWWISE_ADAGRAD,
        embedding_lr: float = DEFAULT_EMBEDDING_LR,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        owner = "DotProduct"
        if user_feature == item_feature:
            raise ConfigError(f"{owner}: user_feature and item_feature are both '{user_feature}'; they must differ")
        optimizer = resolve_embedding_optimizer(embedding_optimizer, owner)
        if optimizer is None and weight_decay:
            raise ConfigError(
                f"{owner}: weight_decay={weight_decay} is applied by the fused embedding optimizer; with "
                "embedding_optimizer=None set weight_decay on the torch optimizer instead"
            )
        fused = {"optimizer": optimizer, "lr": embedding_lr, "weight_decay": weight_decay}
        self.user_feature = user_feature
        self.item_feature = item_feature
        self.use_biases = bool(use_biases)
        self.factors = EmbeddingBagCollection([
            EmbeddingBagConfig(name="user_factors", num_embeddings=num_users, embedding_dim=embedding_dim,
                               feature_names=[user_feature], init=init, pooling=PoolingType.SUM, **fused),
            EmbeddingBagConfig(name="item_factors", num_embeddings=num_items, embedding_dim=embedding_dim,
                               feature_names=[item_feature], init=init, pooling=PoolingType.SUM, **fused),
        ])
        self.biases: EmbeddingBagCollection | None = None
        if self.use_biases:
            self.biases = EmbeddingBagCollection([
                EmbeddingBagConfig(name="user_bias", num_embeddings=num_users, embedding_dim=1,
                                   feature_names=[user_feature], init="zeros", pooling=PoolingType.SUM, **fused),
                EmbeddingBagConfig(name="item_bias", num_embeddings=num_items, embedding_dim=1,
                                   feature_names=[item_feature], init="zeros", pooling=PoolingType.SUM, **fused),
            ])
        self.register_buffer("global_mean", torch.tensor(float(global_mean)))

    @property
    def num_users(self) -> int:
        return self._table("user_factors").num_embeddings

    @property
    def num_items(self) -> int:
        return self._table("item_factors").num_embeddings

    @property
    def embedding_dim(self) -> int:
        return self._table("user_factors").embedding_dim

    def _table(self, name: str) -> nn.Module:
        if name in self.factors.embedding_bags:
            return self.factors.embedding_bags[name]
        return self.biases.embedding_bags[name]

    def _weight(self, name: str) -> torch.Tensor:
        return self._table(name).weight.float()

    def forward(self, features: KeyedJaggedTensor) -> torch.Tensor:
        """Scores of the (user, item) pair in each row: ``features`` stride B -> ``(B,)``."""
        pair = select_features(features, [self.user_feature, self.item_feature], "DotProduct")
        pooled = self.factors(pair)
        scores = (pooled[self.user_feature] * pooled[self.item_feature]).sum(dim=1) + self.global_mean
        if self.biases is not None:
            scores = scores + self.biases(pair).values().sum(dim=1)
        return scores

    def score_items(self, user_rows: torch.Tensor, item_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every (user, item) combination, read straight from the tables.

        For evaluation and retrieval: no pooling, and fused tables are not updated by a
        backward through this. Wrap in ``torch.no_grad()`` when not training.

        Args:
            user_rows: ``(U,)`` user ids.
            item_rows: ``(I,)`` item ids, or None for all ``num_items`` items.
        Returns:
            ``(U, I)`` scores, equal to ``forward`` on each pair.
        """
        users = self._rows(user_rows, "user_factors", "user_rows")
        items = (torch.arange(self.num_items, device=users.device) if item_rows is None
                 else self._rows(item_rows, "item_factors", "item_rows"))
        scores = self._weight("user_factors")[users] @ self._weight("item_factors")[items].T + self.global_mean
        if self.biases is not None:
            scores = scores + self._weight("user_bias")[users] + self._weight("item_bias")[items].T
        return scores

    def _rows(self, rows: torch.Tensor, table: str, arg: str) -> torch.Tensor:
        rows = torch.as_tensor(rows)
        if rows.dim() != 1:
            raise ShapeMismatchError(f"DotProduct.score_items: {arg} must be 1-D, got shape {tuple(rows.shape)}")
        return ids_to_rows(rows, self._table(table).config, arg)

    def user_vectors(self, fold_bias: bool = False) -> torch.Tensor:
        """User factors ``(num_users, d)``; with ``fold_bias``, ``(num_users, d + 2)``.

        Folding appends the columns ``[1, b_u + global_mean]`` to users and
        ``[b_i, 1]`` to items (see :meth:`item_vectors`), so a plain inner product of the
        folded vectors is the full score ``<p_u, q_i> + b_u + b_i + global_mean``: an
        inner-product index (exact or approximate) then ranks by the model's own score.
        Without folding, the per-user terms do not change a user's ranking but the item
        bias does, so fold whenever biases are on.
        """
        factors = self._weight("user_factors").detach()
        if not fold_bias:
            return factors.clone()
        bias = self._bias_column("user_bias", self.num_users) + self.global_mean
        return torch.cat([factors, torch.ones_like(bias), bias], dim=1)

    def item_vectors(self, fold_bias: bool = False) -> torch.Tensor:
        """Item factors ``(num_items, d)``; with ``fold_bias``, ``(num_items, d + 2)`` = ``[q_i, b_i, 1]``."""
        factors = self._weight("item_factors").detach()
        if not fold_bias:
            return factors.clone()
        bias = self._bias_column("item_bias", self.num_items)
        return torch.cat([factors, bias, torch.ones_like(bias)], dim=1)

    def _bias_column(self, table: str, rows: int) -> torch.Tensor:
        if self.biases is None:
            return torch.zeros(rows, 1, device=self.global_mean.device)
        return self._weight(table).detach().clone()
