"""Top-K retrieval by exact full scoring, and the ranking metrics computed on its output.

:func:`rank_topk` scores every user against every item (``user @ item.T + bias``), hides
items the user has already seen, and keeps the K best; it works through users in chunks
so the score matrix never has to fit in memory at once. :func:`recall_at_k`,
:func:`ndcg_at_k` and :func:`hit_rate_at_k` then compare those lists with each user's
held-out relevant items. Users with no relevant item are skipped and counted.

Per-user item sets (``exclude`` and ``relevant``) may be given as any of:

* a ``tuple`` ``(flat_item_ids, lengths)``: ids of all users concatenated, plus one
  length per user;
* a jagged object with ``values()`` and ``lengths()`` methods
  (e.g. :class:`recembed.sparse.JaggedTensor`), one row per user;
* a CSR matrix: a torch ``sparse_csr`` tensor or an object with ``indptr`` and
  ``indices`` (scipy); every stored entry counts, whatever its value;
* a ``list`` of per-user id sequences, e.g. ``[[3, 5], [], [0]]``.

Duplicate ids within a user are harmless: each set is deduplicated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recembed.errors import (
    ConfigError,
    IdOutOfRangeError,
    InvalidDtypeError,
    InvalidIdError,
    JaggedStructureError,
    ShapeMismatchError,
)

__all__ = [
    "rank_topk",
    "recall_at_k",
    "ndcg_at_k",
    "hit_rate_at_k",
    "ranking_metrics",
    "RankingScore",
]

# Scores per chunk when chunk_size is not given: 2**24 float32 values are 64 MiB.
_DEFAULT_SCORES_PER_CHUNK = 1 << 24


@dataclass(frozen=True)
class RankingScore:
    """A ranking metric averaged over the users that have at least one relevant item.

    Attributes:
        value: the mean over evaluated users.
        per_user: ``(U,)`` float64, the metric of each user; NaN for skipped users.
        num_evaluated: users with at least one relevant item.
        num_skipped: users with no relevant item (left out of the mean).
    """

    value: float
    per_user: torch.Tensor
    num_evaluated: int
    num_skipped: int

    def __float__(self) -> float:
        return self.value


def _tensor(x: object) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.detach().cpu()


def _int_ids(x: object, name: str) -> torch.Tensor:
    t = _tensor(x)
    if t.numel() == 0 and not isinstance(x, torch.Tensor):
        return torch.zeros(0, dtype=torch.int64)  # np.asarray([]) is float64; that is no error
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise InvalidDtypeError(f"{name} must hold integer ids, got dtype {t.dtype}")
    if t.dim() != 1:
        raise ShapeMismatchError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    return t.to(torch.int64)


def _item_sets(obj: object, name: str, num_users: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise one of the accepted per-user set formats to ``(ids, lengths)`` int64."""
    if isinstance(obj, tuple):
        if len(obj) != 2:
            raise JaggedStructureError(
                f"{name} as a tuple must be (flat_item_ids, lengths), got {len(obj)} elements"
            )
        ids, lengths = (
            _int_ids(obj[0], f"{name} flat_item_ids"),
            _int_ids(obj[1], f"{name} lengths"),
        )
    elif callable(getattr(obj, "values", None)) and callable(getattr(obj, "lengths", None)):
        ids, lengths = (
            _int_ids(obj.values(), f"{name}.values()"),
            _int_ids(obj.lengths(), f"{name}.lengths()"),
        )
    elif isinstance(obj, torch.Tensor) and obj.layout == torch.sparse_csr:
        ids = _int_ids(obj.col_indices(), f"{name} column indices")
        lengths = torch.diff(_int_ids(obj.crow_indices(), f"{name} row pointers"))
    elif hasattr(obj, "indptr") and hasattr(obj, "indices"):
        ids = _int_ids(obj.indices, f"{name}.indices")
        lengths = torch.diff(_int_ids(obj.indptr, f"{name}.indptr"))
    elif isinstance(obj, list):
        rows = [_int_ids(r, f"{name}[{u}]") for u, r in enumerate(obj)]
        ids = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.int64)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    else:
        raise InvalidDtypeError(
            f"{name} has unsupported type {type(obj).__name__}; pass a (flat_item_ids, lengths) "
            "tuple, a JaggedTensor, a CSR matrix, or a list of per-user id lists"
        )
    if bool((lengths < 0).any()):
        u = int((lengths < 0).nonzero()[0, 0])
        raise JaggedStructureError(
            f"{name}: length of user {u} is {int(lengths[u])}; lengths must be >= 0"
        )
    if int(lengths.sum()) != ids.numel():
        raise JaggedStructureError(
            f"{name}: lengths sum to {int(lengths.sum())} but there are {ids.numel()} item ids"
        )
    if lengths.numel() != num_users:
        raise ShapeMismatchError(
            f"{name} has {lengths.numel()} users but there are {num_users} users to rank/score"
        )
    if bool((ids < 0).any()):
        i = int((ids < 0).nonzero()[0, 0])
        raise InvalidIdError(f"{name} contains item id {int(ids[i])}; item ids must be >= 0")
    return ids, lengths


def _unique_keys(ids: torch.Tensor, lengths: torch.Tensor, stride: int) -> torch.Tensor:
    """Sorted unique ``user * stride + item`` keys of a per-user id set."""
    users = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)
    return torch.unique(users * stride + ids)  # torch.unique sorts


def rank_topk(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    k: int,
    *,
    exclude: object | None = None,
    item_bias: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The ``k`` highest-scoring items of each user, over all items, excluding seen ones.

    ``score[u, i] = user_vectors[u] . item_vectors[i] + item_bias[i]``. Each row is sorted
    by descending score, equal scores by ascending item id (which items enter the list when
    several tie at the K-th score is unspecified). Where a user has fewer than ``k``
    candidate items left after exclusion, the row is padded with ``-1``.

    Args:
        user_vectors: ``(U, D)`` float.
        item_vectors: ``(I, D)`` float.
        k: list length, >= 1.
        exclude: items to hide per user (one row per user; formats in the module docstring).
        item_bias: optional ``(I,)`` float added to every user's scores.
        chunk_size: users scored at once; by default enough for a 64 MiB score block.
            Peak extra memory is about ``chunk_size * I`` scores.

    Returns:
        ``(U, k)`` int64 item ids.

    Example:
        >>> users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> items = torch.tensor([[3.0, 0.0], [2.0, 1.0], [0.0, 5.0]])
        >>> rank_topk(users, items, 2, exclude=[[0], []]).tolist()
        [[1, 2], [2, 1]]
    """
    users = _tensor(user_vectors)
    items = _tensor(item_vectors)
    for t, name in ((users, "user_vectors"), (items, "item_vectors")):
        if t.dim() != 2:
            raise ShapeMismatchError(f"{name} must be 2-D (rows, dim), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise InvalidDtypeError(f"{name} must be floating point, got dtype {t.dtype}")
    if users.shape[1] != items.shape[1]:
        raise ShapeMismatchError(
            f"user_vectors have dimension {users.shape[1]} but item_vectors have {items.shape[1]}"
        )
    _check_k(k)
    num_users, num_items = users.shape[0], items.shape[0]
    dtype = torch.promote_types(users.dtype, items.dtype)
    users, items = users.to(dtype), items.to(dtype)
    bias = None
    if item_bias is not None:
        bias = _tensor(item_bias).to(dtype).reshape(-1)
        if bias.numel() != num_items:
            raise ShapeMismatchError(
                f"item_bias has {bias.numel()} entries but there are {num_items} items"
            )
    for t, name in ((users, "user_vectors"), (items, "item_vectors"), (bias, "item_bias")):
        # Hidden items are marked with -inf, so real scores must be finite to stay distinguishable.
        if t is not None and not bool(torch.isfinite(t).all()):
            raise ConfigError(
                f"{name} contains NaN or infinite values; ranking needs finite scores"
            )
    if chunk_size is None:
        chunk_size = max(1, _DEFAULT_SCORES_PER_CHUNK // max(num_items, 1))
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size = {chunk_size!r}; it must be an integer >= 1")

    result = torch.full((num_users, k), -1, dtype=torch.int64)
    if num_users == 0 or num_items == 0:
        return result
    hidden_per_user = torch.zeros(num_users, dtype=torch.int64)
    hidden_keys = torch.zeros(0, dtype=torch.int64)
    if exclude is not None:
        ids, lengths = _item_sets(exclude, "exclude", num_users)
        if ids.numel() and int(ids.max()) >= num_items:
            raise IdOutOfRangeError(
                f"exclude contains item id {int(ids.max())} but there are only {num_items} items"
            )
        hidden_keys = _unique_keys(ids, lengths, num_items)
        hidden_per_user = torch.bincount(hidden_keys // num_items, minlength=num_users)
    hidden_bounds = torch.searchsorted(
        hidden_keys, torch.arange(num_users + 1, dtype=torch.int64) * num_items
    )
    k_kept = min(k, num_items)
    items_t = items.t()
    for start in range(0, num_users, chunk_size):
        stop = min(start + chunk_size, num_users)
        scores = users[start:stop] @ items_t
        if bias is not None:
            scores += bias
        keys = hidden_keys[hidden_bounds[start] : hidden_bounds[stop]]
        if keys.numel():
            scores[keys // num_items - start, keys % num_items] = -math.inf
        top_scores, top_ids = torch.topk(scores, k_kept, dim=1)
        # Canonical order inside the list: score descending, then item id ascending.
        by_id = torch.argsort(top_ids, dim=1)
        top_ids, top_scores = top_ids.gather(1, by_id), top_scores.gather(1, by_id)
        by_score = torch.argsort(top_scores, dim=1, descending=True, stable=True)
        top_ids = top_ids.gather(1, by_score)
        available = num_items - hidden_per_user[start:stop]
        top_ids[torch.arange(k_kept) >= available.unsqueeze(1)] = -1
        result[start:stop, :k_kept] = top_ids
    return result


def _check_k(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k = {k!r}; it must be an integer >= 1")


def _hits(topk: object, relevant: object, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``hits (U, k)`` bool: is ``topk[u, j]`` relevant; and ``num_relevant (U,)`` int64."""
    _check_k(k)
    ranked = _tensor(topk)
    if ranked.dim() != 2:
        raise ShapeMismatchError(f"topk must be 2-D (users, K), got shape {tuple(ranked.shape)}")
    if ranked.is_floating_point() or ranked.is_complex() or ranked.dtype == torch.bool:
        raise InvalidDtypeError(f"topk must hold integer item ids, got dtype {ranked.dtype}")
    if k > ranked.shape[1]:
        raise ConfigError(
            f"k = {k} but topk has only {ranked.shape[1]} columns; rank with k >= {k}"
        )
    ranked = ranked[:, :k].to(torch.int64)
    num_users = ranked.shape[0]
    if bool((ranked < -1).any()):
        u, j = (ranked < -1).nonzero()[0].tolist()
        raise InvalidIdError(
            f"topk[{u}, {j}] = {int(ranked[u, j])}; ids must be >= 0, or -1 for no item"
        )
    ordered = ranked.sort(dim=1).values
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if bool(repeated.any()):
        u, j = repeated.nonzero()[0].tolist()
        raise InvalidIdError(
            f"topk row {u} lists item {int(ordered[u, j])} twice; a ranking must not repeat items"
        )

    ids, lengths = _item_sets(relevant, "relevant", num_users)
    stride = max(
        int(ids.max()) + 1 if ids.numel() else 1, int(ranked.max()) + 1 if ranked.numel() else 1
    )
    relevant_keys = _unique_keys(ids, lengths, stride)
    num_relevant = torch.bincount(relevant_keys // stride, minlength=num_users)
    if relevant_keys.numel() == 0:
        return torch.zeros_like(ranked, dtype=torch.bool), num_relevant
    queries = torch.arange(num_users).unsqueeze(1) * stride + ranked
    where = torch.searchsorted(relevant_keys, queries).clamp(max=relevant_keys.numel() - 1)
    hits = (relevant_keys[where] == queries) & (ranked >= 0)
    return hits, num_relevant


def _average(per_user: torch.Tensor, num_relevant: torch.Tensor, metric: str) -> RankingScore:
    evaluated = num_relevant > 0
    num_evaluated = int(evaluated.sum())
    if num_evaluated == 0:
        raise ConfigError(f"no user has a relevant item, so {metric} is undefined")
    per_user = torch.where(evaluated, per_user, torch.full_like(per_user, math.nan))
    return RankingScore(
        value=float(per_user[evaluated].mean()),
        per_user=per_user,
        num_evaluated=num_evaluated,
        num_skipped=int(num_relevant.numel() - num_evaluated),
    )


def _recall(hits: torch.Tensor, num_relevant: torch.Tensor) -> torch.Tensor:
    return hits.sum(1).to(torch.float64) / num_relevant.clamp(min=1)


def _ndcg(hits: torch.Tensor, num_relevant: torch.Tensor) -> torch.Tensor:
    k = hits.shape[1]
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    dcg = (hits.to(torch.float64) * discount).sum(1)
    ideal_cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(discount, 0)])
    ideal = ideal_cumulative[num_relevant.clamp(max=k)]
    return dcg / ideal.clamp(min=1.0)  # ideal >= 1 whenever the user is evaluated


def _hit_rate(hits: torch.Tensor, num_relevant: torch.Tensor) -> torch.Tensor:
    return hits.any(1).to(torch.float64)


def recall_at_k(topk: torch.Tensor, relevant: object, k: int) -> RankingScore:
    """Recall@K = ``|top-K ∩ relevant| / |relevant|``, averaged over users with relevant items.

    The denominator is the full ``|relevant|`` (the common definition), so a user with more
    than K relevant items cannot reach 1.0.

    Args:
        topk: ``(U, >=k)`` ranked item ids (as from :func:`rank_topk`; -1 = no item).
        relevant: the relevant items of each of the U users (formats in the module docstring).
        k: cut-off, at most ``topk.shape[1]``.

    Example:
        >>> topk = torch.tensor([[4, 2, 7], [1, 0, 3]])
        >>> recall_at_k(topk, [[2, 9], [5]], k=3).value   # (1/2 + 0/1) / 2
        0.25
    """
    hits, num_relevant = _hits(topk, relevant, k)
    return _average(_recall(hits, num_relevant), num_relevant, f"recall@{k}")


def ndcg_at_k(topk: torch.Tensor, relevant: object, k: int) -> RankingScore:
    """NDCG@K with binary relevance and a ``1 / log2(rank + 1)`` discount (rank from 1).

    ``DCG = sum over hits at rank r <= K of 1/log2(r+1)``; the ideal DCG places
    ``min(K, |relevant|)`` hits at ranks 1, 2, ...; NDCG = DCG / ideal DCG.

    Example:
        >>> # hits at ranks 2 and 3 of 2 relevant: (1/log2 3 + 1/2) / (1 + 1/log2 3)
        >>> round(ndcg_at_k(torch.tensor([[5, 3, 8]]), [[3, 8]], k=3).value, 6)
        0.693426
    """
    hits, num_relevant = _hits(topk, relevant, k)
    return _average(_ndcg(hits, num_relevant), num_relevant, f"ndcg@{k}")


def hit_rate_at_k(topk: torch.Tensor, relevant: object, k: int) -> RankingScore:
    """HitRate@K: the fraction of users with at least one relevant item in their top K.

    Example:
        >>> hit_rate_at_k(torch.tensor([[1, 2], [3, 4]]), [[2], [9]], k=2).value
        0.5
    """
    hits, num_relevant = _hits(topk, relevant, k)
    return _average(_hit_rate(hits, num_relevant), num_relevant, f"hit_rate@{k}")


def ranking_metrics(
    topk: torch.Tensor, relevant: object, ks: Sequence[int] = (10,)
) -> dict[str, RankingScore]:
    """Recall, NDCG and HitRate at every cut-off in ``ks``, sharing one membership pass.

    Returns ``{"recall@10": ..., "ndcg@10": ..., "hit_rate@10": ..., ...}``.

    Example:
        >>> scores = ranking_metrics(torch.tensor([[1, 2], [3, 4]]), [[2], [9]], ks=[1, 2])
        >>> {name: s.value for name, s in scores.items()}["hit_rate@2"]
        0.5
    """
    ks = [ks] if isinstance(ks, int) else list(ks)
    if not ks:
        raise ConfigError("ks is empty; pass at least one cut-off such as ks=(10,)")
    for k in ks:
        _check_k(k)
    hits, num_relevant = _hits(topk, relevant, max(ks))
    results: dict[str, RankingScore] = {}
    for k in sorted(set(ks)):
        for name, per_user in (("recall", _recall), ("ndcg", _ndcg), ("hit_rate", _hit_rate)):
            results[f"{name}@{k}"] = _average(
                per_user(hits[:, :k], num_relevant), num_relevant, f"{name}@{k}"
            )
    return results
