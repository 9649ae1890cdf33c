"""Cross-polytope LSH with multi-probe lookup, vote counting and exact re-ranking.

The hash (Andoni, Indyk, Laarhoven, Razenshteyn, Schmidt, NeurIPS 2015, "Practical and
Optimal LSH for Angular Distance") rotates a vector at random and returns the vertex of
the cross-polytope ``{+-e_j}`` nearest to it: the index of its largest-magnitude
coordinate, with that coordinate's sign. Its collision probability falls with the angle
much faster than a random hyperplane's: ``ln(1 / p) ~ (1 - c) / (1 + c) * ln(P)`` at
cosine ``c`` with ``P`` coordinates, which gives the optimal LSH exponent, while a
hyperplane bit agrees with probability ``1 - arccos(c) / pi`` (0.67 at ``c = 0.5``). This
matters on data with little structure: on i.i.d. Gaussian vectors in 64 dimensions the
10th neighbour sits at cosine ~0.5 among thousands of points at 0.3-0.45.

Each table projects onto ``projected_dim`` coordinates: ``ceil(projected_dim / D)``
independent random rotations (Haar, from the QR of a Gaussian matrix) side by side,
truncated, so every coordinate is a unit-norm direction and buckets are even on isotropic
data. More coordinates (``2 * projected_dim`` buckets) make the hash more selective at
the price of hashing time. The projection is one dense BLAS matmul, batched over rows
or queries; the paper's faster pseudo-rotation (sign flips and Hadamard transforms) is
not implemented (with ``D = 64`` padded to 512 it would save only ~2.4x the operations of
a matmul that runs near BLAS speed), so hashing costs ``D * num_tables * projected_dim``
multiply-adds per vector and dominates the build (about 3 minutes for 1M x 64 at the
defaults on 2 busy cores).

Search: a query probes, in every table, the ``num_probes`` buckets whose vertices are
nearest its projection (its own first). Every row met gets one *vote* per probe that met
it; rows with at least ``min_votes`` votes (the most-voted ``max_candidates`` if more
pass) are scored, on an int8 copy first and the best ``rerank`` again in float32 (as in
:class:`LSHIndex`). Votes follow the collision probability, so they rank rows by angle: a
near row collects votes in many tables, a far row seldom in two -- the collision counting
of C2LSH (Gan et al., SIGMOD 2012) over cross-polytope tables. The vote pass reads every
row of every probed bucket (``num_tables * num_probes * N / (2 * projected_dim)`` entries
per query on even buckets); scoring costs about one cache miss per candidate.

Where a query's time goes (1M x 64 i.i.d. Gaussian rows, defaults, one thread, load
1.5-1.8, recall@10 0.92): ~0.49 ms counting votes over ~102k bucket entries, ~0.31 ms
scoring ~12k candidates, ~0.06 ms choosing buckets, 0.1-0.3 ms projecting the query
(batched matmul). For a given number of entries read, one probe in more tables beats
several probes in fewer: a row's own bucket is a better witness than a neighbouring one.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numba
import numpy as np
import torch

from recembed.errors import CheckpointError
from recembed.retrieval.cross_polytope_kernels import (
    cross_polytope_codes,
    group_by_bucket,
    vote_search,
)
from recembed.retrieval.exclusion import Exclusion
from recembed.retrieval.hash_index import HashTableIndex, huge_page_copy
from recembed.retrieval.params import METRIC_PARAM, Param, int_check

_PROJECTION_BUDGET = 1 << 23  # floats of projected rows held at once (32 MB) while hashing


def random_rotations(dim: int, projected_dim: int, num_tables: int, seed: int) -> torch.Tensor:
    """``(dim, num_tables * projected_dim)`` float32: each table's block of orthonormal columns.

    A table's block is ``ceil(projected_dim / dim)`` Haar-random rotations side by side,
    cut to ``projected_dim`` columns; the same arguments give the same matrix.

    Example:
        >>> r = random_rotations(8, 8, 2, seed=0)
        >>> torch.allclose(r[:, :8].T @ r[:, :8], torch.eye(8), atol=1e-5)
        True
    """
    rng = np.random.default_rng(seed)
    per_table = -(-projected_dim // dim)
    blocks = np.empty((num_tables, dim, per_table * dim), dtype=np.float64)
    for t in range(num_tables):
        for r in range(per_table):
            q, upper = np.linalg.qr(rng.standard_normal((dim, dim)))
            blocks[t, :, r * dim : (r + 1) * dim] = q * np.sign(np.diag(upper))  # sign fix: Haar measure
    matrix = blocks[:, :, :projected_dim].transpose(1, 0, 2).reshape(dim, num_tables * projected_dim)
    return torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32))


def cross_polytope_hash(vectors: torch.Tensor, rotations: torch.Tensor, num_tables: int) -> np.ndarray:
    """``(num_tables, N)`` int32 buckets in ``[0, 2 * projected_dim)`` (see :mod:`cross_polytope_kernels`)."""
    num_rows = vectors.shape[0]
    codes = np.empty((num_tables, num_rows), dtype=np.int32)
    step = max(1, _PROJECTION_BUDGET // max(rotations.shape[1], 1))
    buffer = torch.empty(min(step, num_rows), rotations.shape[1])  # reused: fresh pages cost more than the matmul
    for start in range(0, num_rows, step):
        block = vectors[start : start + step]
        projected = torch.matmul(block, rotations, out=buffer[: block.shape[0]])
        cross_polytope_codes(projected.numpy(), num_tables, codes, start)
    return codes


class CrossPolytopeLSHIndex(HashTableIndex):
    """Multi-probe cross-polytope LSH; rows found in enough tables are re-ranked exactly.

    Args:
        metric: ``"cosine"`` (default) or ``"dot"`` (candidates are found by angle,
            ranked by inner product).
        num_tables: independent hash tables (more: higher recall, more votes to count).
        projected_dim: coordinates per table after rotation; a table has
            ``2 * projected_dim`` buckets (more: fewer rows per bucket and sharper votes,
            but ``D * num_tables * projected_dim`` multiply-adds to hash each vector).
        num_probes: buckets visited per table per query, nearest vertex first.
        min_votes: probes that must meet a row before it is scored. Lowered for a query
            whose tables give fewer than ``k`` such rows.
        max_candidates: cap on rows scored per query: if more pass ``min_votes``, the
            most-voted are kept (rows tied at the cut level in the order met).
        rerank: candidates re-scored in float32 after the int8 first pass (``k`` if
            larger); 0 scores all candidates in float32.
        seed: seed of the rotations; same seed and data, same index.

    Defaults (104 tables x 512 coordinates, 1 probe, 2 votes) are the setting for data
    with little structure, measured with benchmarks/retrieval.py on 1M x 64 i.i.d. Gaussian
    vectors (2,000 queries, 2 threads): recall@10 0.920 at 2.9x exact's queries/s (load
    0.8-1.9) to 3.8x (load 2.2; exact loses more to load). On clustered data more votes
    pay: ``min_votes=4`` gave 0.977 at 5.3x on the wide mixture (see the benchmark).
    More recall: ``num_tables=112`` (0.94), ``num_probes=2, min_votes=3`` (0.97, 2.1x).
    Memory: ``N * num_tables * 4`` bytes of tables (twice that while building),
    ``N * (D + 4)`` of int8 copy and ``D * num_tables * projected_dim * 4`` of rotations,
    beside the ``N * D * 4`` vectors; a search adds ``1.125 * N`` bytes of vote counters
    per parallel query block (4 per thread).
    Tables are built at the first search after an ``add`` (hashing every vector again).

    Example:
        >>> index = CrossPolytopeLSHIndex(num_tables=16, projected_dim=32).build(torch.randn(5000, 32))
        >>> scores, ids = index.search(torch.randn(2, 32), k=10)
        >>> index.last_candidates.shape  # rows scored per query, for tuning
        torch.Size([2])
    """

    kind = "cross_polytope_lsh"
    param_specs = {
        "metric": METRIC_PARAM,
        "num_tables": Param(int_check(1, 1024), fixed_once_filled=True, doc="hash tables"),
        "projected_dim": Param(int_check(1, 1 << 15), fixed_once_filled=True, doc="rotated coordinates per table"),
        "num_probes": Param(int_check(1, 1 << 16), fixed_once_filled=False, doc="buckets visited per table"),
        "min_votes": Param(int_check(1, 255), fixed_once_filled=False, doc="probes that must meet a row"),
        "max_candidates": Param(int_check(1, 1 << 30), fixed_once_filled=False, doc="rows scored per query at most"),
        "rerank": Param(int_check(0, 1 << 20), fixed_once_filled=False, doc="candidates re-scored in float32, 0: all"),
        "seed": Param(int_check(0), fixed_once_filled=True, doc="seed of the rotations"),
    }

    def __init__(
        self,
        *,
        metric: str = "cosine",
        num_tables: int = 104,
        projected_dim: int = 512,
        num_probes: int = 1,
        min_votes: int = 2,
        max_candidates: int = 16384,
        rerank: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__(
            metric=metric, num_tables=num_tables, projected_dim=projected_dim, num_probes=num_probes,
            min_votes=min_votes, max_candidates=max_candidates, rerank=rerank, seed=seed,
        )  # fmt: skip
        self._clear()

    def _clear(self) -> None:
        self._clear_vectors()  # self._tables holds (table_rows, bucket_offsets)
        self._rotations: Optional[torch.Tensor] = None  # (D, num_tables * projected_dim)

    def _ready(self) -> tuple[np.ndarray, np.ndarray]:
        """Join pending vectors and (re)build the tables if anything was added."""
        self._join_pending()
        if self._tables is None:
            num_rows, dim = self._vectors.shape
            if self._rotations is None:
                self._rotations = random_rotations(dim, self.projected_dim, self.num_tables, self.seed)
            codes = cross_polytope_hash(self._vectors, self._rotations, self.num_tables)
            table_rows = np.empty((self.num_tables, num_rows), dtype=np.int32)
            offsets = np.empty((self.num_tables, 2 * self.projected_dim + 1), dtype=np.int32)
            group_by_bucket(codes, 2 * self.projected_dim, table_rows, offsets)
            self._tables = (table_rows, offsets)
        return self._tables

    def _search(self, queries: torch.Tensor, k: int, exclusion: Optional[Exclusion]) -> tuple[np.ndarray, np.ndarray]:
        table_rows, offsets = self._ready()
        assert self._rotations is not None
        num_queries = queries.shape[0]
        b = self._buffers(num_queries, k, exclusion)
        # Queries are projected in batches so the (batch, L * P) projections stay small.
        batch = max(4 * numba.get_num_threads(), _PROJECTION_BUDGET // self._rotations.shape[1])
        vectors_np, queries_np = self._vectors.numpy(), queries.numpy()
        # one output buffer for every batch: fresh pages made the matmul 1.3-2x slower
        buffer = torch.empty(min(batch, num_queries), self._rotations.shape[1])
        for start in range(0, num_queries, batch):
            block = queries[start : start + batch]
            projected = torch.matmul(block, self._rotations, out=buffer[: block.shape[0]]).numpy()
            vote_search(
                projected, start, queries_np, vectors_np, b.codes, b.code_scales, table_rows, offsets, self.num_probes,
                self.min_votes, self.max_candidates, k, b.rerank, min(projected.shape[0], 4 * numba.get_num_threads()),
                b.exclude_offsets, b.exclude_rows, b.scores, b.rows, b.candidates,
            )  # fmt: skip
        return self._finish(b)

    def _state(self) -> dict[str, np.ndarray]:
        if len(self) == 0:
            return {}
        table_rows, offsets = self._ready()
        assert self._rotations is not None
        return {
            "vectors": self._vectors.numpy(),
            "rotations": self._rotations.numpy(),
            "table_rows": table_rows,
            "bucket_offsets": offsets,
        }

    def _restore(self, state: Mapping[str, np.ndarray], count: int, path: str) -> None:
        self._clear()
        if count == 0:
            return
        expected = {
            "vectors": (count, self._dim),
            "rotations": (self._dim, self.num_tables * self.projected_dim),
            "table_rows": (self.num_tables, count),
            "bucket_offsets": (self.num_tables, 2 * self.projected_dim + 1),
        }
        self._check_shapes(state, expected, path, "cross-polytope LSH")
        offsets = np.ascontiguousarray(state["bucket_offsets"], dtype=np.int32)
        if (offsets[:, 0] != 0).any() or (offsets[:, -1] != count).any() or (np.diff(offsets, axis=1) < 0).any():
            raise CheckpointError(f"{path}: cross-polytope LSH 'bucket_offsets' are not 0..{count} ascending per table")
        table_rows = np.ascontiguousarray(state["table_rows"], dtype=np.int32)
        if count and (table_rows.min() < 0 or table_rows.max() >= count):
            raise CheckpointError(f"{path}: cross-polytope LSH 'table_rows' hold rows outside 0..{count - 1}")
        self._vectors = huge_page_copy(torch.from_numpy(np.asarray(state["vectors"], dtype=np.float32)))
        self._rotations = torch.from_numpy(np.ascontiguousarray(state["rotations"], dtype=np.float32))
        self._tables = (table_rows, offsets)
