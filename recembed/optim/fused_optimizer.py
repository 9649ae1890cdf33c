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

    @classmethod
    def combine(cls, optimizers: "list[FusedOptimizer | None]") -> "FusedOptimizer | None":
        """One optimizer face over several (e.g. a collection's group and its compressed tables')."""
        present = [o for o in optimizers if o is not None]
        if not present:
            return None
        if len(present) == 1:
            return present[0]
        weights, states = {}, {}
        for optimizer in present:
            for group in optimizer.param_groups:
                name = group["table"]
                if name in weights:  # sub-tables of different tables may share a name
                    name = f"{name}#{len(weights)}"
                weights[name] = group["params"][0]
                states[name] = group._state
        return cls(weights, states)

    def step(self, closure=None):  # noqa: D102 - the update already happened in backward
        return closure() if closure is not None else None

    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: D102 - fused tables have no grads
        return None
