"""Node2Vec biased second-order random walks (Grover & Leskovec, 2016), in numba.

From ``cur``, having arrived from ``prev``, the walk moves to neighbour ``x`` of ``cur``
with probability proportional to ``w(cur, x) * alpha(prev, x)``, where

- ``alpha = 1/p`` if ``x == prev`` (return),
- ``alpha = 1``   if ``prev -> x`` is an arc (``x`` is a neighbour of ``prev``; in a
  directed graph: an out-neighbour of ``prev``),
- ``alpha = 1/q`` otherwise (move outward).

No per-edge transition tables are built (they would take memory proportional to the sum
of squared degrees). Each step draws a neighbour from the first-order distribution
``w(cur, x)`` (uniform slot, or binary search in the running sum of weights) and accepts
it with probability ``alpha / bound``, ``bound = max(1, 1/q)`` (rejection sampling).
Membership "``prev -> x``?" is a binary search in a sorted CSR row (for undirected graphs
the shorter of the rows of ``prev`` and ``x``), and is skipped when the uniform draw is
below ``min(1, 1/q)``, where every non-return ``x`` is accepted whatever the answer.
When ``1/p > bound`` the return arc is drawn as a separate point mass of weight
``w(cur, prev) * (1/p - bound)``, so a small ``p`` does not make every other proposal
fail; in undirected graphs ``w(cur, prev)`` is the weight of the arc just walked, in
directed graphs it is looked up (no return is possible without the arc ``cur -> prev``).
With ``p = q = 1`` (DeepWalk) steps are plain first-order draws with no rejection.

Walks run in parallel over walks (``prange``). Walk ``i`` has its own random stream
(SplitMix64 seeded from ``(seed, i)``), so the output depends only on ``seed``, never on
the thread count or scheduling.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from recembed.errors import ConfigError
from recembed.graph.csr import Graph

__all__ = ["random_walks", "check_walk_settings", "PAD"]

PAD = -1
"""Value filling a walk after it reaches a node with no out-neighbours."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53
_LOCKSTEP = 8  # walks a thread advances together


def random_walks(
    graph: Graph,
    walk_length: int = 80,
    walks_per_node: int = 10,
    p: float = 1.0,
    q: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Generate ``walks_per_node`` node2vec walks from every node.

    Walks are grouped in ``walks_per_node`` rounds; each round starts one walk from every
    node, in an order shuffled per round (from ``seed``), so a consumer that reads the
    walks in order (skip-gram with a decaying learning rate) sees nodes mixed.

    A walk that reaches a node with no out-neighbours (a sink in a directed graph, or an
    isolated node) stops there; the rest of its row is filled with ``PAD`` (-1). Every
    walk therefore begins with a real node, and padding only ever forms a suffix. Use
    ``row[row >= 0]`` to get a walk's nodes.

    Uses numba's current thread count (``numba.set_num_threads``); results do not
    depend on it.

    Args:
        graph: the graph (node indices ``0..N-1``; map back with ``graph.node_keys()``).
        walk_length: nodes per walk, >= 1 (the start node included).
        walks_per_node: walks started from each node, >= 1.
        p: return parameter, > 0 (small ``p`` makes stepping back likely).
        q: in-out parameter, > 0 (``q > 1`` stays local, ``q < 1`` moves outward).
        seed: non-negative integer; the same seed gives the same walks.
    Returns:
        int64 array ``(walks_per_node * N, walk_length)`` of node indices, ``PAD``-filled
        after dead ends. Rows ``r * N .. (r + 1) * N - 1`` are round ``r``.
    Raises:
        ConfigError: a parameter out of range, or a graph with no edges.

    Example:
        >>> g = Graph.from_edges([0, 1, 2], [1, 2, 3])
        >>> walks = random_walks(g, walk_length=5, walks_per_node=2, p=0.5, q=2.0)
        >>> walks.shape
        (8, 5)
    """
    _check_walk_config(graph, walk_length, walks_per_node, p, q, seed)
    rng = np.random.default_rng(seed)
    starts = np.concatenate(
        [rng.permutation(graph.num_nodes) for _ in range(walks_per_node)]
    ).astype(np.int64)
    walks = np.full((starts.shape[0], walk_length), PAD, dtype=np.int64)
    if graph.weighted:
        cumulative = graph.cumulative_weights()
        weights = graph.weights
    else:  # the kernel never reads these when unweighted
        cumulative = np.zeros(1, dtype=np.float64)
        weights = np.zeros(1, dtype=np.float32)
    _walk_kernel(
        graph.indptr, graph.indices, weights, cumulative, graph.weighted, graph.directed, starts, walks,
        1.0 / float(p), 1.0 / float(q), np.uint64(seed),
    )
    return walks


def check_walk_settings(walk_length: object, walks_per_node: object, p: object, q: object, seed: object) -> None:
    """Raise :class:`ConfigError` unless the walk settings are valid (see :func:`random_walks`).

    The one place these are checked: :func:`random_walks` and :class:`Node2Vec` both call it.
    """
    for name, value in (("walk_length", walk_length), ("walks_per_node", walks_per_node)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
    for name, value in (("p", p), ("q", q)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if not (math.isfinite(float(value)) and value > 0):
            raise ConfigError(f"{name} = {value!r} is not allowed; {name} must be finite and > 0")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise ConfigError(f"seed must be a non-negative int below 2**64, got {seed!r}")


def _check_walk_config(
    graph: Graph, walk_length: int, walks_per_node: int, p: float, q: float, seed: int
) -> None:
    if not isinstance(graph, Graph):
        raise ConfigError(f"graph must be a recembed.graph.Graph, got {type(graph).__name__}")
    check_walk_settings(walk_length, walks_per_node, p, q, seed)
    if graph.num_arcs == 0:
        raise ConfigError(
            f"the graph has {graph.num_nodes} nodes but no edges; every walk would stop at its start"
        )


# ---------------------------------------------------------------------- numba kernels
@numba.njit(cache=True, inline="always")
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def _next_unit(state):
    """SplitMix64 step: the new state and a uniform float64 in [0, 1)."""
    state = state + _GOLDEN
    return state, float(_mix64(state) >> np.uint64(11)) * _TO_UNIT


@numba.njit(cache=True, inline="always")
def _draw_slot(state, indptr, cumulative, weighted, node):
    """Draw an arc slot of ``node`` with probability proportional to its weight."""
    start = indptr[node]
    end = indptr[node + 1]
    state, u = _next_unit(state)
    if not weighted:
        slot = start + np.int64(u * (end - start))
        return state, min(slot, end - 1)
    low = cumulative[start - 1] if start > 0 else 0.0
    target = low + u * (cumulative[end - 1] - low)
    lo = start
    hi = end - 1
    while lo < hi:  # first slot whose running sum exceeds target
        mid = (lo + hi) >> 1
        if cumulative[mid] > target:
            hi = mid
        else:
            lo = mid + 1
    return state, lo


@numba.njit(cache=True, inline="always")
def _find_slot(indptr, indices, node, target):
    """Slot of arc ``node -> target`` by binary search in the sorted row, or -1."""
    base = indptr[node]
    n = indptr[node + 1] - base
    if n == 0:
        return -1
    # Branch-free halving: the select compiles to a conditional move, so a search costs
    # its loads but no mispredicted branches.
    while n > 1:
        half = n >> 1
        base = base + half if indices[base + half] <= target else base
        n -= half
    return base if indices[base] == target else -1


@numba.njit(cache=True, inline="always")
def _is_arc(indptr, indices, directed, u, v):
    """Whether ``u -> v`` is an arc; undirected graphs search the shorter of the two rows."""
    if not directed and indptr[v + 1] - indptr[v] < indptr[u + 1] - indptr[u]:
        return _find_slot(indptr, indices, v, u) >= 0
    return _find_slot(indptr, indices, u, v) >= 0


@numba.njit(cache=True, inline="always")
def _biased_step(state, indptr, indices, weights, cumulative, weighted, directed,
                 prev, cur, return_weight, inv_p, inv_q):
    """One second-order step from ``cur`` (arrived from ``prev``).

    ``return_weight`` is the weight of the arc ``cur -> prev`` when the caller knows it
    (undirected graphs: the arc just walked), or -1 to look it up.
    Returns ``(state, next node, weight of the arc taken)``.
    """
    bound = max(1.0, inv_q)
    low_alpha = min(1.0, inv_q)
    # Extra envelope mass on the return arc when 1/p exceeds the bound (see module docs).
    extra = 0.0
    total = 0.0
    if inv_p > bound:
        if return_weight < 0.0:
            slot = _find_slot(indptr, indices, cur, prev)
            if slot >= 0:
                return_weight = weights[slot] if weighted else 1.0
        if return_weight > 0.0:
            start = indptr[cur]
            end = indptr[cur + 1]
            if weighted:
                low = cumulative[start - 1] if start > 0 else 0.0
                total = (cumulative[end - 1] - low) * bound
            else:
                total = (end - start) * bound
            extra = return_weight * (inv_p - bound)
    while True:
        if extra > 0.0:
            state, u = _next_unit(state)
            if u * (total + extra) < extra:
                return state, np.int64(prev), return_weight
        state, slot = _draw_slot(state, indptr, cumulative, weighted, cur)
        x = np.int64(indices[slot])
        state, u = _next_unit(state)
        level = u * bound  # accept x when level < alpha(prev, x)
        if x == prev:
            accept = level < min(inv_p, bound)
        elif level < low_alpha:
            accept = True  # below both 1 and 1/q: no need to know whether prev -> x exists
        else:
            accept = level < (1.0 if _is_arc(indptr, indices, directed, prev, x) else inv_q)
        if accept:
            return state, x, (weights[slot] if weighted else 1.0)


@numba.njit(cache=True, parallel=True)
def _walk_kernel(indptr, indices, weights, cumulative, weighted, directed, starts, walks, inv_p, inv_q, seed):
    first_order = inv_p == 1.0 and inv_q == 1.0
    num_walks = starts.shape[0]
    walk_length = walks.shape[1]
    base = _mix64(seed + _GOLDEN)
    # Each thread advances a small block of walks in lockstep: their memory reads are
    # independent, so the CPU overlaps the cache misses (about 4x faster than one walk
    # at a time on large graphs). Walk i's random stream depends only on (seed, i).
    num_blocks = (num_walks + _LOCKSTEP - 1) // _LOCKSTEP
    for block in prange(num_blocks):
        first = block * _LOCKSTEP
        size = min(_LOCKSTEP, num_walks - first)
        state = np.empty(size, dtype=np.uint64)
        prev = np.full(size, -1, dtype=np.int64)
        cur = np.empty(size, dtype=np.int64)
        alive = np.ones(size, dtype=np.bool_)
        arc_weight = np.zeros(size, dtype=np.float64)  # weight of the arc prev -> cur
        for k in range(size):
            state[k] = _mix64(base ^ _mix64(np.uint64(first + k) + _GOLDEN))
            cur[k] = starts[first + k]
            walks[first + k, 0] = cur[k]
        for t in range(1, walk_length):
            for k in range(size):
                if not alive[k]:
                    continue
                node = cur[k]
                if indptr[node] == indptr[node + 1]:
                    alive[k] = False  # dead end: the row keeps its PAD suffix
                    continue
                if first_order or prev[k] < 0:
                    rng_state, slot = _draw_slot(state[k], indptr, cumulative, weighted, node)
                    nxt = np.int64(indices[slot])
                    taken = weights[slot] if weighted else 1.0
                else:
                    # Undirected: the arc back to prev has the weight of the arc just walked.
                    known = -1.0 if directed else arc_weight[k]
                    rng_state, nxt, taken = _biased_step(
                        state[k], indptr, indices, weights, cumulative, weighted, directed,
                        prev[k], node, known, inv_p, inv_q,
                    )
                arc_weight[k] = taken
                state[k] = rng_state
                prev[k] = node
                cur[k] = nxt
                walks[first + k, t] = nxt
