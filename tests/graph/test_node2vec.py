import numpy as np
import pytest

from recembed.errors import ConfigError
from recembed.graph import DeepWalk, Graph, Node2Vec
from recembed.graph.evaluation import kmeans, normalized_mutual_info
from recembed.graph.generators import planted_partition_edges


@pytest.fixture(scope="module")
def planted():
    src, dst, labels = planted_partition_edges(4, 50, p_in=0.2, p_out=0.01, seed=0)
    return Graph.from_edges(src, dst, num_nodes=labels.size), labels


SMALL = dict(dimensions=16, walk_length=20, walks_per_node=10, window=5, workers=1, seed=0)


def test_node2vec_embeddings_recover_planted_communities(planted):
    g, labels = planted
    wv = Node2Vec(g, p=0.5, q=2.0, **SMALL).fit()
    assert wv.vectors.shape == (200, 16)
    assert wv.index_to_key == list(range(200))
    nmi = normalized_mutual_info(kmeans(wv.vectors, 4, seed=0), labels)
    assert nmi >= 0.9
    # Nearest neighbours of a node are mostly in its own community.
    same = [labels[key] == labels[0] for key, _ in wv.most_similar(0, topn=10)]
    assert sum(same) >= 8


def test_deepwalk_is_node2vec_with_p_q_one(planted):
    g, labels = planted
    model = DeepWalk(g, **SMALL)
    assert (model.p, model.q) == (1.0, 1.0)
    assert np.array_equal(model.walks(), Node2Vec(g, p=1.0, q=1.0, **SMALL).walks())
    nmi = normalized_mutual_info(kmeans(model.fit().vectors, 4, seed=0), labels)
    assert nmi >= 0.9


def test_keys_are_original_ids_and_dead_ends_are_handled(tmp_path):
    path = tmp_path / "g.txt"
    # A directed cycle a -> b -> c -> a plus a sink d reached from c.
    path.write_text("a b\nb c\nc a\nc d\n")
    g = Graph.from_edgelist_file(str(path), directed=True)
    model = Node2Vec(g, dimensions=4, walk_length=6, walks_per_node=3, window=2, workers=1)
    assert (model.walks() == -1).any()
    wv = model.fit()
    assert wv.index_to_key == ["a", "b", "c", "d"]
    assert wv["d"].shape == (4,) and np.isfinite(wv.vectors).all()


def test_walks_are_deterministic_for_a_seed(planted):
    g, _ = planted
    first = Node2Vec(g, p=0.5, q=2.0, **SMALL).walks()
    again = Node2Vec(g, p=0.5, q=2.0, **SMALL).walks()
    assert np.array_equal(first, again)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"p": 0}, "p = 0 is not allowed"),
        ({"q": -0.5}, "q = -0.5 is not allowed"),
        ({"walk_length": 0}, "walk_length must be an int >= 1"),
        ({"dimensions": 0}, "dimensions must be an int >= 1"),
        ({"window": 1.5}, "window must be an int >= 1"),
        ({"workers": 0}, "workers must be an int >= 1"),
        ({"seed": -3}, "seed must be a non-negative int"),
    ],
)
def test_bad_settings_raise_config_errors(kwargs, message):
    g = Graph.from_edges([0, 1], [1, 2])
    with pytest.raises(ConfigError, match=message):
        Node2Vec(g, **kwargs)


def test_graph_argument_must_be_a_graph():
    with pytest.raises(ConfigError, match="graph must be"):
        Node2Vec([(0, 1)])


def test_deepwalk_refuses_p_and_q_and_checks_like_node2vec():
    g = Graph.from_edges([0, 1], [1, 2])
    with pytest.raises(ConfigError, match=r"DeepWalk fixes p = q = 1 and takes no \['q'\]"):
        DeepWalk(g, q=2.0)
    with pytest.raises(ConfigError, match="walk_length must be an int >= 1"):
        DeepWalk(g, walk_length=0)
    with pytest.raises(TypeError):
        DeepWalk(g, walk_lenght=5)  # a misspelt keyword is not swallowed
