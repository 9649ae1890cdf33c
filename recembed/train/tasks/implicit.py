"""Implicit feedback, top-K recommendation: DotProduct (BPR or sampled softmax) or TwoTower.

Evaluation ranks every item for each user with a held-out item, hides the items the
user already interacted with (training events, and validation events when testing), and
reports Recall@K, NDCG@K and HitRate@K for every K in ``eval.ks``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from recembed.data import Batch, Interactions
from recembed.models import NegativeSampler, TwoTower, bpr_loss, sampled_softmax_loss
from recembed.train.ranking import rank_topk, ranking_metrics
from recembed.train.tasks.base import Projection, Task, id_kjt, table_config
from recembed.train.tasks.rating import build_dot_product, item_projection
from recembed.train.tasks.sources import load_interactions, split_interactions

__all__ = ["ImplicitTask", "per_user_items", "epoch_seed"]


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A seed for epoch ``epoch`` of random stream ``stream``, independent of the others."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, stream]).generate_state(1)[0])


def per_user_items(parts: Sequence[Interactions], users: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The items of each user in ``users`` (sorted ids) over ``parts``, as ``(flat ids, lengths)``."""
    user_rows = np.concatenate([p.user_rows for p in parts])
    item_rows = np.concatenate([p.item_rows for p in parts])
    position = np.searchsorted(users, user_rows)
    known = (position < len(users)) & (users[np.minimum(position, len(users) - 1)] == user_rows)
    position, items = position[known], item_rows[known]
    order = np.argsort(position, kind="stable")
    lengths = np.bincount(position, minlength=len(users))
    return torch.from_numpy(items[order].astype(np.int64)), torch.from_numpy(lengths.astype(np.int64))


class ImplicitTask(Task):
    """Learn which items a user interacts with; metrics ``recall@K``, ``ndcg@K``, ``hit_rate@K``."""

    name = "implicit"

    def load_data(self) -> None:
        self.events = load_interactions(self.config)
        self.train, self.val, self.test = split_interactions(self.config, self.events)
        counts = np.bincount(self.train.item_rows, minlength=self.events.num_items).astype(np.float64)
        self.item_counts = torch.from_numpy(counts)
        # log of the chance that an item is the positive of a training example (for log-Q).
        self.item_log_q = torch.log(torch.from_numpy(np.maximum(counts, 0.5) / counts.sum())).float()
        t = self.config.train
        self._train_source = self.train.to_batches(t.batch_size, shuffle=True, seed=t.seed, drop_last=t.drop_last)
        self.sampler: Optional[NegativeSampler] = None

    @property
    def num_train_samples(self) -> Optional[int]:
        return len(self.train)

    def describe(self) -> str:
        e = self.events
        return (f"implicit: {len(e)} interactions, {e.num_users} users, {e.num_items} items; train {len(self.train)}, "
                f"val {len(self.val)}{' (= test)' if self.val is self.test else ''}, test {len(self.test)}")

    # ---- model and loss -----------------------------------------------------------------
    def build_model(self) -> nn.Module:
        m, e = self.config.model, self.events
        if m.kind == "dot_product":
            return build_dot_product(self.config, e.num_users, e.num_items)
        return TwoTower([table_config(self.config, "t_user", e.num_users, "user")],
                        [table_config(self.config, "t_item", e.num_items, "item")],
                        tower_dims=m.tower_dims, temperature=m.temperature, normalize=m.normalize,
                        item_id_feature="item", activation=m.activation, dropout=m.dropout,
                        embedding_optimizer=None)  # the table configs carry the fused optimizer

    def start_epoch(self, epoch: int) -> None:
        m = self.config.model
        if m.kind != "dot_product":
            return
        seed = epoch_seed(self.config.train.seed, epoch, stream=1)
        if m.negative_sampling == "popularity":
            self.sampler = NegativeSampler.from_counts(self.item_counts, power=0.75, seed=seed)
        else:
            self.sampler = NegativeSampler(self.events.num_items, seed=seed)

    def prepare_batch(self, batch: Batch) -> Batch:
        if self.sampler is not None:  # runs in the loader thread: sampling overlaps the model's work
            negatives, log_q = self.sampler.sample(len(batch), self.config.model.num_negatives)
            batch.extra["negatives"], batch.extra["negative_log_q"] = negatives, log_q
        return batch

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        m = self.config.model
        users, items = batch.sparse["user"].values(), batch.sparse["item"].values()
        if m.kind == "two_tower":
            log_q = self.item_log_q[items] if m.logq_correction else None
            return model.loss(batch.sparse, batch.sparse, item_log_q=log_q)
        negatives = batch.extra["negatives"]
        size, k = negatives.shape
        # One forward over positives and negatives: one fused update per step.
        scores = model(id_kjt({"user": torch.cat([users, users.repeat_interleave(k)]),
                               "item": torch.cat([items, negatives.reshape(-1)])}))
        positive, negative = scores[:size], scores[size:].view(size, k)
        if m.loss == "bpr":
            return bpr_loss(positive, negative)
        log_q_pos = log_q_neg = None
        if m.logq_correction:
            log_q_pos = self.sampler.log_q(items) if self.sampler is not None else None
            log_q_neg = batch.extra["negative_log_q"]
        hits = negatives == items.unsqueeze(1)  # a sampled "negative" that is the positive itself
        return sampled_softmax_loss(positive, negative, log_q_pos, log_q_neg, neg_mask=hits)

    # ---- evaluation ---------------------------------------------------------------------
    def vectors(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """``(user vectors (U, d'), item vectors (I, d'))`` whose inner product ranks items."""
        if self.config.model.kind == "dot_product":
            return model.user_vectors(fold_bias=True), model.item_vectors(fold_bias=True)
        chunk = self.config.eval.batch_size
        with torch.no_grad():
            users = [model.user_embeddings(id_kjt({"user": torch.arange(s, min(s + chunk, self.events.num_users))}))
                     for s in range(0, self.events.num_users, chunk)]
            items = [model.item_embeddings(id_kjt({"item": torch.arange(s, min(s + chunk, self.events.num_items))}))
                     for s in range(0, self.events.num_items, chunk)]
        return torch.cat(users), torch.cat(items)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        held_out = self.val if split == "val" else self.test
        seen = [self.train] if (split == "val" or self.val is self.test) else [self.train, self.val]
        users = np.unique(held_out.user_rows)
        user_vectors, item_vectors = self.vectors(model)
        ks = self.config.eval.ks
        exclude = per_user_items(seen, users)
        top = rank_topk(user_vectors[torch.from_numpy(users)], item_vectors, max(ks), exclude=exclude)
        scores = ranking_metrics(top, per_user_items([held_out], users), ks)
        return {name: score.value for name, score in scores.items()}

    def feature_id_maps(self) -> dict[str, np.ndarray]:
        return {"user": self.events.user_ids, "item": self.events.item_ids}

    def projection(self, model: nn.Module, max_rows: int = 5000) -> Optional[Projection]:
        return item_projection(self.vectors(model)[1], self.train, max_rows)
