"""Per-query exclusion lists ("do not recommend what the user has already seen").

Users pass ``exclude`` to :meth:`VectorIndex.search` in one of three forms:

* a list (or other sequence) with one iterable of ids per query, e.g. ``[[3, 7], [], [1]]``;
* a tuple ``(flat_ids, lengths)`` of two tensors/arrays: the ids of all queries
  concatenated, and how many belong to each query (``lengths.sum() == len(flat_ids)``).
  A tuple of exactly two tensors/arrays is always read this way, so write the per-query
  form as a list;
* any object with ``values()`` and ``lengths()`` methods (a jagged tensor).

Ids that are not in the index are ignored: a user's history may hold items that left the
catalogue. Indexes see the result as an :class:`Exclusion` over their internal rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from recembed.errors import JaggedStructureError, ShapeMismatchError
from recembed.retrieval._inputs import as_id_array


@dataclass(frozen=True)
class Exclusion:
    """Internal rows to leave out, per query, in CSR form.

    ``rows[offsets[q]:offsets[q + 1]]`` are the (sorted, distinct) rows excluded for query
    ``q``; ``offsets`` has ``num_queries + 1`` entries.
    """

    offsets: np.ndarray  # (Q + 1,) int64
    rows: np.ndarray  # (P,) int64

    @property
    def num_queries(self) -> int:
        return self.offsets.shape[0] - 1

    @property
    def max_per_query(self) -> int:
        """The most rows any single query excludes (how far to over-fetch)."""
        return int(np.diff(self.offsets).max()) if self.num_queries else 0

    def query_index(self) -> np.ndarray:
        """``(P,)`` int64: the query each entry of :attr:`rows` belongs to."""
        return np.repeat(np.arange(self.num_queries, dtype=np.int64), np.diff(self.offsets))


def flatten_exclude(exclude: Any, num_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Turn any accepted ``exclude`` form into ``(flat_ids, lengths)`` int64 arrays."""
    if hasattr(exclude, "values") and hasattr(exclude, "lengths") and callable(exclude.lengths):
        flat, lengths = exclude.values(), exclude.lengths()
    elif (
        isinstance(exclude, tuple)
        and len(exclude) == 2
        and all(isinstance(part, (torch.Tensor, np.ndarray)) for part in exclude)
    ):
        flat, lengths = exclude
    else:
        try:
            groups = [ids if isinstance(ids, (torch.Tensor, np.ndarray)) else list(ids) for ids in exclude]
        except TypeError as exc:
            raise ShapeMismatchError(
                "exclude must be a list of per-query id lists, a (flat_ids, lengths) tuple, or a "
                f"jagged tensor; got {type(exclude).__name__}"
            ) from exc
        per_query = [as_id_array(ids, f"exclude[{q}]") for q, ids in enumerate(groups)]
        if len(per_query) != num_queries:
            raise ShapeMismatchError(
                f"exclude has {len(per_query)} per-query lists but there are {num_queries} queries"
            )
        lengths = np.array([ids.size for ids in per_query], dtype=np.int64)
        flat = np.concatenate(per_query) if per_query else np.empty(0, np.int64)
        return flat, lengths
    flat = as_id_array(flat, "exclude flat ids")
    lengths = as_id_array(lengths, "exclude lengths")
    if lengths.shape[0] != num_queries:
        raise ShapeMismatchError(f"exclude lengths has {lengths.shape[0]} entries but there are {num_queries} queries")
    if lengths.size and int(lengths.min()) < 0:
        raise JaggedStructureError(f"exclude lengths must be >= 0, got {int(lengths.min())}")
    if int(lengths.sum()) != flat.shape[0]:
        raise JaggedStructureError(
            f"exclude lengths sum to {int(lengths.sum())} but there are {flat.shape[0]} flat ids"
        )
    return flat, lengths


def build_exclusion(
    exclude: Any, num_queries: int, rows_of: Callable[[np.ndarray], np.ndarray], num_rows: int
) -> Exclusion:
    """Resolve user ``exclude`` to internal rows; ``rows_of`` maps ids to rows (-1: absent)."""
    flat, lengths = flatten_exclude(exclude, num_queries)
    query = np.repeat(np.arange(num_queries, dtype=np.int64), lengths)
    rows = rows_of(flat)
    present = rows >= 0
    # One sorted key per (query, row) pair both drops repeats and orders rows within a query.
    keys = np.unique(query[present] * np.int64(num_rows) + rows[present])
    key_query, key_rows = np.divmod(keys, np.int64(num_rows))
    offsets = np.zeros(num_queries + 1, dtype=np.int64)
    np.cumsum(np.bincount(key_query, minlength=num_queries), out=offsets[1:])
    return Exclusion(offsets=offsets, rows=key_rows)


def drop_excluded(
    scores: np.ndarray, rows: np.ndarray, exclusion: Exclusion, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Remove excluded rows from over-fetched results and keep the best ``k`` per query.

    Args:
        scores: ``(Q, K)`` float32, best first (``K >= k``).
        rows: ``(Q, K)`` int64 internal rows, -1 where there is no result.
        exclusion: rows to drop per query.
        k: results to keep.

    Returns:
        ``(Q, k)`` scores and rows, order kept, padded with ``-inf`` / ``-1``.
    """
    num_queries, fetched = rows.shape
    num_rows = max(int(rows.max(initial=-1)) + 1, int(exclusion.rows.max(initial=-1)) + 1, 1)
    query = np.arange(num_queries, dtype=np.int64)[:, None]
    candidate_keys = query * np.int64(num_rows) + rows
    excluded_keys = exclusion.query_index() * np.int64(num_rows) + exclusion.rows
    keep = (rows >= 0) & ~np.isin(candidate_keys, excluded_keys)
    # Position of each kept entry among the kept entries of its row; the first k survive.
    position = np.cumsum(keep, axis=1) - 1
    keep &= position < k
    out_scores = np.full((num_queries, k), -np.inf, dtype=np.float32)
    out_rows = np.full((num_queries, k), -1, dtype=np.int64)
    query_of = np.broadcast_to(query, (num_queries, fetched))
    out_scores[query_of[keep], position[keep]] = scores[keep]
    out_rows[query_of[keep], position[keep]] = rows[keep]
    return out_scores, out_rows


def overfetch_count(k: int, exclusion: Optional[Exclusion], size: int) -> int:
    """How many results to ask a native index for so that ``k`` survive the exclusions."""
    extra = exclusion.max_per_query if exclusion is not None else 0
    return min(size, k + extra)


def trim_results(
    scores: np.ndarray, rows: np.ndarray, exclusion: Optional[Exclusion], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Finish an over-fetched native search: mark missing results, drop exclusions, keep ``k``."""
    scores = np.asarray(scores, dtype=np.float32).copy()
    rows = np.asarray(rows, dtype=np.int64)
    scores[rows < 0] = -np.inf
    if exclusion is not None and exclusion.rows.size:
        return drop_excluded(scores, rows, exclusion, k)
    if scores.shape[1] >= k:
        return scores[:, :k], rows[:, :k]
    pad = k - scores.shape[1]
    return (
        np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf),
        np.pad(rows, ((0, 0), (0, pad)), constant_values=-1),
    )
