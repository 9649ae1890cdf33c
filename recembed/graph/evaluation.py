"""Scoring node embeddings against known communities: k-means and NMI, in numpy.

Example:
    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    >>> labels = kmeans(x, 2, seed=0)
    >>> normalized_mutual_info(labels, [0, 0, 1, 1])
    1.0
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from recembed.errors import ConfigError, ShapeMismatchError

__all__ = ["kmeans", "normalized_mutual_info"]


def kmeans(
    x: np.ndarray, k: int, n_init: int = 5, max_iter: int = 100, seed: int = 0
) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; the best of ``n_init`` runs by inertia.

    Args:
        x: ``(N, D)`` points.
        k: number of clusters, ``1 <= k <= N``.
        n_init: independent restarts. ``max_iter``: Lloyd iterations per restart.
        seed: random seed.
    Returns:
        int64 ``(N,)`` cluster of each point, in ``0..k-1``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ShapeMismatchError(f"x must be 2-D (N, D), got shape {x.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= x.shape[0]:
        raise ConfigError(f"k must be an int in 1..{x.shape[0]} (the number of points), got {k!r}")
    rng = np.random.default_rng(seed)
    squared_norms = (x * x).sum(axis=1)
    best_labels, best_inertia = None, np.inf
    for _ in range(max(1, n_init)):
        centers = _kmeans_plus_plus(x, k, rng)
        labels = np.full(x.shape[0], -1, dtype=np.int64)
        for _ in range(max_iter):
            distances = squared_norms[:, None] - 2.0 * x @ centers.T + (centers * centers).sum(axis=1)
            new_labels = distances.argmin(axis=1)
            if np.array_equal(new_labels, labels):
                break
            labels = new_labels
            for c in range(k):
                members = labels == c
                # An emptied cluster takes the point farthest from its center.
                centers[c] = x[members].mean(axis=0) if members.any() else x[distances.min(axis=1).argmax()]
        inertia = float(distances[np.arange(x.shape[0]), labels].sum())
        if inertia < best_inertia:
            best_labels, best_inertia = labels, inertia
    return best_labels


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centers = np.empty((k, x.shape[1]))
    centers[0] = x[rng.integers(x.shape[0])]
    closest = ((x - centers[0]) ** 2).sum(axis=1)
    for c in range(1, k):
        total = closest.sum()
        pick = rng.choice(x.shape[0], p=closest / total) if total > 0 else rng.integers(x.shape[0])
        centers[c] = x[pick]
        closest = np.minimum(closest, ((x - centers[c]) ** 2).sum(axis=1))
    return centers


def normalized_mutual_info(labels_a: Sequence[int], labels_b: Sequence[int]) -> float:
    """Normalised mutual information ``I(A; B) / ((H(A) + H(B)) / 2)`` of two labelings.

    Arithmetic-mean normalisation (scikit-learn's default). 1.0 means the labelings are
    the same up to renaming; about 0 means independent. Two single-cluster labelings
    score 1.0.

    Args:
        labels_a, labels_b: ``(N,)`` integer cluster labels.
    Returns:
        NMI in [0, 1].
    """
    a = np.asarray(labels_a)
    b = np.asarray(labels_b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ShapeMismatchError(f"labelings must be 1-D and equally long, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ConfigError("labelings are empty")
    _, a_ids = np.unique(a, return_inverse=True)
    _, b_ids = np.unique(b, return_inverse=True)
    joint = np.zeros((a_ids.max() + 1, b_ids.max() + 1))
    np.add.at(joint, (a_ids, b_ids), 1.0)
    joint /= a.size
    pa = joint.sum(axis=1)
    pb = joint.sum(axis=0)
    nonzero = joint > 0
    mutual = float((joint[nonzero] * np.log(joint[nonzero] / np.outer(pa, pb)[nonzero])).sum())
    entropy_a = float(-(pa * np.log(pa)).sum())
    entropy_b = float(-(pb * np.log(pb)).sum())
    if entropy_a == 0.0 and entropy_b == 0.0:
        return 1.0
    return max(0.0, min(1.0, mutual / ((entropy_a + entropy_b) / 2.0)))
