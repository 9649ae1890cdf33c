"""Per-table fused-optimizer state, kept as module buffers so it lives in ``state_dict``.

For a table ``t`` the keys are ``<collection>.fused.state.t.<name>``: the optimizer's
state tensors (:data:`recembed.optim.rules.STATE_LAYOUT`), ``step`` (backward passes
applied) and ``lr`` (the current learning rate, which schedulers change).
"""

from __future__ import annotations

import torch
from torch import nn

from recembed.optim.rules import OPTIMIZER_CODES, STATE_LAYOUT, hyper_row
from recembed.tables.config import BaseEmbeddingConfig, OptimizerType

__all__ = ["TableOptimizerState"]


class TableOptimizerState(nn.Module):
    """State of one table's fused optimizer.

    Buffers: elementwise state ``(rows, dim)`` float32, per-row state ``(rows,)`` float32,
    ``step`` int64 scalar, ``lr`` float64 scalar.
    """

    def __init__(self, config: BaseEmbeddingConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        optimizer = config.optimizer
        if not isinstance(optimizer, OptimizerType):
            raise TypeError(f"table '{config.name}' has no fused optimizer")
        self.optimizer = optimizer
        self.code = OPTIMIZER_CODES[optimizer]
        self.weight_decay = config.weight_decay
        self.eps = config.eps
        self.betas = config.betas
        elem_names, row_names = STATE_LAYOUT[optimizer]
        self.elem_names = elem_names
        self.row_names = row_names
        rows, dim = config.num_embeddings, config.embedding_dim
        for name in elem_names:
            self.register_buffer(name, torch.zeros(rows, dim, dtype=torch.float32, device=device))
        for name in row_names:
            self.register_buffer("row_" + name, torch.zeros(rows, dtype=torch.float32, device=device))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64, device=device))
        self.register_buffer("lr", torch.tensor(config.lr, dtype=torch.float64, device=device))

    def elem_state(self) -> list[torch.Tensor]:
        return [getattr(self, n) for n in self.elem_names]

    def row_state(self) -> list[torch.Tensor]:
        return [getattr(self, "row_" + n) for n in self.row_names]

    def buffer_names(self) -> list[str]:
        return list(self.elem_names) + ["row_" + n for n in self.row_names]

    def advance(self) -> list[float]:
        """Count one more update and return this step's hyper-parameter row."""
        self.step += 1
        return hyper_row(float(self.lr), self.weight_decay, self.eps, self.betas, int(self.step))

    def extra_repr(self) -> str:
        return f"{self.optimizer.name}, lr={float(self.lr):g}, step={int(self.step)}"
