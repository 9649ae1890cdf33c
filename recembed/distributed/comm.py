"""The collectives sharded tables use, with errors that say which step failed on which rank.

Only torch.distributed collectives appear here (``all_to_all_single``, ``all_gather``,
``all_reduce``, ``broadcast``, ``barrier``), so the same code runs on gloo (CPU) and on
NCCL (GPU tensors). A peer that crashed or timed out surfaces as a
:class:`~recembed.errors.DistributedError` naming this rank and the step, instead of
the backend's bare message.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist

from recembed.errors import DistributedError

__all__ = ["Comm"]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first[:400]


class Comm:
    """A process group and this process's place in it.

    Args:
        group: a ``torch.distributed`` process group, or None for the default (world) group.

    Raises:
        DistributedError: ``torch.distributed`` has not been initialised.
    """

    def __init__(self, group: dist.ProcessGroup | None = None) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise DistributedError(
                "torch.distributed is not initialised; start the ranks with recembed.distributed.launch(...) "
                "or torchrun and call recembed.distributed.init_from_env() first"
            )
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.backend = str(dist.get_backend(group))
        # NCCL moves CUDA tensors only; gloo takes CPU tensors (and CUDA ones, through the host).
        self.device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" \
            else torch.device("cpu")

    def global_rank(self, group_rank: int) -> int:
        """The world rank of ``group_rank`` in this group (what ``broadcast(src=...)`` takes)."""
        return group_rank if self.group is None else dist.get_global_rank(self.group, group_rank)

    def _fail(self, what: str, exc: BaseException) -> DistributedError:
        return DistributedError(
            f"rank {self.rank} of {self.world_size}: collective '{what}' failed; another rank stopped, crashed or timed out "
            f"(see that rank's error): {_reason(exc)}"
        )

    def all_to_all(self, send: torch.Tensor, send_splits: Sequence[int], recv_splits: Sequence[int],
                   what: str) -> torch.Tensor:
        """Send ``send[sum(send_splits[:d]) : ...]`` to rank d; returns the pieces received, by source rank.

        Shapes: ``send`` (sum(send_splits),) -> (sum(recv_splits),), same dtype, on :attr:`device`.
        """
        send = send.to(self.device).contiguous()
        out = send.new_empty(int(sum(recv_splits)))
        try:
            dist.all_to_all_single(out, send, list(map(int, recv_splits)), list(map(int, send_splits)),
                                   group=self.group)
        except RuntimeError as exc:
            raise self._fail(what, exc) from exc
        return out

    def exchange_counts(self, counts: torch.Tensor, what: str) -> torch.Tensor:
        """Row d of ``counts`` (world, k) goes to rank d; returns (world, k): row s came from rank s."""
        flat = counts.reshape(-1)
        k = counts.shape[1]
        splits = [k] * self.world_size
        return self.all_to_all(flat, splits, splits, what).view(self.world_size, k)

    def all_gather(self, tensor: torch.Tensor, what: str) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (all the same shape), by rank, on :attr:`device`."""
        tensor = tensor.to(self.device).contiguous()
        out = [torch.empty_like(tensor) for _ in range(self.world_size)]
        try:
            dist.all_gather(out, tensor, group=self.group)
        except RuntimeError as exc:
            raise self._fail(what, exc) from exc
        return out

    def all_reduce_(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """Sum ``tensor`` over ranks, in place."""
        work = self._staged(tensor)
        try:
            dist.all_reduce(work, group=self.group)
        except RuntimeError as exc:
            raise self._fail(what, exc) from exc
        return self._unstage(work, tensor)

    def broadcast_(self, tensor: torch.Tensor, src: int, what: str) -> torch.Tensor:
        """Overwrite ``tensor`` with group rank ``src``'s copy, in place."""
        work = self._staged(tensor)
        try:
            dist.broadcast(work, src=self.global_rank(src), group=self.group)
        except RuntimeError as exc:
            raise self._fail(what, exc) from exc
        return self._unstage(work, tensor)

    def _staged(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` itself if the backend can write into it, else a contiguous copy on :attr:`device`."""
        if tensor.device == self.device and tensor.is_contiguous():
            return tensor
        return tensor.to(self.device).contiguous()

    @staticmethod
    def _unstage(work: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
        if work is not tensor:
            tensor.copy_(work)
        return tensor

    def barrier(self, what: str) -> None:
        try:
            dist.barrier(group=self.group)
        except RuntimeError as exc:
            raise self._fail(what, exc) from exc
