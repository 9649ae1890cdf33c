import numpy as np
import pytest


def gaussian_mixture(num_rows: int, dim: int, clusters: int, std: float, seed: int) -> np.ndarray:
    """``(num_rows, dim)`` float32 points around ``clusters`` random N(0, I) centres."""
    centres = np.random.default_rng(1000 + dim).standard_normal((clusters, dim))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, num_rows)
    return (centres[labels] + std * rng.standard_normal((num_rows, dim))).astype(np.float32)


def brute_force(queries: np.ndarray, vectors: np.ndarray, k: int, metric: str, exclude=None):
    """Reference top-k in float64 numpy: (scores, rows), best first, -inf / -1 padded."""
    q, x = queries.astype(np.float64), vectors.astype(np.float64)
    if metric == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    scores = q @ x.T
    if exclude is not None:
        for row, ids in enumerate(exclude):
            scores[row, list(ids)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    order[top == -np.inf] = -1
    return top, order


@pytest.fixture
def random_data():
    rng = np.random.default_rng(7)
    return rng.standard_normal((1000, 12)).astype(np.float32), rng.standard_normal((37, 12)).astype(np.float32)
