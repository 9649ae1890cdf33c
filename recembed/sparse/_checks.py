"""Input conversion and structural checks shared by the sparse types.

These run every time a batch is built, so every check is one vectorised tensor
operation (no Python loops over rows). The helpers take an ``owner`` string (for
example ``"JaggedTensor"`` or ``"KeyedJaggedTensor key 'user'"``) so a message says
where the bad input was passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

import torch

from recembed.errors import InvalidDtypeError, JaggedStructureError

# What the constructors accept for a 1-D tensor argument.
TensorLike = Union[torch.Tensor, Sequence[int], Sequence[float]]

_ID_DTYPES = (torch.int32, torch.int64)


def _as_1d(data: Any, name: str, owner: str, empty_dtype: torch.dtype) -> torch.Tensor:
    """Turn ``data`` into a 1-D tensor without copying tensors that already are one."""
    if isinstance(data, torch.Tensor):
        tensor = data
    else:
        tensor = torch.as_tensor(data)
        # torch.as_tensor([]) is float32; an empty Python list carries no dtype, so
        # give it the one the argument needs instead of rejecting it as "float".
        if tensor.numel() == 0:
            tensor = tensor.to(empty_dtype)
    if tensor.dim() != 1:
        raise JaggedStructureError(
            f"{owner}: {name} must be 1-D, got shape {tuple(tensor.shape)}"
        )
    return tensor


def as_ids(values: TensorLike, owner: str) -> torch.Tensor:
    """Ids as a 1-D int32 or int64 tensor; other integer dtypes become int64.

    Float, bool and complex ids raise :class:`InvalidDtypeError` (a float id is almost
    always a feature column passed by mistake). Negative ids are left to the tables.
    """
    tensor = _as_1d(values, "values", owner, torch.int64)
    if tensor.dtype in _ID_DTYPES:
        return tensor
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise InvalidDtypeError(
            f"{owner}: values (ids) must have an integer dtype (int32 or int64), "
            f"got {tensor.dtype}"
        )
    return tensor.to(torch.int64)


def as_counts(data: TensorLike, name: str, owner: str) -> torch.Tensor:
    """Lengths or offsets as a 1-D int64 tensor (integer input only)."""
    tensor = _as_1d(data, name, owner, torch.int64)
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise InvalidDtypeError(f"{owner}: {name} must have an integer dtype, got {tensor.dtype}")
    return tensor.to(torch.int64)


def as_weights(weights: TensorLike, num_values: int, owner: str) -> torch.Tensor:
    """Per-value weights as a 1-D floating tensor with one entry per value."""
    tensor = _as_1d(weights, "weights", owner, torch.get_default_dtype())
    if not tensor.dtype.is_floating_point:
        if tensor.dtype.is_complex:
            raise InvalidDtypeError(f"{owner}: weights must be real numbers, got {tensor.dtype}")
        tensor = tensor.to(torch.get_default_dtype())
    if tensor.numel() != num_values:
        raise JaggedStructureError(
            f"{owner}: weights has {tensor.numel()} entries but values has {num_values}; "
            "there must be exactly one weight per value"
        )
    return tensor


def check_lengths(lengths: torch.Tensor, num_values: int, owner: str) -> None:
    """Lengths must be non-negative and sum to the number of values."""
    if lengths.numel() == 0:
        total = 0
    else:
        smallest = int(lengths.min())
        if smallest < 0:
            raise JaggedStructureError(
                f"{owner}: lengths must be >= 0, found {smallest}"
            )
        total = int(lengths.sum())
    if total != num_values:
        raise JaggedStructureError(
            f"{owner}: lengths sum to {total} but values has {num_values} entries"
        )


def check_offsets(offsets: torch.Tensor, num_values: int, owner: str) -> None:
    """Offsets must start at 0, never decrease, and end at the number of values."""
    if offsets.numel() == 0:
        raise JaggedStructureError(
            f"{owner}: offsets must have at least one entry (0), got an empty tensor"
        )
    first, last = int(offsets[0]), int(offsets[-1])
    if first != 0:
        raise JaggedStructureError(f"{owner}: offsets must start at 0, got {first}")
    if offsets.numel() > 1:
        steps = offsets[1:] - offsets[:-1]
        if bool((steps < 0).any()):
            where = int(torch.nonzero(steps < 0)[0, 0]) + 1
            raise JaggedStructureError(
                f"{owner}: offsets must be non-decreasing, but offsets[{where}] = "
                f"{int(offsets[where])} < offsets[{where - 1}] = {int(offsets[where - 1])}"
            )
    if last != num_values:
        raise JaggedStructureError(
            f"{owner}: offsets end at {last} but values has {num_values} entries"
        )


def check_lengths_match_offsets(lengths: torch.Tensor, offsets: torch.Tensor, owner: str) -> None:
    """When both are given they must describe the same rows."""
    if offsets.numel() != lengths.numel() + 1:
        raise JaggedStructureError(
            f"{owner}: offsets must have one more entry than lengths, got "
            f"{offsets.numel()} offsets for {lengths.numel()} lengths"
        )
    if not torch.equal(offsets[1:] - offsets[:-1], lengths):
        raise JaggedStructureError(f"{owner}: lengths and offsets describe different rows")


def lengths_to_offsets(lengths: torch.Tensor) -> torch.Tensor:
    """``[3, 1, 2] -> [0, 3, 4, 6]`` (int64, one more entry than ``lengths``)."""
    zero = torch.zeros(1, dtype=torch.int64, device=lengths.device)
    return torch.cat([zero, torch.cumsum(lengths, dim=0, dtype=torch.int64)])


def offsets_to_lengths(offsets: torch.Tensor) -> torch.Tensor:
    """``[0, 3, 4, 6] -> [3, 1, 2]``."""
    return offsets[1:] - offsets[:-1]


def validate_jagged(
    values: TensorLike,
    lengths: Optional[TensorLike],
    offsets: Optional[TensorLike],
    weights: Optional[TensorLike],
    owner: str,
) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Convert and check the flat parts of a jagged tensor.

    Returns ``(ids, lengths, offsets, weights)``; lengths or offsets stay ``None``
    when not given (they are derived lazily), but at least one is required.
    """
    ids = as_ids(values, owner)
    num_values = ids.numel()
    if lengths is None and offsets is None:
        raise JaggedStructureError(f"{owner}: pass lengths or offsets to say where each row starts")
    lengths_t = None if lengths is None else as_counts(lengths, "lengths", owner)
    offsets_t = None if offsets is None else as_counts(offsets, "offsets", owner)
    if lengths_t is not None:
        check_lengths(lengths_t, num_values, owner)
    if offsets_t is not None:
        check_offsets(offsets_t, num_values, owner)
    if lengths_t is not None and offsets_t is not None:
        check_lengths_match_offsets(lengths_t, offsets_t, owner)
    weights_t = None if weights is None else as_weights(weights, num_values, owner)
    return ids, lengths_t, offsets_t, weights_t


def check_keys(keys: Sequence[str], owner: str) -> list[str]:
    """Keys as a list, rejecting a bare string and duplicates."""
    if isinstance(keys, str):
        raise JaggedStructureError(
            f"{owner}: keys must be a list of names, got the string {keys!r}; "
            f"did you mean [{keys!r}]?"
        )
    key_list = list(keys)
    seen: set[str] = set()
    for key in key_list:
        if key in seen:
            raise JaggedStructureError(
                f"{owner}: duplicate key {key!r} in keys {key_list}; each key may appear once"
            )
        seen.add(key)
    return key_list


def resolve_stride(num_keys: int, num_rows: int, stride: Optional[int], owner: str) -> int:
    """Batch size from ``stride`` or the lengths count, checking they fit the keys."""
    if stride is not None:
        if stride < 0:
            raise JaggedStructureError(f"{owner}: stride must be >= 0, got {stride}")
        if num_rows != num_keys * stride:
            raise JaggedStructureError(
                f"{owner}: stride mismatch: {num_rows} lengths for {num_keys} keys x "
                f"stride {stride} = {num_keys * stride}"
            )
        return int(stride)
    if num_keys == 0:
        if num_rows != 0:
            raise JaggedStructureError(f"{owner}: stride mismatch: {num_rows} lengths but no keys")
        return 0
    if num_rows % num_keys != 0:
        raise JaggedStructureError(
            f"{owner}: stride mismatch: {num_rows} lengths is not divisible by {num_keys} keys"
        )
    return num_rows // num_keys
