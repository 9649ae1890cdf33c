"""The fused sparse optimizers' update rules, one place for their maths and codes.

Each rule updates only the rows a batch touched, once per unique row, with ``g`` the
row's summed gradient over the batch (duplicates aggregated). Weight decay is L2
(``g += weight_decay * w``) except for LAMB, where it is decoupled as in the paper.

| optimizer        | state                         | update                                                        |
|------------------|-------------------------------|---------------------------------------------------------------|
| SGD              | -                             | w -= lr * g                                                   |
| ADAGRAD          | s (elementwise)               | s += g^2;  w -= lr * g / (sqrt(s) + eps)        (torch Adagrad)|
| ROWWISE_ADAGRAD  | s (one per row)               | s += mean(g^2); w -= lr * g / (sqrt(s) + eps)   (FBGEMM)       |
| ADAM             | m, v (elementwise), step      | m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;                    |
|                  |                               | w -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps) (torch SparseAdam) |
| ROWWISE_ADAM     | m (elementwise), v (per row)  | as ADAM with v += mean over the row of g^2, and m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) |
| LAMB             | m, v (elementwise), step      | u = m_hat / (sqrt(v_hat) + eps) + wd * w;  w -= lr * (|w| / |u|) * u |

``step`` is a per-table counter incremented once per backward pass, as torch's
optimizers count ``step()`` calls. The CPU kernels (numba) and the torch-native kernels
implement exactly these formulas; tests compare both to references.
"""

from __future__ import annotations

import torch

from recembed.tables.config import OptimizerType

__all__ = ["OPTIMIZER_CODES", "STATE_LAYOUT", "HYPER_FIELDS", "hyper_row", "update_rows_torch"]

#: Integer codes the kernels branch on.
OPTIMIZER_CODES = {
    OptimizerType.SGD: 0,
    OptimizerType.ADAGRAD: 1,
    OptimizerType.ROWWISE_ADAGRAD: 2,
    OptimizerType.ADAM: 3,
    OptimizerType.ROWWISE_ADAM: 4,
    OptimizerType.LAMB: 5,
}

#: Which state each optimizer keeps: (elementwise state names, per-row state names).
STATE_LAYOUT: dict[OptimizerType, tuple[tuple[str, ...], tuple[str, ...]]] = {
    OptimizerType.SGD: ((), ()),
    OptimizerType.ADAGRAD: (("sum",), ()),
    OptimizerType.ROWWISE_ADAGRAD: ((), ("sum",)),
    OptimizerType.ADAM: (("exp_avg", "exp_avg_sq"), ()),
    OptimizerType.ROWWISE_ADAM: (("exp_avg",), ("exp_avg_sq",)),
    OptimizerType.LAMB: (("exp_avg", "exp_avg_sq"), ()),
}

#: Column order of the per-table hyper-parameter rows handed to the kernels.
HYPER_FIELDS = ("lr", "weight_decay", "eps", "beta1", "beta2", "bias_correction1", "bias_correction2")


def hyper_row(lr: float, weight_decay: float, eps: float, betas: tuple[float, float], step: int) -> list[float]:
    """Hyper-parameters for one table at ``step`` (>= 1), in :data:`HYPER_FIELDS` order."""
    b1, b2 = betas
    return [lr, weight_decay, eps, b1, b2, 1.0 - b1**step, 1.0 - b2**step]


def update_rows_torch(
    code: int,
    w: torch.Tensor,
    g: torch.Tensor,
    elem_state: list[torch.Tensor],
    row_state: list[torch.Tensor],
    hyper: list[float],
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Apply one rule to gathered rows, in float32; the torch-native twin of the CPU kernel.

    Args:
        code: :data:`OPTIMIZER_CODES` value.
        w: ``(U, D)`` float32 rows; g: ``(U, D)`` their summed gradients.
        elem_state: ``(U, D)`` state rows (per :data:`STATE_LAYOUT`); row_state: ``(U,)`` rows.
        hyper: :func:`hyper_row` output.
    Returns:
        new rows, new elementwise state, new per-row state (all float32).
    """
    lr, wd, eps, b1, b2, bc1, bc2 = hyper
    if wd != 0.0 and code != 5:
        g = g + wd * w
    if code == 0:
        return w - lr * g, elem_state, row_state
    if code == 1:
        s = elem_state[0] + g * g
        return w - lr * g / (s.sqrt() + eps), [s], row_state
    if code == 2:
        s = row_state[0] + (g * g).mean(dim=1)
        return w - lr * g / (s.sqrt() + eps).unsqueeze(1), elem_state, [s]
    if code == 3:
        m = b1 * elem_state[0] + (1 - b1) * g
        v = b2 * elem_state[1] + (1 - b2) * g * g
        step_size = lr * (bc2**0.5) / bc1
        return w - step_size * m / (v.sqrt() + eps), [m, v], row_state
    if code == 4:
        m = b1 * elem_state[0] + (1 - b1) * g
        v = b2 * row_state[0] + (1 - b2) * (g * g).mean(dim=1)
        denom = (v / bc2).sqrt() + eps
        return w - lr * (m / bc1) / denom.unsqueeze(1), [m], [v]
    if code == 5:
        m = b1 * elem_state[0] + (1 - b1) * g
        v = b2 * elem_state[1] + (1 - b2) * g * g
        u = (m / bc1) / ((v / bc2).sqrt() + eps) + wd * w
        w_norm = w.norm(dim=1)
        u_norm = u.norm(dim=1)
        trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm.clamp(min=1e-30), torch.ones_like(w_norm))
        return w - lr * trust.unsqueeze(1) * u, [m, v], row_state
    raise ValueError(f"unknown optimizer code {code}")
