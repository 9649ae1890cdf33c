"""Single-table layers with ``torch.nn.Embedding`` / ``nn.EmbeddingBag`` signatures.

They give PyTorch's outputs and gradients (same arguments, same defaults), plus id
checks with clear errors and the recembed table options (``hash_size``, ``dtype``,
initialisers). Collections hold one of these per table, built from its config.

Example:
    >>> bag = EmbeddingBag(100, 8, mode="sum")
    >>> bag(torch.tensor([[1, 2], [3, 4]])).shape
    torch.Size([2, 8])
"""

from __future__ import annotations

import torch
from torch import nn

from recembed.errors import ConfigError, JaggedStructureError, ShapeMismatchError
from recembed.kernels.lookup import pooled_lookup, sequence_lookup
from recembed.tables.config import BaseEmbeddingConfig, EmbeddingBagConfig, EmbeddingConfig, PoolingType
from recembed.tables.ids import ids_to_rows
from recembed.tables.init import initialise_weight

__all__ = ["ConfiguredTable", "Embedding", "EmbeddingBag"]


class ConfiguredTable(nn.Module):
    """A module standing in for one table: the attributes collections and models read.

    Plain, compressed and dynamic tables all derive from it and set ``self.config``.
    """

    config: BaseEmbeddingConfig

    @property
    def num_embeddings(self) -> int:
        return self.config.num_embeddings

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    @property
    def padding_idx(self) -> int | None:
        return self.config.padding_idx


class _TableModule(ConfiguredTable):
    """Owns one table's ``weight`` Parameter, built from a validated config."""

    def _build_weight(self, config: BaseEmbeddingConfig, device: torch.device | str | None) -> None:
        self.config = config
        weight = torch.empty(config.num_embeddings, config.embedding_dim, dtype=config.torch_dtype, device=device)
        initialise_weight(weight, config)
        # Fused-optimizer tables are updated inside backward, so autograd never tracks them.
        self.weight = nn.Parameter(weight, requires_grad=config.enable_grad and config.optimizer is None)

    # The remaining nn.Embedding attributes, read from the config, so code that inspects them works.
    @property
    def max_norm(self) -> float | None:
        return self.config.max_norm

    @property
    def norm_type(self) -> float:
        return self.config.norm_type

    @property
    def scale_grad_by_freq(self) -> bool:
        return self.config.scale_grad_by_freq

    @property
    def sparse(self) -> bool:
        return self.config.sparse

    def extra_repr(self) -> str:
        c = self.config
        parts = [f"{c.num_embeddings}, {c.embedding_dim}", f"name={c.name!r}"]
        if c.padding_idx is not None:
            parts.append(f"padding_idx={c.padding_idx}")
        if c.optimizer is not None:
            parts.append(f"optimizer={c.optimizer.name}")
        if c.hash_size is not None:
            parts.append(f"hash_size={c.hash_size}")
        return ", ".join(parts)



def _config_from_torch_args(
    config_cls: type,
    default_name: str,
    weight: torch.Tensor | None,
    freeze: bool,
    dtype: torch.dtype | str | None,
    config_fields: dict,
    **torch_args,
) -> EmbeddingConfig | EmbeddingBagConfig:
    """The table config for torch-style constructor arguments plus recembed config fields.

    ``_weight`` becomes the init, ``_freeze`` turns gradients off, and ``name``, ``init``,
    ``enable_grad`` and ``dtype`` in ``config_fields`` fill what the torch arguments leave open.
    """
    init = weight if weight is not None else config_fields.pop("init", "normal")
    enable_grad = config_fields.pop("enable_grad", True) and not freeze
    return config_cls(
        name=config_fields.pop("name", default_name),
        init=init,
        enable_grad=enable_grad,
        dtype=dtype or config_fields.pop("dtype", torch.float32),
        **torch_args,
        **config_fields,
    )

class Embedding(_TableModule):
    """One vector per id; ``nn.Embedding``'s constructor and forward, input of any shape.

    Args mirror ``nn.Embedding``; keyword-only extras are ``EmbeddingConfig`` fields
    (``init`` defaults to ``"normal"`` as in PyTorch).
    Shapes: ``input`` (*) integer -> output (*, embedding_dim).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: torch.Tensor | None = None,
        _freeze: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        *,
        config: EmbeddingConfig | None = None,
        **config_fields,
    ) -> None:
        super().__init__()
        if config is None:
            config = _config_from_torch_args(
                EmbeddingConfig, "embedding", _weight, _freeze, dtype, config_fields,
                num_embeddings=num_embeddings, embedding_dim=embedding_dim, padding_idx=padding_idx,
                max_norm=max_norm, norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse,
            )
        self._build_weight(config, device)

    @classmethod
    def from_pretrained(
        cls,
        embeddings: torch.Tensor,
        freeze: bool = True,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
    ) -> "Embedding":
        """A table holding a copy of ``embeddings`` (num_embeddings, dim); frozen unless ``freeze=False``."""
        if embeddings.dim() != 2:
            raise ShapeMismatchError(f"pretrained embeddings must be 2-D, got shape {tuple(embeddings.shape)}")
        return cls(
            *embeddings.shape, padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, _weight=embeddings, _freeze=freeze,
            dtype=embeddings.dtype,
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        c = self.config
        rows = ids_to_rows(input, c)
        return sequence_lookup(self.weight, rows, c.padding_idx, c.max_norm, c.norm_type, c.scale_grad_by_freq, c.sparse)


class EmbeddingBag(_TableModule):
    """One vector per bag of ids; ``nn.EmbeddingBag``'s constructor and forward.

    Shapes: ``input`` (B, L) with ``offsets=None`` (fixed-size bags), or ``input`` (N,)
    with ``offsets`` (B,) — (B + 1,) when ``include_last_offset`` — -> output (B, dim).
    ``per_sample_weights`` has ``input``'s shape (``mode="sum"`` in PyTorch; recembed
    also allows ``"mean"``).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "mean",
        sparse: bool = False,
        _weight: torch.Tensor | None = None,
        include_last_offset: bool = False,
        padding_idx: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        *,
        _freeze: bool = False,
        config: EmbeddingBagConfig | None = None,
        **config_fields,
    ) -> None:
        super().__init__()
        if config is None:
            config = _config_from_torch_args(
                EmbeddingBagConfig, "embedding_bag", _weight, _freeze, dtype, config_fields,
                num_embeddings=num_embeddings, embedding_dim=embedding_dim, padding_idx=padding_idx,
                max_norm=max_norm, norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse,
                pooling=mode,
            )
        self.include_last_offset = include_last_offset
        self._build_weight(config, device)

    @property
    def mode(self) -> str:
        return self.config.pooling.value  # type: ignore[union-attr]

    @classmethod
    def from_pretrained(
        cls,
        embeddings: torch.Tensor,
        freeze: bool = True,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "mean",
        sparse: bool = False,
        include_last_offset: bool = False,
        padding_idx: int | None = None,
    ) -> "EmbeddingBag":
        """A pooled table holding a copy of ``embeddings`` (num_embeddings, dim)."""
        if embeddings.dim() != 2:
            raise ShapeMismatchError(f"pretrained embeddings must be 2-D, got shape {tuple(embeddings.shape)}")
        return cls(
            *embeddings.shape, max_norm=max_norm, norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq,
            mode=mode, sparse=sparse, _weight=embeddings, include_last_offset=include_last_offset,
            padding_idx=padding_idx, _freeze=freeze, dtype=embeddings.dtype,
        )

    def forward(
        self,
        input: torch.Tensor,
        offsets: torch.Tensor | None = None,
        per_sample_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ids, full_offsets, weights = _bags_from_torch_args(input, offsets, per_sample_weights, self.include_last_offset)
        return self.lookup(ids, full_offsets, weights)

    def lookup(self, ids: torch.Tensor, offsets: torch.Tensor, per_sample_weights: torch.Tensor | None = None,
               feature: str | None = None) -> torch.Tensor:
        """Pool bags given flat ``ids`` (N,) and ``offsets`` (B + 1,); returns (B, dim)."""
        c = self.config
        if per_sample_weights is not None and c.pooling is PoolingType.MAX:
            raise ConfigError(f"table '{c.name}': per-sample weights need SUM or MEAN pooling, not MAX")
        rows = ids_to_rows(ids, c, feature)
        return pooled_lookup(
            self.weight, rows, offsets, per_sample_weights, c.pooling.value,  # type: ignore[union-attr]
            c.padding_idx, c.max_norm, c.norm_type, c.scale_grad_by_freq, c.sparse,
        )


def _bags_from_torch_args(
    input: torch.Tensor, offsets: torch.Tensor | None, weights: torch.Tensor | None, include_last_offset: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Normalise ``nn.EmbeddingBag``'s input forms to flat ids and (B + 1,) offsets."""
    if input.dim() == 2:
        if offsets is not None:
            raise JaggedStructureError("offsets must be None when input is 2-D (each row is one bag)")
        batch, length = input.shape
        full = torch.arange(0, batch * length + 1, max(length, 1), dtype=torch.int64, device=input.device)
        if length == 0:
            full = torch.zeros(batch + 1, dtype=torch.int64, device=input.device)
        flat_w = None if weights is None else _check_weights(weights, input).reshape(-1)
        return input.reshape(-1), full, flat_w
    if input.dim() != 1:
        raise JaggedStructureError(f"input must be 1-D (with offsets) or 2-D, got shape {tuple(input.shape)}")
    if offsets is None:
        raise JaggedStructureError("offsets are required when input is 1-D")
    if offsets.dim() != 1:
        raise JaggedStructureError(f"offsets must be 1-D, got shape {tuple(offsets.shape)}")
    offsets = offsets.to(torch.int64)
    n = input.numel()
    if include_last_offset:
        if offsets.numel() == 0:
            raise JaggedStructureError("include_last_offset=True needs at least one offset")
        full = offsets
        if int(full[-1]) != n:
            raise JaggedStructureError(f"with include_last_offset the last offset must equal len(input)={n}, got {int(full[-1])}")
    else:
        full = torch.cat([offsets, offsets.new_tensor([n])])
    if full.numel() and int(full[0]) != 0:
        raise JaggedStructureError(f"offsets must start at 0, got {int(full[0])}")
    if full.numel() > 1 and bool((full[1:] < full[:-1]).any()):
        raise JaggedStructureError(f"offsets must be non-decreasing and at most len(input)={n}: {offsets.tolist()}")
    if weights is not None:
        weights = _check_weights(weights, input)
    return input, full, weights


def _check_weights(weights: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    if weights.shape != input.shape:
        raise JaggedStructureError(
            f"per_sample_weights has shape {tuple(weights.shape)}, expected the ids' shape {tuple(input.shape)}"
        )
    return weights
