"""Synthetic explicit ratings from hidden latent factors and biases (known ground truth).

    rating = clip(global_mean + user_bias[u] + item_bias[i] + <P[u], Q[i]> + noise, 1, 5)

optionally rounded to whole stars. Factors are scaled so ``<P[u], Q[i]>`` has unit
variance whatever the rank, so ``noise`` reads directly as a signal-to-noise knob.
Items are picked with a mild power-law popularity, users uniformly; each
(user, item) pair is rated at most once.

Example:
    >>> data = make_ratings_dataset(num_users=50, num_items=40, num_ratings=500, seed=0)
    >>> len(data.interactions), data.interactions.num_rows
    (500, {'user': 50, 'item': 40})
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Union

import numpy as np

from recembed.data.interactions import Interactions
from recembed.data.movielens import write_movielens
from recembed.errors import ConfigError

__all__ = ["RatingsDataset", "make_ratings_dataset", "sample_pairs", "latent_factors"]

_START_TIME = 1_000_000_000  # 2001-09-09, in the range of MovieLens timestamps
_SPAN = 3 * 365 * 86_400


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an int >= 1, got {value!r}")


def latent_factors(rng: np.random.Generator, count: int, rank: int) -> np.ndarray:
    """``(count, rank)`` float32 factors with ``Var(<p, q>) = 1`` for two independent rows."""
    return rng.normal(0.0, rank ** -0.25, (count, rank)).astype(np.float32)


def sample_pairs(
    rng: np.random.Generator, num_users: int, num_items: int, count: int, popularity_exponent: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct (user, item) pairs: users uniform, items by power-law popularity."""
    total = num_users * num_items
    if count > total:
        raise ConfigError(f"cannot draw {count} distinct pairs from {num_users} users x {num_items} items")
    if count > total // 4:
        keys = rng.choice(total, size=count, replace=False)
    else:
        weights = np.arange(1, num_items + 1, dtype=np.float64) ** -popularity_exponent
        item_of_rank = rng.permutation(num_items)
        cdf = np.cumsum(weights / weights.sum())
        keys = np.zeros(0, dtype=np.int64)
        for _ in range(32):  # a few rounds suffice unless popular items saturate
            if keys.size >= count:
                break
            draw = 2 * (count - keys.size) + 16
            users = rng.integers(0, num_users, draw)
            ranks = np.minimum(np.searchsorted(cdf, rng.random(draw), side="right"), num_items - 1)
            merged = np.concatenate((keys, users * num_items + item_of_rank[ranks]))
            # Keep the first occurrence of each pair, in draw order (deterministic).
            _, first = np.unique(merged, return_index=True)
            keys = merged[np.sort(first)]
        if keys.size < count:
            rest = np.setdiff1d(np.arange(total), keys)
            keys = np.concatenate((keys, rng.choice(rest, size=count - keys.size, replace=False)))
        keys = keys[:count]
    return (keys // num_items).astype(np.int64), (keys % num_items).astype(np.int64)


@dataclass(eq=False)
class RatingsDataset:
    """Generated ratings with the factors that produced them (rows index the factors)."""

    interactions: Interactions
    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray
    item_bias: np.ndarray
    global_mean: float
    noise: float

    def expected_ratings(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """Noise-free, unclipped ratings ``mean + b_u + b_i + <P[u], Q[i]>`` of the given pairs."""
        dots = np.einsum("nd,nd->n", self.user_factors[user_rows], self.item_factors[item_rows])
        return self.global_mean + self.user_bias[user_rows] + self.item_bias[item_rows] + dots

    def write_movielens(self, path: Union[str, os.PathLike], layout: str = "u.data") -> None:
        """Write the ratings as a MovieLens file (see :func:`~recembed.data.movielens.write_movielens`)."""
        write_movielens(self.interactions, path, layout=layout)


def make_ratings_dataset(
    num_users: int = 1000,
    num_items: int = 500,
    num_ratings: int = 50_000,
    rank: int = 8,
    noise: float = 0.5,
    seed: int = 0,
    *,
    round_ratings: bool = True,
    user_bias_std: float = 0.3,
    item_bias_std: float = 0.5,
    global_mean: float = 3.5,
) -> RatingsDataset:
    """Generate explicit 1..5 ratings (see the module docstring).

    Raw ids are 1-based like MovieLens (row ``r`` is raw id ``r + 1``) and every user
    and item has a row, rated or not, so rows index the factors directly. Timestamps
    are uniform over three years from 2001-09-09.
    """
    _check_positive(num_users=num_users, num_items=num_items, num_ratings=num_ratings, rank=rank)
    if noise < 0:
        raise ConfigError(f"noise must be >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    user_factors = latent_factors(rng, num_users, rank)
    item_factors = latent_factors(rng, num_items, rank)
    user_bias = rng.normal(0.0, user_bias_std, num_users).astype(np.float32)
    item_bias = rng.normal(0.0, item_bias_std, num_items).astype(np.float32)
    users, items = sample_pairs(rng, num_users, num_items, num_ratings)
    expected = (
        global_mean + user_bias[users] + item_bias[items]
        + np.einsum("nd,nd->n", user_factors[users], item_factors[items])
    )
    ratings = expected + rng.normal(0.0, noise, num_ratings)
    if round_ratings:
        ratings = np.round(ratings)
    ratings = np.clip(ratings, 1.0, 5.0).astype(np.float32)
    timestamps = _START_TIME + rng.integers(0, _SPAN, num_ratings)
    interactions = Interactions(
        user_rows=users,
        item_rows=items,
        ratings=ratings,
        timestamps=timestamps,
        user_ids=np.arange(1, num_users + 1, dtype=np.int64),
        item_ids=np.arange(1, num_items + 1, dtype=np.int64),
    )
    return RatingsDataset(
        interactions=interactions,
        user_factors=user_factors,
        item_factors=item_factors,
        user_bias=user_bias,
        item_bias=item_bias,
        global_mean=float(global_mean),
        noise=float(noise),
    )
