"""Checks and conversions for what users hand to an index: vectors, ids, k.

Every index goes through these, so the same bad input gives the same error everywhere:

* wrong rank or a dimension that does not match -> :class:`ShapeMismatchError`;
* a non-float vector dtype or a non-integer id dtype -> :class:`InvalidDtypeError`;
* NaN or +-inf in vectors or queries -> :class:`DataFormatError` (no path: the values,
  not a file, are malformed; it is a ``ValueError`` like the others);
* negative or repeated ids -> :class:`InvalidIdError`;
* a bad ``k`` -> :class:`ConfigError`.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch

from recembed.errors import (
    ConfigError,
    DataFormatError,
    InvalidDtypeError,
    InvalidIdError,
    ShapeMismatchError,
)

ArrayLike = Union[torch.Tensor, np.ndarray]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_float_matrix(values: Any, what: str, dim: Optional[int] = None, copy: bool = False) -> torch.Tensor:
    """Return ``values`` as a contiguous float32 ``(rows, dim)`` CPU tensor, checked.

    ``what`` names the argument in error messages ("vectors", "queries"). With ``copy``
    the result never shares memory with ``values`` (an index must not change when the
    caller later edits its array).
    """
    if isinstance(values, torch.Tensor):
        tensor = values.detach()
    else:
        array = np.asarray(values)
        if array.dtype == object:
            raise InvalidDtypeError(f"{what} must be a float tensor or array, got an object array")
        tensor = torch.from_numpy(array) if array.dtype.kind == "f" else torch.as_tensor(array)
    if tensor.dtype not in _FLOAT_DTYPES:
        raise InvalidDtypeError(
            f"{what} must have a float dtype (float16, bfloat16, float32, float64), got {tensor.dtype}"
        )
    if tensor.dim() != 2:
        hint = f"; pass {what}[None] for a single row" if tensor.dim() == 1 else ""
        raise ShapeMismatchError(f"{what} must be 2-D (rows, dim), got shape {tuple(tensor.shape)}{hint}")
    if dim is not None and tensor.shape[1] != dim:
        raise ShapeMismatchError(
            f"{what} have dimension {tensor.shape[1]} but the index holds vectors of dimension {dim}"
        )
    if tensor.shape[1] == 0:
        raise ShapeMismatchError(f"{what} must have a dimension of at least 1, got shape {tuple(tensor.shape)}")
    source = tensor
    tensor = tensor.to(device="cpu", dtype=torch.float32).contiguous()
    if copy and tensor.numel() and tensor.data_ptr() == source.data_ptr():
        tensor = tensor.clone()
    _check_finite(tensor, what)
    return tensor


def _check_finite(tensor: torch.Tensor, what: str) -> None:
    finite_rows = torch.isfinite(tensor).all(dim=1)
    if not bool(finite_rows.all()):
        bad = torch.nonzero(~finite_rows).flatten()
        raise DataFormatError(
            f"{what} contain NaN or infinite values in {bad.numel()} row(s), first at row {int(bad[0])}; "
            "only finite values are allowed"
        )


def normalize_rows(matrix: torch.Tensor) -> torch.Tensor:
    """Scale each row to unit L2 norm; all-zero rows stay zero (their cosine is 0)."""
    norms = torch.linalg.vector_norm(matrix, dim=1, keepdim=True)
    return matrix / norms.clamp_min(torch.finfo(matrix.dtype).tiny)


def as_id_array(ids: Any, what: str, expected_len: Optional[int] = None) -> np.ndarray:
    """Return ``ids`` as a 1-D int64 numpy array, checking dtype, length and sign."""
    if isinstance(ids, torch.Tensor):
        array = ids.detach().cpu().numpy()
    else:
        array = np.asarray(ids)
    if array.size == 0 and array.dtype.kind == "f":
        array = array.astype(np.int64)  # np.asarray([]) is float64; an empty list is fine
    if array.dtype.kind not in "iu":
        raise InvalidDtypeError(f"{what} must have an integer dtype, got {array.dtype}")
    if array.ndim != 1:
        raise ShapeMismatchError(f"{what} must be 1-D, got shape {array.shape}")
    if expected_len is not None and array.shape[0] != expected_len:
        raise ShapeMismatchError(f"{what} has {array.shape[0]} entries but there are {expected_len} vectors")
    if array.dtype == np.uint64 and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise InvalidIdError(f"{what} contains ids above the int64 range (max {int(array.max())})")
    array = array.astype(np.int64, copy=False)
    return array


def check_new_ids(ids: np.ndarray) -> None:
    """Raise :class:`InvalidIdError` for negative ids (-1 marks 'no result') or repeats."""
    if ids.size and int(ids.min()) < 0:
        bad = ids[ids < 0]
        raise InvalidIdError(
            f"ids must be >= 0 (-1 marks a missing search result), got {bad.size} negative id(s), "
            f"first {int(bad[0])}"
        )
    unique, counts = np.unique(ids, return_counts=True)
    if unique.size != ids.size:
        repeated = unique[counts > 1]
        raise InvalidIdError(
            f"ids must be unique, but {repeated.size} id(s) repeat within the batch, e.g. "
            f"{repeated[:5].tolist()}"
        )


def check_k(k: Any, size: int) -> int:
    """Return ``k`` as an int, or raise :class:`ConfigError` unless ``1 <= k <= size``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ConfigError(f"k must be an int, got {type(k).__name__} {k!r}")
    k = int(k)
    if size == 0:
        raise ConfigError("cannot search an empty index (0 vectors); call build() or add() first")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if k > size:
        raise ConfigError(f"k={k} is larger than the index size {size}; ask for at most {size} results")
    return k
