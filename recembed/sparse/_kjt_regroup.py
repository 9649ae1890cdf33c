"""Key-level regrouping of key-major jagged batches: split, join and permute.

A :class:`~recembed.sparse.KeyedJaggedTensor` stores key 0's ids for every row, then
key 1's, and so on, so regrouping keys only slices and concatenates whole key blocks.
These functions return the parts of the result -- ``(values, lengths, weights)`` -- and
leave building the object to the class, which keeps this module free of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Protocol

import torch

from recembed.errors import JaggedStructureError, UnknownKeyError

#: The result of a regrouping: ids, per-row lengths (key-major) and optional per-id weights.
Parts = tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]


class _KeyMajor(Protocol):
    """What the functions read: a JaggedTensor or a KeyedJaggedTensor."""

    def values(self) -> torch.Tensor: ...
    def lengths(self) -> torch.Tensor: ...
    def weights(self) -> torch.Tensor: ...
    def weights_or_none(self) -> Optional[torch.Tensor]: ...


def check_split_sizes(sizes: list[int], num_keys: int, owner: str) -> None:
    """Raise unless ``sizes`` are non-negative and sum to ``num_keys``."""
    if any(size < 0 for size in sizes) or sum(sizes) != num_keys:
        raise JaggedStructureError(
            f"{owner}: segment sizes {sizes} must be >= 0 and sum to the number of keys, {num_keys}"
        )


def split_parts(
    values: torch.Tensor,
    lengths: torch.Tensor,
    weights: Optional[torch.Tensor],
    key_starts: list[int],
    stride: int,
    sizes: Sequence[int],
) -> list[Parts]:
    """Cut into consecutive key groups of ``sizes`` keys each.

    Args:
        values, weights: ``[N]`` ids and optional per-id weights, key-major.
        lengths: ``[num_keys * stride]`` ids per (key, row).
        key_starts: ``[num_keys + 1]`` offset of each key's first id in ``values``.
    """
    parts = []
    first = 0
    for size in sizes:
        last = first + size
        begin, end = key_starts[first], key_starts[last]
        part_weights = None if weights is None else weights[begin:end]
        parts.append((values[begin:end], lengths[first * stride : last * stride], part_weights))
        first = last
    return parts


def join_parts(parts: Sequence[_KeyMajor], names: list[str], owner: str) -> Parts:
    """Concatenate key-major parts that share a stride (key-major makes this a cat).

    ``names`` label the parts in the error raised when only some carry weights.
    """
    has_weights = [part.weights_or_none() is not None for part in parts]
    if any(has_weights) and not all(has_weights):
        raise JaggedStructureError(
            f"{owner}: {names[has_weights.index(False)]} has no weights while others "
            "do; either all have weights or none does"
        )
    weights = torch.cat([part.weights() for part in parts]) if all(has_weights) else None
    return (
        torch.cat([part.values() for part in parts]),
        torch.cat([part.lengths() for part in parts]),
        weights,
    )


def permute_parts(
    values: torch.Tensor,
    lengths: torch.Tensor,
    weights: Optional[torch.Tensor],
    key_starts: list[int],
    keys: list[str],
    stride: int,
    order: list[int],
    owner: str,
) -> Parts:
    """Reorder key blocks: block ``i`` of the result is block ``order[i]`` (repeats allowed).

    ``order`` must be non-empty; the caller builds the empty result itself.
    """
    for index in order:
        if not 0 <= index < len(keys):
            raise UnknownKeyError(
                f"{owner}: index {index} is out of range for {len(keys)} keys {keys}"
            )
    per_key = lengths.view(len(keys), stride)
    new_values = torch.cat([values[key_starts[i] : key_starts[i + 1]] for i in order])
    new_weights = None
    if weights is not None:
        new_weights = torch.cat([weights[key_starts[i] : key_starts[i + 1]] for i in order])
    order_t = torch.tensor(order, dtype=torch.int64, device=lengths.device)
    return new_values, per_key[order_t].reshape(-1), new_weights
