"""Checks on what a model's forward receives, with errors that name the model and the input.

``select_features`` lets a batch carry more features than a model reads (a data set with
extra columns feeds several models), and turns a missing feature into one clear error.
"""

from __future__ import annotations

from typing import Sequence

import torch

from recembed.errors import ConfigError, InvalidDtypeError, ShapeMismatchError, UnknownKeyError
from recembed.sparse import KeyedJaggedTensor

__all__ = ["select_features", "check_dense_features", "check_one_id_per_row"]


def select_features(features: KeyedJaggedTensor, names: Sequence[str], owner: str) -> KeyedJaggedTensor:
    """The features ``names`` of ``features``, in that order (no copy if already so).

    Args:
        features: a batch with stride B.
        names: feature names the model reads.
        owner: model name, for error messages.
    Returns:
        A KeyedJaggedTensor with keys ``names`` and stride B.
    Raises:
        UnknownKeyError: a feature in ``names`` is not in the batch.
    """
    if not isinstance(features, KeyedJaggedTensor):
        raise ConfigError(f"{owner}: sparse features must be a KeyedJaggedTensor, got {type(features).__name__}")
    keys = features.keys()
    wanted = list(names)
    if keys == wanted:
        return features
    position = {key: i for i, key in reversed(list(enumerate(keys)))}
    missing = [name for name in wanted if name not in position]
    if missing:
        raise UnknownKeyError(
            f"{owner}: feature(s) {missing} missing from the batch; the model reads {wanted}, "
            f"the batch has {keys}"
        )
    return features.permute([position[name] for name in wanted])


def check_dense_in_features(value: object, owner: str, minimum: int) -> int:
    """Validate a model's ``dense_in_features`` argument: an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{owner}: dense_in_features must be an int >= {minimum}, got {value!r}")
    return value


def check_dense_features(dense: torch.Tensor | None, num_features: int, batch: int, owner: str) -> torch.Tensor:
    """Validate dense input ``(B, num_features)`` against the sparse batch size B.

    ``None`` is accepted when the model has no dense features and becomes ``(B, 0)``.
    Integer input is cast to float32.
    """
    if dense is None:
        if num_features != 0:
            raise ShapeMismatchError(f"{owner}: dense features of shape ({batch}, {num_features}) are required")
        return torch.zeros(batch, 0)
    if not isinstance(dense, torch.Tensor):
        raise InvalidDtypeError(f"{owner}: dense features must be a tensor, got {type(dense).__name__}")
    if dense.is_complex() or dense.dtype == torch.bool:
        raise InvalidDtypeError(f"{owner}: dense features must be real numbers, got dtype {dense.dtype}")
    if dense.dim() != 2 or dense.shape[1] != num_features:
        raise ShapeMismatchError(
            f"{owner}: dense features have shape {tuple(dense.shape)}, expected (batch, {num_features})"
        )
    if dense.shape[0] != batch:
        raise ShapeMismatchError(
            f"{owner}: dense features have {dense.shape[0]} rows but the sparse batch has stride {batch}"
        )
    return dense if dense.is_floating_point() else dense.float()


def check_one_id_per_row(features: KeyedJaggedTensor, name: str, owner: str) -> torch.Tensor:
    """The ids of feature ``name`` when every row has exactly one, shape (B,)."""
    jagged = select_features(features, [name], owner)[name]
    lengths = jagged.lengths()
    if lengths.numel() and not bool((lengths == 1).all()):
        bad = int((lengths != 1).nonzero()[0])
        raise ShapeMismatchError(
            f"{owner}: feature '{name}' must have exactly one id per row; row {bad} has {int(lengths[bad])}"
        )
    return jagged.values()
