"""The unit every reader and generator yields: one mini-batch of sparse + dense inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import torch

from recembed.errors import InvalidDtypeError, ShapeMismatchError
from recembed.sparse import KeyedJaggedTensor

__all__ = ["Batch"]


def _accelerator_available() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


@dataclass(eq=False)
class Batch:
    """One mini-batch of ``B`` examples.

    Attributes:
        sparse: ids per sparse feature, key-major, ``stride() == B``; ids are table rows.
        dense: ``(B, n_dense)`` floating tensor, ``(B, 0)`` when there are no dense features.
        labels: ``(B,)`` floating tensor (click 0/1, or a rating).
        timestamps: optional ``(B,)`` int64 tensor (e.g. seconds since the epoch).
        extra: further per-example tensors whose first dimension is ``B``.

    Example:
        >>> b = Batch(sparse=KeyedJaggedTensor.from_lists({"user": [[3], [7]]}),
        ...           dense=torch.zeros(2, 0), labels=torch.tensor([1.0, 0.0]))
        >>> len(b), b.sparse["user"].values().tolist()
        (2, [3, 7])
    """

    sparse: KeyedJaggedTensor
    dense: torch.Tensor
    labels: torch.Tensor
    timestamps: Optional[torch.Tensor] = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.labels.dim() != 1:
            raise ShapeMismatchError(
                f"Batch.labels must be 1-D (B,), got shape {tuple(self.labels.shape)}"
            )
        size = self.labels.shape[0]
        if not self.labels.is_floating_point():
            raise InvalidDtypeError(f"Batch.labels must be a floating dtype, got {self.labels.dtype}")
        if self.dense.dim() != 2 or self.dense.shape[0] != size:
            raise ShapeMismatchError(
                f"Batch.dense must have shape (B={size}, n_dense), got {tuple(self.dense.shape)}"
            )
        if not self.dense.is_floating_point():
            raise InvalidDtypeError(f"Batch.dense must be a floating dtype, got {self.dense.dtype}")
        if self.sparse.keys() and self.sparse.stride() != size:
            raise ShapeMismatchError(
                f"Batch.sparse has stride {self.sparse.stride()} but the batch has {size} labels"
            )
        if self.timestamps is not None and tuple(self.timestamps.shape) != (size,):
            raise ShapeMismatchError(
                f"Batch.timestamps must have shape ({size},), got {tuple(self.timestamps.shape)}"
            )
        for name, tensor in self.extra.items():
            if tensor.dim() == 0 or tensor.shape[0] != size:
                raise ShapeMismatchError(
                    f"Batch.extra[{name!r}] must have first dimension {size}, "
                    f"got shape {tuple(tensor.shape)}"
                )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: Union[torch.device, str], non_blocking: bool = False) -> "Batch":
        """A copy of the batch on ``device`` (tensors already there are not copied)."""

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        return Batch(
            sparse=self.sparse.to(device, non_blocking=non_blocking),
            dense=move(self.dense),
            labels=move(self.labels),
            timestamps=None if self.timestamps is None else move(self.timestamps),
            extra={k: move(v) for k, v in self.extra.items()},
        )

    def pin_memory(self) -> "Batch":
        """A copy in pinned host memory, for asynchronous copies to an accelerator.

        Pinned memory only exists alongside an accelerator; on a CPU-only machine this
        returns the batch itself (as ``torch.utils.data.DataLoader(pin_memory=True)``
        would, minus its warning), so the same training code runs everywhere.
        """
        if not _accelerator_available():
            return self
        return Batch(
            sparse=self.sparse.pin_memory(),
            dense=self.dense.pin_memory(),
            labels=self.labels.pin_memory(),
            timestamps=None if self.timestamps is None else self.timestamps.pin_memory(),
            extra={k: v.pin_memory() for k, v in self.extra.items()},
        )
