import numba
import numpy as np
import pytest

from recembed.errors import ConfigError
from recembed.graph import PAD, Graph, random_walks
from recembed.graph.generators import chung_lu_edges


def arcs_of(g):
    rows = np.repeat(np.arange(g.num_nodes), g.degrees())
    return set(zip(rows.tolist(), g.indices.tolist()))


def test_walks_only_step_along_edges():
    src, dst = chung_lu_edges(300, 1500, seed=3)
    g = Graph.from_edges(src, dst, num_nodes=300)
    walks = random_walks(g, walk_length=12, walks_per_node=3, p=0.5, q=2.0, seed=1)
    assert walks.shape == (900, 12) and walks.dtype == np.int64
    arcs = arcs_of(g)
    steps = np.stack([walks[:, :-1].ravel(), walks[:, 1:].ravel()], axis=1)
    steps = steps[steps[:, 1] != PAD]
    assert all((a, b) in arcs for a, b in steps.tolist())
    # Every node starts exactly walks_per_node walks, one per round.
    for r in range(3):
        assert sorted(walks[r * 300 : (r + 1) * 300, 0].tolist()) == list(range(300))


def test_dead_ends_pad_the_suffix():
    g = Graph.from_edges([0, 1], [1, 2], directed=True, num_nodes=4)  # 0 -> 1 -> 2, 3 isolated
    walks = random_walks(g, walk_length=5, walks_per_node=1, p=2.0, q=0.5)
    by_start = {int(w[0]): w.tolist() for w in walks}
    assert by_start == {
        0: [0, 1, 2, PAD, PAD],
        1: [1, 2, PAD, PAD, PAD],
        2: [2, PAD, PAD, PAD, PAD],
        3: [3, PAD, PAD, PAD, PAD],
    }


def test_walk_length_one_is_just_the_start_nodes():
    g = Graph.from_edges([0, 1], [1, 2])
    walks = random_walks(g, walk_length=1, walks_per_node=2)
    assert walks.shape == (6, 1) and sorted(walks[:3, 0].tolist()) == [0, 1, 2]


def test_same_seed_same_walks_for_any_thread_count():
    src, dst = chung_lu_edges(200, 1000, seed=0)
    g = Graph.from_edges(src, dst, weights=np.linspace(0.5, 3.0, 1000), num_nodes=200)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = random_walks(g, walk_length=20, walks_per_node=2, p=0.3, q=1.7, seed=5)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = random_walks(g, walk_length=20, walks_per_node=2, p=0.3, q=1.7, seed=5)
    finally:
        numba.set_num_threads(previous)
    assert np.array_equal(one, many)
    other = random_walks(g, walk_length=20, walks_per_node=2, p=0.3, q=1.7, seed=6)
    assert not np.array_equal(one, other)


def second_step_frequencies(g, prev, cur, p, q, walks_per_node=20000):
    """Empirical distribution of the node after (prev, cur), over walks that start so."""
    walks = random_walks(g, walk_length=3, walks_per_node=walks_per_node, p=p, q=q, seed=11)
    chosen = walks[(walks[:, 0] == prev) & (walks[:, 1] == cur), 2]
    return np.bincount(chosen, minlength=g.num_nodes) / chosen.size, chosen.size


# Triangle 0-1-2 with a tail 1-3-4. Arriving at 1 from 0: going back to 0 is a return
# (1/p), 2 is also a neighbour of 0 (1), 3 is farther from 0 (1/q).
TRIANGLE_PLUS_TAIL = ([0, 1, 2, 1, 3], [1, 2, 0, 3, 4])


@pytest.mark.parametrize("p, q", [(1.0, 1.0), (0.25, 4.0), (4.0, 0.25), (2.0, 0.5), (0.5, 0.5)])
def test_second_order_bias_matches_node2vec_probabilities(p, q):
    g = Graph.from_edges(*TRIANGLE_PLUS_TAIL)
    freq, samples = second_step_frequencies(g, prev=0, cur=1, p=p, q=q)
    expected = np.array([1 / p, 1.0, 1 / q]) / (1 / p + 1.0 + 1 / q)
    assert samples > 4000
    np.testing.assert_allclose(freq[[0, 2, 3]], expected, atol=0.02)
    assert freq[4] == 0.0  # not a neighbour of 1


@pytest.mark.parametrize("p, q", [(1.0, 1.0), (0.2, 2.0), (3.0, 0.5), (0.5, 0.25)])
def test_weighted_second_order_bias(p, q):
    # Weights on 1's edges: 1-0 = 1.5, 1-2 = 2, 1-3 = 3.
    g = Graph.from_edges(*TRIANGLE_PLUS_TAIL, weights=[1.5, 2.0, 1.0, 3.0, 1.0])
    freq, _ = second_step_frequencies(g, prev=0, cur=1, p=p, q=q)
    unnormalised = np.array([1.5 / p, 2.0 * 1.0, 3.0 / q])
    np.testing.assert_allclose(freq[[0, 2, 3]], unnormalised / unnormalised.sum(), atol=0.02)


@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 1.0, 3.0, 1.0]])
def test_directed_bias_uses_out_neighbours_of_prev(weights):
    # 0 -> 2 exists, so from 1 (arrived from 0) node 2 counts as "in" and 3 as "out";
    # the return arc 1 -> 0 is looked up (weight 2 when weighted).
    g = Graph.from_edges([0, 1, 1, 1, 0], [1, 0, 2, 3, 2], weights=weights, directed=True)
    p, q = 0.25, 4.0
    freq, _ = second_step_frequencies(g, prev=0, cur=1, p=p, q=q)
    w = np.ones(3) if weights is None else np.array([2.0, 1.0, 3.0])
    unnormalised = w * np.array([1 / p, 1.0, 1 / q])
    np.testing.assert_allclose(freq[[0, 2, 3]], unnormalised / unnormalised.sum(), atol=0.02)


def test_weighted_first_order_steps_follow_weights():
    g = Graph.from_edges([0, 0, 0, 0], [1, 2, 3, 4], weights=[1.0, 2.0, 3.0, 4.0])
    walks = random_walks(g, walk_length=2, walks_per_node=40000, seed=2)
    from_hub = walks[walks[:, 0] == 0, 1]
    freq = np.bincount(from_hub, minlength=5)[1:] / from_hub.size
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.01)


def test_unweighted_first_order_steps_are_uniform():
    g = Graph.from_edges([0, 0, 0], [1, 2, 3])
    walks = random_walks(g, walk_length=2, walks_per_node=30000, seed=4)
    freq = np.bincount(walks[walks[:, 0] == 0, 1], minlength=4)[1:] / 30000
    np.testing.assert_allclose(freq, [1 / 3] * 3, atol=0.01)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"p": 0.0}, r"p = 0.0 is not allowed"),
        ({"q": -1.0}, r"q = -1.0 is not allowed"),
        ({"p": float("nan")}, r"p = nan"),
        ({"q": "2"}, r"q must be a positive number"),
        ({"walk_length": 0}, r"walk_length must be an int >= 1"),
        ({"walks_per_node": 0}, r"walks_per_node must be an int >= 1"),
        ({"seed": -1}, r"seed must be a non-negative int"),
    ],
)
def test_bad_walk_parameters(kwargs, message):
    g = Graph.from_edges([0], [1])
    with pytest.raises(ConfigError, match=message):
        random_walks(g, **kwargs)


def test_graph_without_edges_is_rejected():
    g = Graph.from_edges([0], [0], num_nodes=3)  # only a self-loop, which is dropped
    with pytest.raises(ConfigError, match="no edges"):
        random_walks(g)
