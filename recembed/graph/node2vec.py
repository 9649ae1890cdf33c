"""Node2Vec and DeepWalk: random walks fed to skip-gram (``recembed.seq2vec.Word2Vec``).

Node2Vec (Grover & Leskovec, 2016) samples biased second-order walks
(:func:`recembed.graph.random_walks`) and trains skip-gram with negative sampling on them,
treating each walk as a sentence of node ids. DeepWalk (Perozzi et al., 2014) is the
special case ``p = q = 1`` (uniform, or weight-proportional, first-order walks).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from recembed.errors import ConfigError
from recembed.graph.csr import Graph
from recembed.graph.walks import PAD, check_walk_settings, random_walks

if TYPE_CHECKING:
    from recembed.seq2vec import KeyedVectors

__all__ = ["Node2Vec", "DeepWalk"]


class Node2Vec:
    """Learn node embeddings from node2vec random walks.

    Construction only validates and stores settings; :meth:`fit` walks and trains.

    Args:
        graph: the graph to embed.
        dimensions: embedding size ``D``.
        walk_length: nodes per walk (>= 1).
        walks_per_node: walks started from every node (>= 1).
        p: return parameter (> 0). ``q``: in-out parameter (> 0).
        window: skip-gram context window (>= 1).
        negative: negative samples per positive pair (>= 1).
        epochs: skip-gram passes over the walks (>= 1).
        workers: threads for walking (numba) and training (>= 1).
        seed: seed for walks and training. Walks are identical for a seed; training is
            bit-for-bit repeatable only with ``workers=1``.

    Attributes:
        wv: the :class:`~recembed.seq2vec.KeyedVectors` after :meth:`fit`; row ``i`` is
            node index ``i``, keyed by its original id (``graph.node_keys()[i]``).

    Example:
        >>> from recembed.graph import Graph, Node2Vec
        >>> g = Graph.from_edges([0, 1, 2, 3], [1, 2, 3, 0])
        >>> wv = Node2Vec(g, dimensions=8, walk_length=10, walks_per_node=5, workers=1).fit()
        >>> wv.vectors.shape
        (4, 8)
    """

    def __init__(
        self,
        graph: Graph,
        dimensions: int = 128,
        walk_length: int = 80,
        walks_per_node: int = 10,
        p: float = 1.0,
        q: float = 1.0,
        window: int = 10,
        negative: int = 5,
        epochs: int = 1,
        workers: int = 2,
        seed: int = 0,
    ):
        if not isinstance(graph, Graph):
            raise ConfigError(f"graph must be a recembed.graph.Graph, got {type(graph).__name__}")
        check_walk_settings(walk_length, walks_per_node, p, q, seed)
        for name, value in (
            ("dimensions", dimensions), ("window", window), ("negative", negative),
            ("epochs", epochs), ("workers", workers),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        self.graph = graph
        self.dimensions = int(dimensions)
        self.walk_length = int(walk_length)
        self.walks_per_node = int(walks_per_node)
        self.p = float(p)
        self.q = float(q)
        self.window = int(window)
        self.negative = int(negative)
        self.epochs = int(epochs)
        self.workers = int(workers)
        self.seed = int(seed)
        self.wv: KeyedVectors | None = None

    def walks(self) -> np.ndarray:
        """The walks :meth:`fit` trains on: int64 ``(walks_per_node * N, walk_length)``,
        ``-1`` after dead ends (see :func:`recembed.graph.random_walks`)."""
        with _numba_threads(self.workers):
            return random_walks(
                self.graph, walk_length=self.walk_length, walks_per_node=self.walks_per_node,
                p=self.p, q=self.q, seed=self.seed,
            )

    def fit(self) -> "KeyedVectors":
        """Generate walks, train skip-gram on them, and return the node vectors.

        Returns:
            KeyedVectors with ``vectors`` of shape ``(num_nodes, dimensions)``; row ``i``
            is node index ``i`` and its key is the node's original id.
        """
        from recembed.seq2vec import KeyedVectors, Word2Vec

        walks = self.walks()
        if walks.shape[1] > 1 and (walks[:, -1] == PAD).any():
            # Padding is a suffix, so a row is complete exactly when its last entry is real.
            lengths = walks.shape[1] - (walks == PAD).sum(axis=1)
            sentences = [row[:n] for row, n in zip(walks, lengths.tolist())]
        else:
            sentences = walks
        model = Word2Vec(
            sentences=sentences, vector_size=self.dimensions, window=self.window, min_count=1,
            sg=1, negative=self.negative, epochs=self.epochs, workers=self.workers, seed=self.seed,
        )
        del sentences, walks
        trained = model.wv
        node_of_row = np.asarray(trained.index_to_key, dtype=np.int64)
        if node_of_row.shape[0] != self.graph.num_nodes:  # every node starts walks
            raise RuntimeError(
                f"skip-gram kept {node_of_row.shape[0]} of {self.graph.num_nodes} nodes"
            )
        vectors = np.empty((self.graph.num_nodes, self.dimensions), dtype=np.float32)
        vectors[node_of_row] = trained.vectors
        self.wv = KeyedVectors(self.graph.node_keys(), vectors)
        return self.wv


class DeepWalk(Node2Vec):
    """DeepWalk (Perozzi et al., 2014): :class:`Node2Vec` with ``p = q = 1``.

    Takes every keyword of :class:`Node2Vec` except ``p`` and ``q``, which it fixes at 1
    (uniform, or weight-proportional, first-order walks).

    Raises:
        ConfigError: ``p`` or ``q`` given, or any invalid :class:`Node2Vec` setting.

    Example:
        >>> from recembed.graph import DeepWalk, Graph
        >>> g = Graph.from_edges([0, 1, 2, 3], [1, 2, 3, 0])
        >>> DeepWalk(g, dimensions=8, walk_length=10, walks_per_node=5, workers=1).fit().vectors.shape
        (4, 8)
    """

    def __init__(self, graph: Graph, **settings: Any):
        fixed = sorted({"p", "q"} & settings.keys())
        if fixed:
            raise ConfigError(f"DeepWalk fixes p = q = 1 and takes no {fixed}; use Node2Vec for other values")
        super().__init__(graph, p=1.0, q=1.0, **settings)


@contextmanager
def _numba_threads(n: int) -> Iterator[None]:
    """Use at most ``n`` numba threads inside the block, then restore the previous count."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)
