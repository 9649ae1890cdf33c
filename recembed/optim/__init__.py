"""Fused sparse optimizers: update rules, per-table state, and the Optimizer face for schedulers."""

from recembed.optim.fused_optimizer import FusedOptimizer
from recembed.optim.rules import OPTIMIZER_CODES, STATE_LAYOUT
from recembed.optim.state import TableOptimizerState

__all__ = ["FusedOptimizer", "OPTIMIZER_CODES", "STATE_LAYOUT", "TableOptimizerState"]
