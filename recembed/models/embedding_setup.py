"""How models hand their tables to a fused optimizer, and which parameters stay dense.

Every model takes ``embedding_optimizer`` (default ``ROWWISE_ADAGRAD``) and
``embedding_lr``. With an optimizer set, its tables are updated by the collection inside
``loss.backward()`` and their weights have ``requires_grad=False``; a torch optimizer
built over :func:`dense_parameters` then trains only the dense part (MLPs, cross layers).
With ``embedding_optimizer=None`` the tables are plain autograd Parameters and the torch
optimizer trains them too.

Example:
    >>> model = DLRM(4, tables, embedding_optimizer=None)
    >>> opt = torch.optim.Adam(dense_parameters(model), lr=1e-3)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from torch import nn

from recembed.errors import ConfigError
from recembed.tables import EmbeddingBagConfig, OptimizerType

__all__ = ["DEFAULT_EMBEDDING_LR", "resolve_embedding_optimizer", "with_embedding_optimizer", "dense_parameters"]

#: Default step size of the fused optimizer. Row-wise Adagrad divides by the root of the
#: accumulated squared gradient, so it tolerates a larger step than plain SGD would.
DEFAULT_EMBEDDING_LR = 0.05


def resolve_embedding_optimizer(value: OptimizerType | str | None, owner: str) -> OptimizerType | None:
    """``OptimizerType`` from an enum, its name or value (any case), or ``None``."""
    if value is None or isinstance(value, OptimizerType):
        return value
    if isinstance(value, str):
        for member in OptimizerType:
            if value.lower() in (member.value, member.name.lower()):
                return member
    allowed = ", ".join(m.name for m in OptimizerType)
    raise ConfigError(f"{owner}: embedding_optimizer={value!r} is not one of {allowed} or None")


def with_embedding_optimizer(
    tables: Sequence[EmbeddingBagConfig],
    optimizer: OptimizerType | str | None,
    lr: float,
    owner: str,
    weight_decay: float | None = None,
) -> list[EmbeddingBagConfig]:
    """Copies of ``tables`` that use the model's fused optimizer.

    A table gets ``optimizer`` and ``lr`` (and ``weight_decay`` when given) if its own
    ``optimizer`` is None and it is trainable (``enable_grad=True``). Tables that name
    their own optimizer keep it, and frozen tables stay frozen. With ``optimizer=None``
    the configs are returned unchanged (as copies). The caller's configs are never modified.

    Raises:
        ConfigError: a table uses a plain-autograd-only option (``sparse``, ``max_norm``,
            ``scale_grad_by_freq``) that a fused optimizer cannot honour, or a bad value.
    """
    if isinstance(tables, EmbeddingBagConfig) or not isinstance(tables, (list, tuple)):
        raise ConfigError(f"{owner}: tables must be a list of EmbeddingBagConfig, got {type(tables).__name__}")
    for cfg in tables:
        if not isinstance(cfg, EmbeddingBagConfig):
            raise ConfigError(f"{owner}: tables must be EmbeddingBagConfig entries, got {type(cfg).__name__}")
    chosen = resolve_embedding_optimizer(optimizer, owner)
    if chosen is None:
        return [replace(cfg) for cfg in tables]
    out = []
    for cfg in tables:
        if cfg.optimizer is not None or not cfg.enable_grad:
            out.append(replace(cfg))
            continue
        fields: dict = {"optimizer": chosen, "lr": lr}
        if weight_decay is not None:
            fields["weight_decay"] = weight_decay
        try:
            out.append(replace(cfg, **fields))
        except ConfigError as exc:
            raise ConfigError(
                f"{owner}: {exc}; pass embedding_optimizer=None to train this table with plain autograd"
            ) from exc
    return out


def dense_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters a torch optimizer should train: all with ``requires_grad=True``.

    Tables under a fused optimizer (updated inside backward) and frozen tables are left
    out. The list may be empty (e.g. a ``DotProduct`` whose tables are all fused); check
    before building a torch optimizer, which rejects an empty list.

    Example:
        >>> params = dense_parameters(model)
        >>> opt = torch.optim.Adam(params, lr=1e-3) if params else None
    """
    return [p for p in model.parameters() if p.requires_grad]
