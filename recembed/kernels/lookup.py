"""The lookup seam: a table's rows, a flat id list and bag offsets in, vectors out.

Every module that reads a table (single tables, collections, compressed and sharded
tables) goes through these two functions, so a faster kernel or a remote table can
replace them without touching the sparse types or the modules above. This is the
plain-autograd path, built on ``torch.nn.functional`` so its outputs and gradients are
PyTorch's own, on any device. The fused path lives in :mod:`recembed.kernels.fused_cpu`
(numba) and :mod:`recembed.kernels.fused_torch`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["pooled_lookup", "sequence_lookup"]


def pooled_lookup(
    weight: torch.Tensor,
    ids: torch.Tensor,
    offsets: torch.Tensor,
    per_sample_weights: torch.Tensor | None = None,
    pooling: str = "sum",
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> torch.Tensor:
    """Pool the rows of each bag.

    Args:
        weight: ``(num_embeddings, D)`` table.
        ids: ``(N,)`` integer row ids, already validated.
        offsets: ``(B + 1,)`` int64 bag boundaries, ``offsets[0] == 0``, ``offsets[-1] == N``.
        per_sample_weights: ``(N,)`` weights, for ``"sum"`` and ``"mean"`` pooling.
        pooling: ``"sum"``, ``"mean"`` or ``"max"`` (``PoolingType`` values). Weighted
            mean is ``sum(w_i * e_i) / n`` with ``n`` the bag's non-padding id count.
        padding_idx: row left out of bags (and of the mean's count).
        max_norm, norm_type, scale_grad_by_freq, sparse: as ``nn.EmbeddingBag``.
    Returns:
        ``(B, D)`` tensor in ``weight.dtype``; empty bags give zeros.
    """
    mode = str(getattr(pooling, "value", pooling))
    weighted_mean = per_sample_weights is not None and mode == "mean"
    out = F.embedding_bag(
        ids,
        weight,
        offsets,
        max_norm=max_norm,
        norm_type=norm_type,
        scale_grad_by_freq=scale_grad_by_freq,
        mode="sum" if weighted_mean else mode,
        sparse=sparse,
        per_sample_weights=None if per_sample_weights is None else per_sample_weights.to(weight.dtype),
        include_last_offset=True,
        padding_idx=padding_idx,
    )
    if weighted_mean:
        counts = bag_counts(ids, offsets, padding_idx)
        out = out / counts.clamp(min=1).to(out.dtype).unsqueeze(1)
    return out


def bag_counts(ids: torch.Tensor, offsets: torch.Tensor, padding_idx: int | None) -> torch.Tensor:
    """Number of ids per bag, padding ids left out. ``offsets`` is ``(B + 1,)``; returns ``(B,)``."""
    lengths = offsets[1:] - offsets[:-1]
    if padding_idx is None:
        return lengths
    is_pad = (ids == padding_idx).to(torch.int64)
    pad_cumsum = torch.cat([is_pad.new_zeros(1), is_pad.cumsum(0)])
    return lengths - (pad_cumsum[offsets[1:]] - pad_cumsum[offsets[:-1]])


def sequence_lookup(
    weight: torch.Tensor,
    ids: torch.Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> torch.Tensor:
    """One vector per id: ``(N,)`` ids -> ``(N, D)``, as ``nn.Embedding``."""
    return F.embedding(ids, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)
