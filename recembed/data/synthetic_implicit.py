"""Synthetic implicit feedback (clicks, views) from hidden latent factors.

Each user ``u`` prefers item ``i`` by ``score(u, i) = <P[u], Q[i]> + item_bias[i]``; the
user's items are drawn without replacement from ``softmax(score(u, .) / temperature)``
(Gumbel top-k), so top-K / BPR / two-tower models can be checked against the true
scores. Timestamps are increasing per user, in random order of the drawn items (so the
latest item, held out by leave-last-out, is not biased to low or high scores).
Raw ids are 1-based (row ``r`` is raw id ``r + 1``), every user and item has a row.

Example:
    >>> data = make_implicit_dataset(num_users=30, num_items=50, interactions_per_user=5, seed=0)
    >>> data.interactions.num_rows, float(data.interactions.ratings.max())
    ({'user': 30, 'item': 50}, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recembed.data.interactions import Interactions
from recembed.data.synthetic_ratings import latent_factors
from recembed.errors import ConfigError

__all__ = ["ImplicitDataset", "make_implicit_dataset"]

_START_TIME = 1_000_000_000
_USER_BLOCK_CELLS = 1 << 22  # bound the (users x items) score block held at once


@dataclass(eq=False)
class ImplicitDataset:
    """Generated interactions (rating 1.0 each) with the factors that produced them."""

    interactions: Interactions
    user_factors: np.ndarray
    item_factors: np.ndarray
    item_bias: np.ndarray
    temperature: float

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """``(len(user_rows), num_items)`` true preference scores (higher = more likely)."""
        return self.user_factors[np.asarray(user_rows)] @ self.item_factors.T + self.item_bias

    def true_top_k(self, user_rows: np.ndarray, k: int) -> np.ndarray:
        """``(len(user_rows), k)`` items with the highest true scores, best first."""
        s = self.scores(user_rows)
        top = np.argpartition(-s, kth=min(k, s.shape[1]) - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1)


def make_implicit_dataset(
    num_users: int = 1000,
    num_items: int = 500,
    interactions_per_user: float = 20.0,
    rank: int = 8,
    temperature: float = 0.5,
    seed: int = 0,
    *,
    item_bias_std: float = 1.0,
) -> ImplicitDataset:
    """Generate implicit interactions (see the module docstring).

    Args:
        interactions_per_user: mean items per user; each user gets
            ``2 + Poisson(mean - 2)`` items (at least 2, so every user can be split
            leave-last-out), capped at ``num_items``.
        temperature: lower makes users pick their top-scored items more consistently.
        item_bias_std: spread of item popularity.
    """
    for name, value in (("num_users", num_users), ("num_items", num_items), ("rank", rank)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
    if num_items < 2 or interactions_per_user < 2:
        raise ConfigError(
            f"need num_items >= 2 and interactions_per_user >= 2, got {num_items} and {interactions_per_user}"
        )
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature!r}")
    rng = np.random.default_rng(seed)
    user_factors = latent_factors(rng, num_users, rank)
    item_factors = latent_factors(rng, num_items, rank)
    item_bias = rng.normal(0.0, item_bias_std, num_items).astype(np.float32)
    counts = np.minimum(2 + rng.poisson(interactions_per_user - 2.0, num_users), num_items)

    users_out, items_out = [], []
    block = max(1, _USER_BLOCK_CELLS // num_items)
    for start in range(0, num_users, block):
        stop = min(start + block, num_users)
        logits = (user_factors[start:stop] @ item_factors.T + item_bias) / temperature
        # Gumbel top-k = sampling without replacement from the softmax.
        keys = logits + rng.gumbel(size=logits.shape)
        order = np.argsort(-keys, axis=1, kind="stable")
        for offset, row in enumerate(order):
            user = start + offset
            chosen = row[: counts[user]]
            users_out.append(np.full(chosen.size, user, dtype=np.int64))
            items_out.append(chosen.astype(np.int64))
    users = np.concatenate(users_out)
    items = np.concatenate(items_out)

    # Per user: strictly increasing times (one event per hour on average), assigned to
    # the drawn items in random order.
    gaps = rng.integers(1, 7200, users.size)
    user_start = _START_TIME + rng.integers(0, 365 * 86_400, num_users)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    cumulative = np.cumsum(gaps)
    within = cumulative - np.repeat(cumulative[first] - gaps[first], counts)
    timestamps = user_start[users] + within
    shuffle = np.argsort(rng.random(users.size) + users, kind="stable")  # permute within users
    items = items[shuffle]

    interactions = Interactions(
        user_rows=users,
        item_rows=items,
        ratings=np.ones(users.size, dtype=np.float32),
        timestamps=timestamps,
        user_ids=np.arange(1, num_users + 1, dtype=np.int64),
        item_ids=np.arange(1, num_items + 1, dtype=np.int64),
    )
    return ImplicitDataset(
        interactions=interactions,
        user_factors=user_factors,
        item_factors=item_factors,
        item_bias=item_bias,
        temperature=float(temperature),
    )
