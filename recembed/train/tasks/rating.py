"""Explicit rating prediction: biased matrix factorisation trained with MSE; RMSE and MAE."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from recembed.data import Batch, Interactions
from recembed.errors import ConfigError
from recembed.models import DotProduct, mse_loss
from recembed.train.metrics import MetricAccumulator
from recembed.train.tasks.base import Projection, Task, pointwise_outputs
from recembed.train.tasks.sources import load_interactions, split_interactions

__all__ = ["RatingTask", "build_dot_product", "item_projection"]


def build_dot_product(config, num_users: int, num_items: int, global_mean: float = 0.0) -> DotProduct:
    """The ``[model]`` section's DotProduct (biased MF) over ``num_users`` x ``num_items``."""
    m = config.model
    optimizer = None if m.embedding_optimizer == "none" else m.embedding_optimizer
    if optimizer is None and m.embedding_weight_decay:
        raise ConfigError("model.embedding_weight_decay is applied by the fused embedding optimizer; with "
                          "model.embedding_optimizer = 'none' use train.dense_weight_decay instead")
    options = {"init": m.init} if m.init else {}
    return DotProduct(num_users, num_items, m.embedding_dim, use_biases=m.use_biases, global_mean=global_mean,
                      embedding_optimizer=optimizer, embedding_lr=m.embedding_lr,
                      weight_decay=m.embedding_weight_decay, **options)


def item_projection(vectors: torch.Tensor, events: Interactions, max_rows: int) -> Projection:
    """The ``max_rows`` most popular items' vectors, labelled with raw id and count."""
    counts = np.bincount(events.item_rows, minlength=events.num_items)
    rows = np.argsort(-counts, kind="stable")[:max_rows]
    labels = [[str(events.item_ids[r]), str(int(counts[r]))] for r in rows]
    return Projection("items", vectors[torch.from_numpy(rows)], labels, ["item", "train_count"])


class RatingTask(Task):
    """Predict ratings; metrics ``rmse`` and ``mae`` (predictions clipped to the rating range)."""

    name = "rating"

    def load_data(self) -> None:
        events = load_interactions(self.config)
        self.events = events
        self.train, self.val, self.test = split_interactions(self.config, events)
        self.global_mean = float(self.train.ratings.mean())
        self.rating_range = (float(self.train.ratings.min()), float(self.train.ratings.max()))
        t = self.config.train
        self._train_source = self.train.to_batches(t.batch_size, shuffle=True, seed=t.seed, drop_last=t.drop_last)

    @property
    def num_train_samples(self) -> Optional[int]:
        return len(self.train)

    def describe(self) -> str:
        e = self.events
        return (f"rating: {len(e)} ratings, {e.num_users} users, {e.num_items} items; train {len(self.train)}, "
                f"val {len(self.val)}{' (= test)' if self.val is self.test else ''}, test {len(self.test)}; "
                f"mean rating {self.global_mean:.3f}")

    def build_model(self) -> nn.Module:
        return build_dot_product(self.config, self.events.num_users, self.events.num_items, self.global_mean)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return mse_loss(model(batch.sparse), batch.labels)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        part = self.val if split == "val" else self.test
        predictions, targets = pointwise_outputs(part.to_batches(self.config.eval.batch_size),
                                                 lambda batch: model(batch.sparse))
        if self.config.eval.clip_predictions:
            predictions = predictions.clamp(*self.rating_range)
        accumulator = MetricAccumulator(["rmse", "mae"])
        accumulator.update(predictions, targets)
        return accumulator.compute()

    def feature_id_maps(self) -> dict[str, np.ndarray]:
        return {"user": self.events.user_ids, "item": self.events.item_ids}

    def projection(self, model: nn.Module, max_rows: int = 5000) -> Optional[Projection]:
        return item_projection(model.item_vectors(), self.train, max_rows)
