"""Graph embeddings: a compact CSR graph, node2vec random walks, Node2Vec / DeepWalk.

Layers, bottom up: ``csr`` (the :class:`Graph`) and ``edgelist`` (its file reader);
``walks`` (numba random walks over a Graph); ``node2vec`` (walks fed to
``recembed.seq2vec.Word2Vec``). ``generators`` makes synthetic graphs and ``evaluation``
scores embeddings against known communities.

Example:
    >>> from recembed.graph import Graph, Node2Vec, random_walks
    >>> g = Graph.from_edges([0, 1, 2], [1, 2, 0])
    >>> random_walks(g, walk_length=4, walks_per_node=1).shape
    (3, 4)
"""

from recembed.graph.csr import Graph
from recembed.graph.node2vec import DeepWalk, Node2Vec
from recembed.graph.walks import PAD, random_walks

__all__ = ["Graph", "random_walks", "PAD", "Node2Vec", "DeepWalk"]
