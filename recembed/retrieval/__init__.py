"""Nearest-neighbour recall over embedding vectors: one index contract, several indexes.

Every index follows :class:`VectorIndex`: ``build(vectors, ids)`` / ``add``,
``search(queries, k, exclude=None) -> (scores, ids)`` (best first, ``-1`` ids where
fewer than ``k`` results exist), ``save`` / ``load``, ``set_params``.

* :class:`ExactIndex` -- brute force, the reference;
* :class:`LSHIndex` -- multi-probe random-hyperplane LSH with exact re-ranking;
* :class:`CrossPolytopeLSHIndex` -- multi-probe cross-polytope LSH with vote counting
  and exact re-ranking (better than hyperplanes on data with little cluster structure);
* :class:`FaissIndex`, :class:`HnswlibIndex` -- adapters over the optional packages;
* :func:`index_factory` -- build any of them from a string such as ``"lsh:tables=16"``.

Example:
    >>> from recembed.retrieval import index_factory, recall_at_k
    >>> vectors, queries = torch.randn(10_000, 32), torch.randn(100, 32)
    >>> exact = index_factory("exact", dim=32, metric="cosine").build(vectors)
    >>> lsh = index_factory("lsh:tables=16,bits=12,probes=8", dim=32, metric="cosine").build(vectors)
    >>> recall_at_k(lsh.search(queries, 10)[1], exact.search(queries, 10)[1])  # doctest: +SKIP
"""

from recembed.retrieval.base import VectorIndex
from recembed.retrieval.cross_polytope import CrossPolytopeLSHIndex
from recembed.retrieval.exact import ExactIndex
from recembed.retrieval.factory import index_factory
from recembed.retrieval.faiss_index import FaissIndex
from recembed.retrieval.hnswlib_index import HnswlibIndex
from recembed.retrieval.lsh import LSHIndex
from recembed.retrieval.metrics import recall_at_k

__all__ = [
    "VectorIndex",
    "ExactIndex",
    "LSHIndex",
    "CrossPolytopeLSHIndex",
    "FaissIndex",
    "HnswlibIndex",
    "index_factory",
    "recall_at_k",
]
