"""Exact (brute-force) search: blocked float32 matmul plus a cheap blockwise top-k.

Queries are processed in batches of ``query_batch_size`` and the catalogue in chunks of
``chunk_size`` rows, so the score matrix in memory is at most
``query_batch_size x chunk_size`` floats whatever the catalogue size. Each chunk's top-k
is merged with the others at the end of the query batch.

Why the top-k is not just ``torch.topk`` on the chunk: on CPU ``topk`` costs about as
much as the matmul that produced the scores. Instead the chunk's columns are split into
``g`` interleaved groups-of-columns; the k best columns of a row all lie in the k groups
with the largest maxima (each of those columns lifts its group's maximum to at least the
k-th best score, and at most k groups can do that), so a fast ``amax`` over the groups
plus a ``topk`` over ``k * g`` gathered scores gives the same answer for much less work.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np
import torch

from recembed.errors import CheckpointError
from recembed.retrieval.base import VectorIndex
from recembed.retrieval.exclusion import Exclusion
from recembed.retrieval.params import METRIC_PARAM, Param, int_check

# Columns per group-of-columns in the chunk top-k; see the module docstring.
_GROUPS = 32


def chunk_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``min(k, n)`` values and column indices of each row of ``scores`` ``(m, n)``, best first.

    Same result as ``scores.topk(min(k, n), dim=1)`` (up to the order of tied scores).
    """
    rows, cols = scores.shape
    k = min(k, cols)
    width = cols // _GROUPS
    if cols % _GROUPS or width < 4 * k:
        return scores.topk(k, dim=1)
    group_max = scores.view(rows, _GROUPS, width).amax(dim=1)  # (m, width): column j covers j, j+width, ...
    _, best_groups = group_max.topk(k, dim=1)  # (m, k)
    members = (best_groups.unsqueeze(2) + torch.arange(_GROUPS) * width).reshape(rows, k * _GROUPS)
    values, picked = scores.gather(1, members).topk(k, dim=1)
    return values, members.gather(1, picked)


def exact_search(
    queries: torch.Tensor,
    vectors: torch.Tensor,
    k: int,
    chunk_size: int,
    query_batch_size: int,
    exclusion: Optional[Exclusion] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Brute-force top-``k`` inner products of ``queries`` ``(Q, D)`` against ``vectors`` ``(N, D)``.

    Returns ``(Q, k)`` float32 scores and int64 rows, best first; excluded rows never
    appear, and where fewer than ``k`` rows remain the tail is ``-inf`` / ``-1``.
    """
    num_queries, num_rows = queries.shape[0], vectors.shape[0]
    out_scores = torch.empty(num_queries, k, dtype=torch.float32)
    out_rows = torch.empty(num_queries, k, dtype=torch.int64)
    batch = min(query_batch_size, max(num_queries, 1))
    chunk = min(chunk_size, num_rows)
    buffer = torch.empty(batch * chunk, dtype=torch.float32)
    if exclusion is not None:
        excl_query = torch.from_numpy(exclusion.query_index())
        excl_rows = torch.from_numpy(exclusion.rows)
    for q0 in range(0, num_queries, batch):
        q1 = min(q0 + batch, num_queries)
        if exclusion is not None:
            lo, hi = int(exclusion.offsets[q0]), int(exclusion.offsets[q1])
            batch_query, batch_rows = excl_query[lo:hi] - q0, excl_rows[lo:hi]
        chunk_values, chunk_rows = [], []
        for c0 in range(0, num_rows, chunk):
            c1 = min(c0 + chunk, num_rows)
            scores = buffer[: (q1 - q0) * (c1 - c0)].view(q1 - q0, c1 - c0)
            torch.mm(queries[q0:q1], vectors[c0:c1].T, out=scores)
            if exclusion is not None and batch_rows.numel():
                inside = (batch_rows >= c0) & (batch_rows < c1)
                scores[batch_query[inside], batch_rows[inside] - c0] = -torch.inf
            values, cols = chunk_topk(scores, k)
            chunk_values.append(values)
            chunk_rows.append(cols + c0)
        values, picked = torch.cat(chunk_values, dim=1).topk(k, dim=1)
        rows = torch.cat(chunk_rows, dim=1).gather(1, picked)
        rows[values == -torch.inf] = -1
        out_scores[q0:q1] = values
        out_rows[q0:q1] = rows
    return out_scores, out_rows


class ExactIndex(VectorIndex):
    """Exact top-k by brute force; the reference every approximate index is measured against.

    Args:
        metric: ``"dot"`` (inner product) or ``"cosine"``.
        chunk_size: catalogue rows scored per matmul block.
        query_batch_size: queries per matmul block. Memory for scores is
            ``4 * chunk_size * query_batch_size`` bytes.

    Example:
        >>> index = ExactIndex(metric="dot").build(torch.randn(1000, 16))
        >>> scores, ids = index.search(torch.randn(4, 16), k=10)
        >>> ids.shape
        torch.Size([4, 10])
    """

    kind = "exact"
    param_specs = {
        "metric": METRIC_PARAM,
        "chunk_size": Param(int_check(1), fixed_once_filled=False, doc="catalogue rows per block"),
        "query_batch_size": Param(int_check(1), fixed_once_filled=False, doc="queries per block"),
    }

    def __init__(self, *, metric: str = "dot", chunk_size: int = 65536, query_batch_size: int = 256) -> None:
        super().__init__(metric=metric, chunk_size=chunk_size, query_batch_size=query_batch_size)
        self._vectors = torch.empty(0, 0)
        self._pending: list[torch.Tensor] = []  # batches added since the last search, joined lazily

    def _clear(self) -> None:
        self._vectors = torch.empty(0, 0)
        self._pending = []

    def _add(self, vectors: torch.Tensor) -> None:
        self._pending.append(vectors)

    def _matrix(self) -> torch.Tensor:
        """All vectors as one ``(N, D)`` tensor (joins pending batches once, not per add)."""
        if self._pending:
            parts = ([self._vectors] if self._vectors.numel() else []) + self._pending
            self._vectors = parts[0] if len(parts) == 1 else torch.cat(parts)
            self._pending = []
        return self._vectors

    def _search(
        self, queries: torch.Tensor, k: int, exclusion: Optional[Exclusion]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return exact_search(queries, self._matrix(), k, self.chunk_size, self.query_batch_size, exclusion)

    def _state(self) -> dict[str, np.ndarray]:
        return {"vectors": self._matrix().numpy()} if len(self) else {}

    def _restore(self, state: Mapping[str, Any], count: int, path: str) -> None:
        self._clear()
        if count == 0:
            return
        vectors = state.get("vectors")
        if vectors is None or vectors.shape != (count, self._dim):
            found = "missing" if vectors is None else vectors.shape
            raise CheckpointError(f"{path}: exact index needs a ({count}, {self._dim}) 'vectors' array, found {found}")
        self._vectors = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
