"""JaggedTensor: a batch of variable-length rows of ids for one feature."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import torch

from recembed.errors import JaggedStructureError
from recembed.sparse._checks import (
    TensorLike,
    validate_jagged,
)
from recembed.sparse._format import format_rows
from recembed.sparse._storage import JaggedStorage

__all__ = ["JaggedTensor"]

_OWNER = "JaggedTensor"


class JaggedTensor(JaggedStorage):
    """One sparse feature for a batch: row ``i`` holds a variable number of ids.

    Stored flat: ``values`` (N,) holds every id, row after row; ``lengths`` (B,) says
    how many ids each row has and ``offsets`` (B + 1,) where each row starts
    (``offsets[0] == 0``, ``offsets[-1] == N``). Pass either lengths or offsets; the
    other is derived on first use. Optional ``weights`` (N,) give one float per id.

    Lists are accepted wherever a tensor is. Ids keep int32 or int64 (other integer
    dtypes become int64, float ids raise ``InvalidDtypeError``); lengths and offsets
    are int64.

    Example:
        >>> jt = JaggedTensor(values=[5, 7, 1], lengths=[1, 2])
        >>> jt.offsets().tolist()
        [0, 1, 3]
        >>> jt
        JaggedTensor([[5], [7, 1]])
        >>> [row.tolist() for row in jt.to_dense()]
        [[5], [7, 1]]
    """

    __slots__ = ()

    def __init__(
        self,
        values: TensorLike,
        lengths: Optional[TensorLike] = None,
        offsets: Optional[TensorLike] = None,
        weights: Optional[TensorLike] = None,
    ) -> None:
        self._values, self._lengths, self._offsets, self._weights = validate_jagged(
            values, lengths, offsets, weights, _OWNER
        )

    @classmethod
    def _trusted(
        cls,
        values: torch.Tensor,
        lengths: Optional[torch.Tensor],
        offsets: Optional[torch.Tensor],
        weights: Optional[torch.Tensor],
    ) -> "JaggedTensor":
        """Build without checks, from parts another sparse type already validated."""
        jt = cls.__new__(cls)
        jt._values = values
        jt._lengths = lengths
        jt._offsets = offsets
        jt._weights = weights
        return jt

    @classmethod
    def from_embeddings(
        cls,
        values: torch.Tensor,
        lengths: Optional[TensorLike] = None,
        offsets: Optional[TensorLike] = None,
        weights: Optional[TensorLike] = None,
    ) -> "JaggedTensor":
        """A jagged tensor whose values are vectors, one per id: ``values`` (N, D) of any dtype.

        This is what ``EmbeddingCollection`` returns; rows are the same bags as its input
        (``lengths``/``offsets`` describe the first dimension of ``values``).
        """
        if not isinstance(values, torch.Tensor) or values.dim() < 1:
            raise JaggedStructureError(f"{_OWNER}: embedding values must be a tensor of at least 1 dimension")
        n = values.shape[0]
        _, lengths_t, offsets_t, weights_t = validate_jagged(
            torch.zeros(n, dtype=torch.int64), lengths, offsets, weights, _OWNER
        )
        return cls._trusted(values, lengths_t, offsets_t, weights_t)

    # ----------------------------------------------------------------- accessors
    def __len__(self) -> int:
        """Batch size B (number of rows)."""
        if self._lengths is not None:
            return self._lengths.numel()
        return self._offsets.numel() - 1

    def batch_size(self) -> int:
        """Number of rows B; same as ``len(jt)``."""
        return len(self)

    # ---------------------------------------------------------------- conversion
    def to_dense(self) -> list[torch.Tensor]:
        """One tensor per row (views into ``values``): ``[tensor([5]), tensor([7, 1])]``."""
        return list(torch.split(self._values, self.lengths().tolist()))

    def to_dense_weights(self) -> Optional[list[torch.Tensor]]:
        """One weight tensor per row, or ``None`` when there are no weights."""
        if self._weights is None:
            return None
        return list(torch.split(self._weights, self.lengths().tolist()))

    def to_padded_dense(
        self, desired_length: Optional[int] = None, padding_value: Union[int, float] = 0
    ) -> torch.Tensor:
        """Rows as a (B, L) tensor, padded at the end with ``padding_value``.

        L is ``desired_length`` if given (longer rows are truncated), else the
        longest row. Same dtype as ``values``.

        Example:
            >>> JaggedTensor([5, 7, 1], lengths=[1, 2]).to_padded_dense().tolist()
            [[5, 0], [7, 1]]
        """
        return self._pad(self._values, desired_length, padding_value)

    def to_padded_dense_weights(
        self, desired_length: Optional[int] = None, padding_value: float = 0.0
    ) -> Optional[torch.Tensor]:
        """Weights padded like :meth:`to_padded_dense`, or ``None`` without weights."""
        if self._weights is None:
            return None
        return self._pad(self._weights, desired_length, padding_value)

    def _pad(
        self, flat: torch.Tensor, desired_length: Optional[int], padding_value: Union[int, float]
    ) -> torch.Tensor:
        lengths = self.lengths()
        batch = lengths.numel()
        if desired_length is None:
            width = int(lengths.max()) if batch > 0 else 0
        else:
            if desired_length < 0:
                raise JaggedStructureError(
                    f"{_OWNER}.to_padded_dense: desired_length must be >= 0, got {desired_length}"
                )
            width = int(desired_length)
        out = torch.full((batch, width), padding_value, dtype=flat.dtype, device=flat.device)
        if flat.numel() == 0 or width == 0:
            return out
        # Row and in-row position of every value, then scatter the ones that fit.
        rows = torch.repeat_interleave(torch.arange(batch, device=flat.device), lengths)
        positions = torch.arange(flat.numel(), device=flat.device) - self.offsets()[rows]
        keep = positions < width
        out[rows[keep], positions[keep]] = flat[keep]
        return out

    @classmethod
    def from_dense(
        cls,
        values: Sequence[Union[torch.Tensor, Sequence[int]]],
        weights: Optional[Sequence[Union[torch.Tensor, Sequence[float]]]] = None,
    ) -> "JaggedTensor":
        """Build from one row per entry (tensors or lists).

        Example:
            >>> JaggedTensor.from_dense([[5], [7, 1]], weights=[[1.0], [0.5, 2.0]])
            JaggedTensor([[5], [7, 1]], weights=[[1], [0.5, 2]])
        """
        flat_ids, lengths = _concat_rows(values, "values", torch.int64)
        flat_weights = None
        if weights is not None:
            if len(weights) != len(values):
                raise JaggedStructureError(
                    f"{_OWNER}.from_dense: {len(weights)} weight rows for {len(values)} value rows"
                )
            flat_weights, weight_lengths = _concat_rows(
                weights, "weights", torch.get_default_dtype()
            )
            if weight_lengths != lengths:
                row = next(i for i, (a, b) in enumerate(zip(lengths, weight_lengths)) if a != b)
                raise JaggedStructureError(
                    f"{_OWNER}.from_dense: row {row} has {lengths[row]} values but "
                    f"{weight_lengths[row]} weights"
                )
        return cls(flat_ids, lengths=lengths, weights=flat_weights)

    # ------------------------------------------------------------------- devices
    def to(self, device: Union[torch.device, str], non_blocking: bool = False) -> "JaggedTensor":
        """A copy on ``device`` (tensors already there are not copied)."""

        def move(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return JaggedTensor._trusted(
            move(self._values), move(self._lengths), move(self._offsets), move(self._weights)
        )

    def pin_memory(self) -> "JaggedTensor":
        """A copy in pinned host memory, for fast asynchronous copies to a GPU."""

        def pin(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if t is None else t.pin_memory()

        return JaggedTensor._trusted(
            pin(self._values), pin(self._lengths), pin(self._offsets), pin(self._weights)
        )

    # ------------------------------------------------------------ test & display
    def equals(self, other: "JaggedTensor") -> bool:
        """Same rows, same id dtype and same weights (exact comparison)."""
        if not isinstance(other, JaggedTensor):
            return False
        return (
            self._values.dtype == other._values.dtype
            and torch.equal(self.lengths(), other.lengths())
            and torch.equal(self._values, other._values)
            and _same_optional(self._weights, other._weights)
        )

    def __repr__(self) -> str:
        lengths = self.lengths().tolist()
        text = format_rows(self._values, lengths)
        if self._weights is not None:
            text += ", weights=" + format_rows(self._weights, lengths)
        return f"{_OWNER}({text})"


def _same_optional(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and torch.equal(a, b)


def _concat_rows(
    rows: Sequence[Union[torch.Tensor, Sequence]], what: str, empty_dtype: torch.dtype
) -> tuple[torch.Tensor, list[int]]:
    """Flatten rows into one tensor plus their lengths, keeping a tensor row's dtype."""
    tensors = []
    for index, row in enumerate(rows):
        tensor = row if isinstance(row, torch.Tensor) else torch.as_tensor(row)
        if tensor.dim() != 1:
            raise JaggedStructureError(
                f"{_OWNER}.from_dense: {what} row {index} must be 1-D, got shape "
                f"{tuple(tensor.shape)}"
            )
        tensors.append(tensor)
    lengths = [t.numel() for t in tensors]
    # Empty Python rows become float32 in torch.as_tensor; leaving them out of the
    # concatenation keeps them from changing the dtype of the other rows.
    non_empty = [t for t in tensors if t.numel() > 0]
    if non_empty:
        return torch.cat(non_empty), lengths
    typed = [row for row in rows if isinstance(row, torch.Tensor)]
    dtype = typed[0].dtype if typed else empty_dtype
    return torch.empty(0, dtype=dtype), lengths
