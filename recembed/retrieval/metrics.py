"""How well an approximate index agrees with the exact one."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recembed.errors import InvalidDtypeError, ShapeMismatchError

_QUERY_BLOCK = 4096  # queries compared at once: bounds the (block, found, true) match array


def _as_id_matrix(values: Any, what: str) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.dtype.kind not in "iu":
        raise InvalidDtypeError(f"{what} must hold integer ids, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ShapeMismatchError(f"{what} must be 2-D (queries, k), got shape {array.shape}")
    return array.astype(np.int64, copy=False)


def recall_at_k(found_ids: Any, true_ids: Any) -> float:
    """Mean over queries of the share of true neighbours that were found.

    Args:
        found_ids: ``(Q, k_found)`` ids an index returned (``-1`` = no result).
        true_ids: ``(Q, k)`` the exact top-k ids (``-1`` entries are not counted).

    Returns:
        ``mean_q |found_q & true_q| / |true_q|`` over queries with at least one true id;
        ``nan`` when there is none. Recall@10 is ``recall_at_k(found[:, :10], true[:, :10])``.

    Example:
        >>> recall_at_k(torch.tensor([[1, 2, 3], [4, 5, -1]]), torch.tensor([[3, 2, 9], [4, 6, 7]]))
        0.5
    """
    found = _as_id_matrix(found_ids, "found_ids")
    true = _as_id_matrix(true_ids, "true_ids")
    if found.shape[0] != true.shape[0]:
        raise ShapeMismatchError(f"found_ids has {found.shape[0]} queries but true_ids has {true.shape[0]}")
    hits = np.zeros(true.shape[0], dtype=np.float64)
    for start in range(0, true.shape[0], _QUERY_BLOCK):
        f = found[start : start + _QUERY_BLOCK, :, None]
        t = true[start : start + _QUERY_BLOCK, None, :]
        matched = ((f == t) & (t >= 0)).any(axis=1)  # (block, k): was each true id found?
        hits[start : start + _QUERY_BLOCK] = matched.sum(axis=1)
    valid = (true >= 0).sum(axis=1)
    counted = valid > 0
    if not counted.any():
        return float("nan")
    return float(np.mean(hits[counted] / valid[counted]))
