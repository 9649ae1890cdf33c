"""A ``torch.optim.Optimizer`` face for fused tables, so LR schedulers drive their learning rates.

The update itself happens inside ``loss.backward()``; ``step()`` and ``zero_grad()`` do
nothing. Each table is one param group whose ``"lr"`` reads and writes the table's
``lr`` buffer, the single place the kernels read it from (and which ``state_dict`` saves).

Example:
    >>> opt = collection.fused_optimizer()                       # doctest: +SKIP
    >>> sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

__all__ = ["FusedOptimizer"]


class _LiveParamGroup(dict):
    """A param group whose ``"lr"`` entry is the table's ``lr`` buffer."""

    def __init__(self, state: nn.Module, **entries):
        super().__init__(**entries)
        self._state = state

    def __getitem__(self, key):
        if key == "lr":
            return float(self._state.lr)
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key == "lr" else super().get(key, default)

    def __setitem__(self, key, value):
        if key == "lr":
            self._state.lr.fill_(float(value))
            return
        super().__setitem__(key, value)


class FusedOptimizer(torch.optim.Optimizer):
    """One param group per fused table (``group["table"]`` names it)."""

    def __init__(self, weights: Mapping[str, torch.Tensor], states: Mapping[str, nn.Module]) -> None:
        groups = [
            _LiveParamGroup(states[name], params=[weight], table=name, optimizer=states[name].optimizer.name)
            for name, weight in weights.items()
        ]
        super().__init__(groups, defaults={})

    def step(self, closure=None):  # noqa: D102 - the update already happened in backward
        return closure() if closure is not None else None

    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: D102 - fused tables have no grads
        return None
