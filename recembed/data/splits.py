"""Train/test splits of :class:`Interactions`, deterministic for a given input and seed.

Both parts keep the original event order and share the id maps, so a row means the
same user or item in train and test.
"""

from __future__ import annotations

import numpy as np

from recembed.data.interactions import Interactions
from recembed.errors import ConfigError

__all__ = ["random_split", "leave_last_out_split"]


def random_split(
    interactions: Interactions, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Interactions, Interactions]:
    """Send ``round(test_fraction * n)`` events, chosen at random by ``seed``, to test.

    Example:
        >>> train, test = random_split(data, test_fraction=0.1, seed=0)  # doctest: +SKIP
        >>> len(train) + len(test) == len(data)                          # doctest: +SKIP
        True
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    n = len(interactions)
    num_test = int(round(float(test_fraction) * n))
    rng = np.random.default_rng(int(seed))
    is_test = np.zeros(n, dtype=bool)
    is_test[rng.permutation(n)[:num_test]] = True
    return interactions.subset(~is_test), interactions.subset(is_test)


def leave_last_out_split(
    interactions: Interactions, min_interactions: int = 2
) -> tuple[Interactions, Interactions]:
    """Each user's latest event goes to test, the rest to train.

    "Latest" is the largest timestamp; among events with the same timestamp, the one
    that comes later in the table wins, so the split is deterministic. Users with fewer
    than ``min_interactions`` events keep them all in train (a user needs history to
    be evaluated on their next item).

    Example:
        >>> train, test = leave_last_out_split(data)  # doctest: +SKIP
        >>> len(test) == data.num_users               # doctest: +SKIP
        True
    """
    if interactions.timestamps is None:
        raise ConfigError("leave_last_out_split needs timestamps; these interactions have none")
    if isinstance(min_interactions, bool) or not isinstance(min_interactions, int) or min_interactions < 1:
        raise ConfigError(f"min_interactions must be an int >= 1, got {min_interactions!r}")
    n = len(interactions)
    if n == 0:
        return interactions.subset(np.zeros(0, dtype=np.int64)), interactions.subset(np.zeros(0, dtype=np.int64))
    users = interactions.user_rows
    # Sort by user, then timestamp, then position: the last event of each user group wins.
    order = np.lexsort((np.arange(n), interactions.timestamps, users))
    sorted_users = users[order]
    last_of_group = np.ones(n, dtype=bool)
    last_of_group[:-1] = sorted_users[:-1] != sorted_users[1:]
    counts = np.bincount(users, minlength=interactions.num_users)
    eligible = counts[sorted_users] >= min_interactions
    is_test = np.zeros(n, dtype=bool)
    is_test[order[last_of_group & eligible]] = True
    return interactions.subset(~is_test), interactions.subset(is_test)
