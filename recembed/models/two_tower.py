"""Two-tower retrieval model trained with an in-batch softmax and log-Q correction."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from recembed.errors import ConfigError, ShapeMismatchError
from recembed.models.embedding_setup import DEFAULT_EMBEDDING_LR, with_embedding_optimizer
from recembed.models.inputs import check_one_id_per_row, select_features
from recembed.models.mlp import MLP, ActivationSpec
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig, OptimizerType

__all__ = ["TwoTower", "in_batch_softmax_loss"]


def in_batch_softmax_loss(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    temperature: float = 1.0,
    item_log_q: torch.Tensor | None = None,
    item_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax over the batch's items: row b's positive is item b, the other items its negatives.

    ``logits[b, j] = <u_b, i_j> / temperature - log_q[j]``; loss is the mean of
    ``-log softmax(logits[b])[b]``. The log-Q term (Yi et al., RecSys 2019) undoes the
    popularity bias of in-batch negatives: a popular item is a negative in many rows, so
    without the correction the model learns to push popular items down.

    Duplicates: when ``item_ids`` is given, a column ``j != b`` holding the same item as
    row b's positive is masked out (logit -inf) for row b: it is the positive again, not
    a negative, so it must neither be pushed down nor compete with the diagonal. Each row
    keeps exactly one positive (its own diagonal), so the loss of a batch with duplicates
    equals that of the batch with the repeats removed from each row's negatives.

    Args:
        user_emb: ``(B, d)``.
        item_emb: ``(B, d)``; row b is the item user b interacted with.
        temperature: divides the dot products (> 0).
        item_log_q: ``(B,)`` log probability that item j appears in a batch, or None.
        item_ids: ``(B,)`` integer item ids for duplicate masking, or None (no masking).
    Returns:
        scalar loss.
    """
    if user_emb.dim() != 2 or item_emb.shape != user_emb.shape:
        raise ShapeMismatchError(
            f"in_batch_softmax_loss: user_emb and item_emb must both be (B, d), got "
            f"{tuple(user_emb.shape)} and {tuple(item_emb.shape)}"
        )
    if not temperature > 0:
        raise ConfigError(f"in_batch_softmax_loss: temperature must be > 0, got {temperature}")
    batch = user_emb.shape[0]
    logits = user_emb @ item_emb.T / temperature
    if item_log_q is not None:
        if item_log_q.shape != (batch,):
            raise ShapeMismatchError(f"in_batch_softmax_loss: item_log_q must be ({batch},), got {tuple(item_log_q.shape)}")
        logits = logits - item_log_q.to(logits.dtype).unsqueeze(0)
    if item_ids is not None:
        if item_ids.shape != (batch,):
            raise ShapeMismatchError(f"in_batch_softmax_loss: item_ids must be ({batch},), got {tuple(item_ids.shape)}")
        same = item_ids.unsqueeze(1) == item_ids.unsqueeze(0)
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same.to(logits.device), float("-inf"))
    labels = torch.arange(batch, device=logits.device)
    return F.cross_entropy(logits, labels)


class _Tower(nn.Module):
    """Pooled embeddings of one side's features, concatenated, then an MLP."""

    def __init__(self, tables: list[EmbeddingBagConfig], dims: Sequence[int], activation: ActivationSpec,
                 dropout: float) -> None:
        super().__init__()
        self.embeddings = EmbeddingBagCollection(tables)
        self.features = self.embeddings.feature_names()
        width = sum(cfg.embedding_dim * len(cfg.feature_names) for cfg in tables)
        self.mlp = MLP(width, list(dims), activation=activation, dropout=dropout)

    def forward(self, features: KeyedJaggedTensor, owner: str) -> torch.Tensor:
        pooled = self.embeddings(select_features(features, self.features, owner))
        return self.mlp(pooled.values())


class TwoTower(nn.Module):
    """Separate user and item towers meeting in one dot product, for retrieval.

    Each tower pools its features with its own :class:`EmbeddingBagCollection` (several
    features, multi-hot bags and different table widths are all fine), concatenates them
    and runs an :class:`MLP` with ``tower_dims`` (last entry = output dim d; the final
    layer has no activation). With ``normalize`` the outputs are L2-normalised, so the
    dot product is a cosine and ``temperature`` sets the softmax's sharpness. An empty
    ``tower_dims`` uses the concatenated embeddings directly (both sides must then have
    the same width).

    ``forward(user_kjt, item_kjt)`` returns the ``(B,)`` logits ``<u_b, i_b> / temperature``
    of the paired rows (for scoring or a pointwise loss); train with :meth:`loss`, the
    in-batch softmax. For retrieval, index ``item_embeddings`` of the whole catalogue and
    query with ``user_embeddings``.

    Args:
        user_tables, item_tables: table configs of each tower.
        tower_dims: MLP widths of each tower.
        temperature: softmax temperature (> 0).
        normalize: L2-normalise tower outputs.
        item_id_feature: item-side feature holding one item id per row; :meth:`loss`
            uses it to mask in-batch duplicates (None: no masking unless ids are passed).
        activation, dropout: of the tower MLPs.
        embedding_optimizer, embedding_lr: fused optimizer for tables that set none
            (see :func:`~recembed.models.embedding_setup.with_embedding_optimizer`).

    Example:
        >>> model = TwoTower(
        ...     [EmbeddingBagConfig(name="t_user", num_embeddings=100, embedding_dim=16, feature_names=["user"])],
        ...     [EmbeddingBagConfig(name="t_item", num_embeddings=50, embedding_dim=16, feature_names=["item"]),
        ...      EmbeddingBagConfig(name="t_tag", num_embeddings=20, embedding_dim=4, feature_names=["tags"])],
        ...     tower_dims=[32, 8], item_id_feature="item", embedding_optimizer=None)
        >>> users = KeyedJaggedTensor.from_lists({"user": [[1], [2]]})
        >>> items = KeyedJaggedTensor.from_lists({"item": [[3], [3]], "tags": [[1, 5], []]})
        >>> model.user_embeddings(users).shape, model.loss(users, items).shape
        (torch.Size([2, 8]), torch.Size([]))
    """

    def __init__(
        self,
        user_tables: Sequence[EmbeddingBagConfig],
        item_tables: Sequence[EmbeddingBagConfig],
        tower_dims: Sequence[int],
        temperature: float = 0.05,
        normalize: bool = True,
        item_id_feature: str | None = None,
        activation: ActivationSpec = "relu",
        dropout: float = 0.0,
        embedding_optimizer: OptimizerType | str | None = OptimizerType.ROWWISE_ADAGRAD,
        embedding_lr: float = DEFAULT_EMBEDDING_LR,
    ) -> None:
        super().__init__()
        owner = "TwoTower"
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ConfigError(f"{owner}: temperature must be a number > 0, got {temperature!r}")
        users = with_embedding_optimizer(user_tables, embedding_optimizer, embedding_lr, f"{owner} user tower")
        items = with_embedding_optimizer(item_tables, embedding_optimizer, embedding_lr, f"{owner} item tower")
        self.user_tower = _Tower(users, tower_dims, activation, dropout)
        self.item_tower = _Tower(items, tower_dims, activation, dropout)
        if self.user_tower.mlp.out_features != self.item_tower.mlp.out_features:
            raise ConfigError(
                f"{owner}: with tower_dims=[] the towers output their concatenated embeddings, of width "
                f"{self.user_tower.mlp.out_features} (user) and {self.item_tower.mlp.out_features} (item); "
                "make them equal or give tower_dims"
            )
        if item_id_feature is not None and item_id_feature not in self.item_tower.features:
            raise ConfigError(
                f"{owner}: item_id_feature '{item_id_feature}' is not an item-tower feature "
                f"({self.item_tower.features})"
            )
        self.temperature = float(temperature)
        self.normalize = bool(normalize)
        self.item_id_feature = item_id_feature

    @property
    def output_dim(self) -> int:
        return self.user_tower.mlp.out_features

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) if self.normalize else x

    def user_embeddings(self, user_features: KeyedJaggedTensor) -> torch.Tensor:
        """User tower: ``user_features`` stride B -> ``(B, d)``."""
        return self._finish(self.user_tower(user_features, "TwoTower user tower"))

    def item_embeddings(self, item_features: KeyedJaggedTensor) -> torch.Tensor:
        """Item tower: ``item_features`` stride B -> ``(B, d)``."""
        return self._finish(self.item_tower(item_features, "TwoTower item tower"))

    def _embed_pair(self, user_features: KeyedJaggedTensor, item_features: KeyedJaggedTensor):
        if user_features.stride() != item_features.stride():
            raise ShapeMismatchError(
                f"TwoTower: user batch has {user_features.stride()} rows but item batch has {item_features.stride()}"
            )
        return self.user_embeddings(user_features), self.item_embeddings(item_features)

    def forward(self, user_features: KeyedJaggedTensor, item_features: KeyedJaggedTensor) -> torch.Tensor:
        """Logits of the paired rows: ``(B,)`` = ``<u_b, i_b> / temperature``."""
        u, i = self._embed_pair(user_features, item_features)
        return (u * i).sum(dim=1) / self.temperature

    def in_batch_softmax_loss(
        self,
        user_emb: torch.Tensor,
        item_emb: torch.Tensor,
        item_log_q: torch.Tensor | None = None,
        item_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:func:`in_batch_softmax_loss` at this model's temperature."""
        return in_batch_softmax_loss(user_emb, item_emb, self.temperature, item_log_q, item_ids)

    def loss(
        self,
        user_features: KeyedJaggedTensor,
        item_features: KeyedJaggedTensor,
        item_log_q: torch.Tensor | None = None,
        item_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embed both sides and return the in-batch softmax loss (scalar).

        ``item_ids`` defaults to the ``item_id_feature`` column of ``item_features``;
        ``item_log_q`` (B,) comes e.g. from :class:`StreamingFrequencyEstimator`.
        """
        u, i = self._embed_pair(user_features, item_features)
        if item_ids is None and self.item_id_feature is not None:
            item_ids = check_one_id_per_row(item_features, self.item_id_feature, "TwoTower.loss")
        return self.in_batch_softmax_loss(u, i, item_log_q, item_ids)
