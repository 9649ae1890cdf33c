"""A compact, read-only graph in CSR (compressed sparse row) form.

A node's out-neighbours are ``indices[indptr[v]:indptr[v + 1]]``, sorted ascending, so
"is ``x`` a neighbour of ``v``" is a binary search in that row. Storage is three flat
arrays and nothing per edge on the Python side:

- ``indptr``: int64, shape ``(num_nodes + 1,)``
- ``indices``: int32 (int64 past 2**31 - 1 nodes), shape ``(num_arcs,)``
- ``weights``: float32, shape ``(num_arcs,)``, or ``None`` for an unweighted graph

An undirected edge ``u - v`` is stored as the two arcs ``u -> v`` and ``v -> u``.

How edges are cleaned (the same for arrays and files):

- Self-loops ``u - u`` are dropped: a step that stays in place adds no context to a
  walk. ``Graph.num_self_loops_dropped`` says how many were dropped.
- Duplicate edges are merged into one arc whose weight is the sum of theirs (parallel
  edges act as one heavier edge). In an undirected graph ``u v`` and ``v u`` are the same
  edge, so a file that lists both directions with weight ``w`` gets weight ``2 w`` on every
  such edge; transition probabilities are unchanged when every edge is listed both ways.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from recembed.errors import (
    ConfigError,
    DataFormatError,
    IdOutOfRangeError,
    InvalidDtypeError,
    InvalidIdError,
    ShapeMismatchError,
    UnknownKeyError,
)

__all__ = ["Graph"]

# Arcs are sorted by the key ``row * num_nodes + col``; it must fit in int64.
_MAX_NODES = 3_000_000_000


class Graph:
    """A read-only graph in CSR form; build it with :meth:`from_edges` or
    :meth:`from_edgelist_file`.

    Attributes:
        indptr: int64 ``(num_nodes + 1,)`` row offsets.
        indices: int32/int64 ``(num_arcs,)`` column ids, sorted within each row.
        weights: float32 ``(num_arcs,)`` arc weights, or ``None`` when unweighted.
        directed: whether arcs are one-way.
        node_ids: ``(num_nodes,)`` original id of each node (from a file), or ``None``
            when node ``i`` is simply ``i``.
        num_self_loops_dropped: self-loop input edges that were dropped.

    Example:
        >>> g = Graph.from_edges([0, 1, 2], [1, 2, 0])
        >>> g.num_nodes, g.num_edges, g.neighbors(0).tolist()
        (3, 3, [1, 2])
    """

    def __init__(
        self,
        indptr: np.ndarray,
        indices: np.ndarray,
        weights: np.ndarray | None,
        directed: bool,
        node_ids: np.ndarray | None = None,
        num_self_loops_dropped: int = 0,
    ):
        # Internal constructor: callers go through from_edges, which validates.
        self.indptr = indptr
        self.indices = indices
        self.weights = weights
        self.directed = bool(directed)
        self.node_ids = node_ids
        self.num_self_loops_dropped = int(num_self_loops_dropped)
        self._cumulative_weights: np.ndarray | None = None
        self._index_of_id: dict[Any, int] | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_edges(
        cls,
        src: Sequence[int] | np.ndarray,
        dst: Sequence[int] | np.ndarray,
        weights: Sequence[float] | np.ndarray | None = None,
        directed: bool = False,
        num_nodes: int | None = None,
        node_ids: np.ndarray | None = None,
    ) -> "Graph":
        """Build a graph from parallel arrays of edge endpoints.

        Args:
            src: ``(E,)`` integer node ids in ``[0, num_nodes)``.
            dst: ``(E,)`` integer node ids in ``[0, num_nodes)``.
            weights: ``(E,)`` finite, positive edge weights, or ``None`` (unweighted).
            directed: ``True`` for one-way arcs ``src -> dst``.
            num_nodes: number of nodes; default ``max(src, dst) + 1``. Nodes without
                edges are allowed (walks from them stop at once).
            node_ids: optional ``(num_nodes,)`` original ids, kept as ``Graph.node_ids``.
        Returns:
            The graph; self-loops dropped and duplicates merged (see module docs).
        Raises:
            InvalidDtypeError: non-integer ids.
            ShapeMismatchError: arrays of different lengths or not 1-D.
            InvalidIdError / IdOutOfRangeError: an id < 0 or >= ``num_nodes``.
            DataFormatError: a weight that is not finite or not > 0.
            ConfigError: a graph with no nodes, or a bad ``num_nodes``.

        Example:
            >>> g = Graph.from_edges([0, 0], [1, 2], weights=[1.0, 3.0], directed=True)
            >>> g.weights.tolist(), g.neighbors(1).tolist()
            ([1.0, 3.0], [])
        """
        src_arr = _as_id_array(src, "src")
        dst_arr = _as_id_array(dst, "dst")
        if src_arr.shape != dst_arr.shape:
            raise ShapeMismatchError(
                f"src has {src_arr.shape[0]} edges but dst has {dst_arr.shape[0]}; "
                "they must have the same length"
            )
        weight_arr = None if weights is None else _as_weight_array(weights, src_arr.shape[0])
        n = _resolve_num_nodes(num_nodes, src_arr, dst_arr)
        _check_id_range(src_arr, "src", n)
        _check_id_range(dst_arr, "dst", n)
        if node_ids is not None and len(node_ids) != n:
            raise ShapeMismatchError(
                f"node_ids has {len(node_ids)} entries but the graph has {n} nodes"
            )
        indptr, indices, arc_weights, loops = _build_csr(src_arr, dst_arr, weight_arr, n, directed)
        return cls(indptr, indices, arc_weights, directed, node_ids, loops)

    @classmethod
    def from_edgelist_file(
        cls,
        path: str,
        directed: bool = False,
        weighted: bool | None = None,
        delimiter: str | None = None,
        comments: str | None = "#",
    ) -> "Graph":
        """Read a text edge list: one edge per line, ``u v`` or ``u v w``.

        Node ids are arbitrary tokens mapped to ``0..N-1`` in sorted order (numeric order
        when every id is an integer, which then become the int64 ``node_ids``; byte order
        of the UTF-8 tokens otherwise, giving ``str`` ids). Blank lines and text after
        ``comments`` are ignored. See :func:`recembed.graph.edgelist.read_edgelist`.

        Args:
            path: text file to read.
            directed: ``True`` for one-way arcs ``u -> v``.
            weighted: ``True`` needs a third column, ``False`` needs exactly two,
                ``None`` takes the column count of the first edge line.
            delimiter: single-character field separator; ``None`` splits on whitespace.
            comments: single character starting a comment, or ``None``.
        Raises:
            DataFormatError: a malformed line (names the file, line and reason).

        Example:
            >>> g = Graph.from_edgelist_file("karate.edgelist")  # doctest: +SKIP
        """
        from recembed.graph.edgelist import read_edgelist

        edges = read_edgelist(path, weighted=weighted, delimiter=delimiter, comments=comments)
        return cls.from_edges(
            edges.src, edges.dst, edges.weights, directed=directed,
            num_nodes=len(edges.node_ids), node_ids=edges.node_ids,
        )

    # ------------------------------------------------------------------ queries
    @property
    def num_nodes(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def num_arcs(self) -> int:
        """Stored CSR entries (an undirected edge counts twice)."""
        return int(self.indices.shape[0])

    @property
    def num_edges(self) -> int:
        """Edges after cleaning (an undirected edge counts once)."""
        return self.num_arcs if self.directed else self.num_arcs // 2

    @property
    def weighted(self) -> bool:
        return self.weights is not None

    def degrees(self) -> np.ndarray:
        """Out-degree of every node, int64 ``(num_nodes,)``."""
        return np.diff(self.indptr)

    def neighbors(self, node: int) -> np.ndarray:
        """Sorted out-neighbours of node index ``node`` (a view into ``indices``)."""
        node = self._check_index(node)
        return self.indices[self.indptr[node] : self.indptr[node + 1]]

    def has_edge(self, u: int, v: int) -> bool:
        """Whether the arc ``u -> v`` exists (node indices, binary search)."""
        row = self.neighbors(u)
        pos = int(np.searchsorted(row, v))
        return pos < row.shape[0] and int(row[pos]) == int(v)

    def node_keys(self) -> list:
        """Original id of each node index as Python objects (``range`` ints if none)."""
        if self.node_ids is None:
            return list(range(self.num_nodes))
        return self.node_ids.tolist()

    def index_of(self, node_id: Any) -> int:
        """Node index of an original id. Raises ``UnknownKeyError`` if absent."""
        if self.node_ids is None:
            if isinstance(node_id, (int, np.integer)) and 0 <= node_id < self.num_nodes:
                return int(node_id)
        else:
            if self._index_of_id is None:
                self._index_of_id = {key: i for i, key in enumerate(self.node_keys())}
            key = node_id.item() if isinstance(node_id, np.generic) else node_id
            if key in self._index_of_id:
                return self._index_of_id[key]
        raise UnknownKeyError(f"node id {node_id!r} is not in the graph ({self.num_nodes} nodes)")

    def cumulative_weights(self) -> np.ndarray:
        """float64 ``(num_arcs,)`` running sum of ``weights`` over all arcs (cached).

        Row ``v``'s total weight is ``cum[end - 1] - cum[start - 1]``; the walk sampler
        draws a weighted neighbour by binary search in this array.
        """
        if self.weights is None:
            raise ConfigError("cumulative_weights() needs a weighted graph; this one has no weights")
        if self._cumulative_weights is None:
            self._cumulative_weights = np.cumsum(self.weights, dtype=np.float64)
        return self._cumulative_weights

    def _check_index(self, node: int) -> int:
        node = int(node)
        if node < 0:
            raise InvalidIdError(f"node index {node} is negative; allowed: 0..{self.num_nodes - 1}")
        if node >= self.num_nodes:
            raise IdOutOfRangeError(
                f"node index {node} is out of range; allowed: 0..{self.num_nodes - 1}"
            )
        return node

    def __repr__(self) -> str:
        kind = "directed" if self.directed else "undirected"
        weighted = "weighted" if self.weighted else "unweighted"
        return f"Graph({kind}, {weighted}, num_nodes={self.num_nodes}, num_edges={self.num_edges})"


# ---------------------------------------------------------------------- helpers
def _as_id_array(values: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ShapeMismatchError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidDtypeError(f"{name} must hold integer node ids, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _as_weight_array(weights: Sequence[float] | np.ndarray, num_edges: int) -> np.ndarray:
    arr = np.asarray(weights)
    if arr.ndim != 1 or arr.shape[0] != num_edges:
        raise ShapeMismatchError(
            f"weights must have shape ({num_edges},) like src and dst, got {arr.shape}"
        )
    if arr.size and not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidDtypeError(f"weights must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    bad = np.flatnonzero(~(np.isfinite(arr) & (arr > 0)))
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(
            f"edge weight weights[{i}] = {float(arr[i])!r} is not allowed; weights must be "
            f"finite and > 0 ({bad.size} bad weights)"
        )
    return arr


def _resolve_num_nodes(num_nodes: int | None, src: np.ndarray, dst: np.ndarray) -> int:
    if num_nodes is None:
        if src.size == 0:
            raise ConfigError("the graph is empty: no edges and no num_nodes given")
        n = int(max(src.max(), dst.max())) + 1
        return max(n, 1)
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)):
        raise ConfigError(f"num_nodes must be an int, got {num_nodes!r}")
    if num_nodes < 1:
        raise ConfigError(f"num_nodes = {num_nodes} makes an empty graph; it must be >= 1")
    if num_nodes > _MAX_NODES:
        raise ConfigError(f"num_nodes = {num_nodes} exceeds the supported {_MAX_NODES}")
    return int(num_nodes)


def _check_id_range(ids: np.ndarray, name: str, num_nodes: int) -> None:
    if ids.size == 0:
        return
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0:
        i = int(np.argmax(ids < 0))
        raise InvalidIdError(f"{name}[{i}] = {lo} is negative; node ids must be in 0..{num_nodes - 1}")
    if hi >= num_nodes:
        i = int(np.argmax(ids >= num_nodes))
        raise IdOutOfRangeError(
            f"{name}[{i}] = {int(ids[i])} is out of range for num_nodes = {num_nodes}; "
            f"node ids must be in 0..{num_nodes - 1}"
        )


def _build_csr(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None, num_nodes: int, directed: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    loops = src == dst
    num_loops = int(np.count_nonzero(loops))
    if num_loops:
        keep = ~loops
        src, dst = src[keep], dst[keep]
        weights = None if weights is None else weights[keep]
    if directed:
        rows, cols = src, dst
    else:
        rows, cols = np.concatenate([src, dst]), np.concatenate([dst, src])
        weights = None if weights is None else np.concatenate([weights, weights])
    # One int64 key per arc sorts rows and, within a row, columns; equal keys are duplicates.
    # (A sort, not np.unique: numpy 2.x's hash-based unique is much slower at this size.)
    key = rows * np.int64(num_nodes) + cols
    del rows, cols
    if weights is None:
        key.sort()
        first = _first_of_runs(key)
        key = key[first]
        arc_weights = None
    else:
        order = np.argsort(key, kind="stable")
        key = key[order]
        first = _first_of_runs(key)
        summed = np.add.reduceat(weights[order], np.flatnonzero(first)) if key.size else weights[:0]
        del order
        key = key[first]
        arc_weights = summed.astype(np.float32)
        # A weight can be fine in float64 yet 0 or inf in float32 storage.
        bad = np.flatnonzero(~(np.isfinite(arc_weights) & (arc_weights > 0)))
        if bad.size:
            raise DataFormatError(
                f"edge weight {float(summed[bad[0]])!r} does not fit float32 storage "
                f"(it became {float(arc_weights[bad[0]])!r}); weights must be in about [1e-38, 3e38]"
            )
    index_dtype = np.int32 if num_nodes <= np.iinfo(np.int32).max else np.int64
    indices = (key % num_nodes).astype(index_dtype)
    counts = np.bincount(key // num_nodes, minlength=num_nodes)
    indptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, indices, arc_weights, num_loops


def _first_of_runs(sorted_values: np.ndarray) -> np.ndarray:
    """Boolean mask of the first element of each run of equal values."""
    first = np.ones(sorted_values.shape[0], dtype=np.bool_)
    if sorted_values.shape[0] > 1:
        np.not_equal(sorted_values[1:], sorted_values[:-1], out=first[1:])
    return first
