"""Synthetic graphs for tests and benchmarks, in numpy (no networkx needed).

- :func:`planted_partition_edges`: equal-size communities, edge probability ``p_in``
  inside a community and ``p_out`` across (a stochastic block model).
- :func:`chung_lu_edges`: a power-law degree graph (Chung & Lu, 2002): both endpoints
  of each edge are drawn with probability proportional to a node's expected degree.
"""

from __future__ import annotations

import numpy as np

from recembed.errors import ConfigError

__all__ = ["planted_partition_edges", "chung_lu_edges"]

_MAX_PAIRS = 50_000_000  # planted_partition_edges enumerates node pairs


def planted_partition_edges(
    num_groups: int, group_size: int, p_in: float, p_out: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected planted-partition graph; node ``v`` is in community ``v // group_size``.

    Every unordered pair of distinct nodes is an edge independently, with probability
    ``p_in`` (same community) or ``p_out`` (different). Enumerates all pairs, so it is
    meant for graphs of at most a few thousand nodes.

    Args:
        num_groups: number of communities, >= 1.
        group_size: nodes per community, >= 1.
        p_in: within-community edge probability in [0, 1].
        p_out: between-community edge probability in [0, 1].
        seed: random seed.
    Returns:
        ``(src, dst, labels)``: int64 ``(E,)`` edges with ``src < dst``, and int64
        ``(num_groups * group_size,)`` community of each node.

    Example:
        >>> src, dst, labels = planted_partition_edges(2, 5, 1.0, 0.0)
        >>> src.shape, labels.tolist()
        ((20,), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    """
    for name, value in (("num_groups", num_groups), ("group_size", group_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
    for name, value in (("p_in", p_in), ("p_out", p_out)):
        if not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{name} = {value!r} must be a probability in [0, 1]")
    n = int(num_groups) * int(group_size)
    if n * (n - 1) // 2 > _MAX_PAIRS:
        raise ConfigError(
            f"{n} nodes give {n * (n - 1) // 2} node pairs, more than the {_MAX_PAIRS} this "
            "pair-enumerating generator allows; use fewer nodes"
        )
    labels = np.arange(n, dtype=np.int64) // int(group_size)
    src, dst = np.triu_indices(n, k=1)
    same = labels[src] == labels[dst]
    prob = np.where(same, float(p_in), float(p_out))
    keep = np.random.default_rng(seed).random(src.shape[0]) < prob
    return src[keep].astype(np.int64), dst[keep].astype(np.int64), labels


def chung_lu_edges(
    num_nodes: int, num_edges: int, exponent: float = 2.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``num_edges`` edges of a power-law (Chung-Lu) graph.

    Node ``i`` gets weight ``(i + 1) ** (-1 / (exponent - 1))``, which gives a degree
    distribution with tail ``P(deg = k) ~ k ** -exponent``; both endpoints of every edge
    are drawn independently in proportion to the weights. Self-loops and repeated pairs
    may occur (``Graph.from_edges`` drops and merges them), so the cleaned graph has
    somewhat fewer edges than drawn.

    Args:
        num_nodes: number of nodes, >= 2.
        num_edges: edges to draw, >= 1.
        exponent: power-law exponent of the degree distribution, > 2.
        seed: random seed.
    Returns:
        ``(src, dst)``, int64 ``(num_edges,)`` each.

    Example:
        >>> src, dst = chung_lu_edges(1000, 5000)
        >>> src.shape
        (5000,)
    """
    if not isinstance(num_nodes, (int, np.integer)) or num_nodes < 2:
        raise ConfigError(f"num_nodes must be an int >= 2, got {num_nodes!r}")
    if not isinstance(num_edges, (int, np.integer)) or num_edges < 1:
        raise ConfigError(f"num_edges must be an int >= 1, got {num_edges!r}")
    if not float(exponent) > 2.0:
        raise ConfigError(f"exponent = {exponent!r} must be > 2 for a finite mean degree")
    rng = np.random.default_rng(seed)
    weight = np.arange(1, int(num_nodes) + 1, dtype=np.float64) ** (-1.0 / (float(exponent) - 1.0))
    cumulative = np.cumsum(weight)
    cumulative /= cumulative[-1]
    # Shuffle node labels so hubs are not simply the lowest ids.
    labels = rng.permutation(int(num_nodes))

    def draw() -> np.ndarray:
        picks = np.searchsorted(cumulative, rng.random(int(num_edges)), side="right")
        return labels[np.minimum(picks, int(num_nodes) - 1)].astype(np.int64)

    return draw(), draw()
