"""Checking and mapping raw ids to table rows, with errors that say where the id came from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from recembed.errors import IdOutOfRangeError, InvalidDtypeError, InvalidIdError
from recembed.sparse.hashing import hash_ids
from recembed.tables.config import BaseEmbeddingConfig

if TYPE_CHECKING:
    from recembed.sparse import KeyedJaggedTensor

__all__ = ["ids_to_rows", "remap_suspect_keys"]


def ids_to_rows(ids: torch.Tensor, config: BaseEmbeddingConfig, feature: str | None = None) -> torch.Tensor:
    """Validate raw ids of one feature and map them to rows of ``config``'s table.

    With ``config.hash_size`` set, any int64 id is hashed into ``[0, hash_size)``;
    otherwise ids must already lie in ``[0, num_embeddings)``.

    Args:
        ids: integer tensor of any shape.
        config: the table serving the feature.
        feature: feature name, used in error messages.
    Returns:
        int64 row ids of ``ids.shape``.
    Raises:
        InvalidDtypeError: float or bool ids.
        InvalidIdError: a negative id (without hashing).
        IdOutOfRangeError: an id >= num_embeddings (without hashing).
    """
    where = f"feature '{feature}' (table '{config.name}')" if feature else f"table '{config.name}'"
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise InvalidDtypeError(f"{where}: ids must be integers, got dtype {ids.dtype}")
    if config.hash_size is not None:
        return hash_ids(ids, config.hash_size, config.hash_seed)
    if ids.numel() == 0:
        return ids.to(torch.int64)
    lo, hi = torch.aminmax(ids)
    lo_i, hi_i = int(lo), int(hi)
    if lo_i < 0:
        raise InvalidIdError(
            f"{where}: negative id {lo_i}; ids must lie in [0, {config.num_embeddings}) "
            "(set hash_size to hash arbitrary int64 ids)"
        )
    if hi_i >= config.num_embeddings:
        raise IdOutOfRangeError(
            f"{where}: id {hi_i} out of range; allowed [0, {config.num_embeddings}) "
            "(set hash_size to hash arbitrary int64 ids)"
        )
    return ids.to(torch.int64)


def remap_suspect_keys(
    features: "KeyedJaggedTensor",
    rows: torch.Tensor,
    suspects: Sequence[int],
    config_of_key: Callable[[int], BaseEmbeddingConfig],
) -> torch.Tensor:
    """``rows`` (N,) int64 of a whole KJT, with the keys ``suspects`` sent through :func:`ids_to_rows`.

    The batched kernels range-check every key in one pass; a key that failed it (or whose
    table hashes ids) is redone here, so a bad id raises the error naming its feature,
    table and range, and hashed keys get their rows. ``rows`` is copied before the first
    write when it still shares memory with ``features.values()``.
    """
    if not suspects:
        return rows
    values = features.values()
    bounds = features.offsets()[:: features.stride()].tolist()
    keys = features.keys()
    for k in suspects:
        cfg = config_of_key(k)
        mapped = ids_to_rows(values[bounds[k] : bounds[k + 1]], cfg, keys[k])
        if cfg.hash_size is not None:
            if rows is values:
                rows = rows.clone()
            rows[bounds[k] : bounds[k + 1]] = mapped
    return rows
