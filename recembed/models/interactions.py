"""Feature interactions: DLRM's pairwise dot products, the FM second-order term, DCN cross layers.

Shapes use B for the batch, F for the number of sparse features and d / k for vector widths.
"""

from __future__ import annotations

import torch
from torch import nn

from recembed.errors import ConfigError, ShapeMismatchError

__all__ = ["pairwise_dot_interaction", "num_pairwise_interactions", "fm_second_order", "CrossNetwork"]


def num_pairwise_interactions(num_vectors: int) -> int:
    """Pairs ``i < j`` among ``num_vectors`` vectors: ``n (n - 1) / 2``."""
    return num_vectors * (num_vectors - 1) // 2


def pairwise_dot_interaction(dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
    """DLRM's interaction: dot products of every pair among the dense vector and the F embeddings.

    The vectors ``z_0 = dense, z_1..z_F = sparse[:, f]`` are stacked, their Gram matrix
    ``Z Z^T`` is formed, and its strictly upper triangle is read row by row: pairs
    (0,1), (0,2), ..., (0,F), (1,2), ... The diagonal (squared norms) is left out, as in the
    DLRM paper's default.

    Args:
        dense: ``(B, d)`` output of the bottom MLP.
        sparse: ``(B, F, d)`` pooled embeddings.
    Returns:
        ``(B, (F + 1) F / 2)`` pairwise dot products.

    Example:
        >>> pairwise_dot_interaction(torch.ones(2, 3), torch.ones(2, 2, 3)).tolist()
        [[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]]
    """
    if dense.dim() != 2 or sparse.dim() != 3:
        raise ShapeMismatchError(
            f"pairwise_dot_interaction takes dense (B, d) and sparse (B, F, d), got "
            f"{tuple(dense.shape)} and {tuple(sparse.shape)}"
        )
    if sparse.shape[0] != dense.shape[0] or sparse.shape[2] != dense.shape[1]:
        raise ShapeMismatchError(
            f"pairwise_dot_interaction: dense {tuple(dense.shape)} and sparse {tuple(sparse.shape)} "
            "must agree on the batch and the vector width d"
        )
    stacked = torch.cat([dense.unsqueeze(1), sparse], dim=1)  # (B, F + 1, d)
    gram = torch.bmm(stacked, stacked.transpose(1, 2))  # (B, F + 1, F + 1)
    n = stacked.shape[1]
    rows, cols = torch.triu_indices(n, n, offset=1, device=gram.device)
    return gram[:, rows, cols]


def fm_second_order(fields: torch.Tensor) -> torch.Tensor:
    """Factorization-machine pairwise term ``sum_{i<j} <v_i, v_j>`` for each sample.

    Computed in O(F k) as ``((sum_i v_i)^2 - sum_i v_i^2) / 2`` summed over the k
    components (Rendle 2010), instead of looping over the F (F - 1) / 2 pairs.

    Args:
        fields: ``(B, F, k)`` one vector per field (feature values already folded in).
    Returns:
        ``(B,)`` second-order scores.

    Example:
        >>> fm_second_order(torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])).tolist()
        [11.0]
    """
    if fields.dim() != 3:
        raise ShapeMismatchError(f"fm_second_order takes fields (B, F, k), got shape {tuple(fields.shape)}")
    total = fields.sum(dim=1)
    return 0.5 * (total.pow(2) - fields.pow(2).sum(dim=1)).sum(dim=1)


class CrossNetwork(nn.Module):
    """DCN-v2 cross network: ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` for ``num_layers`` layers.

    With ``low_rank=r`` each ``W_l`` is the product ``U_l V_l^T`` of two ``(D, r)``
    matrices (Wang et al., DCN-V2, 2021), costing ``2 D r`` weights instead of ``D^2``.
    ``*`` is the element-wise product, so every layer raises the polynomial degree of the
    feature crosses by one while the residual ``+ x_l`` keeps the lower degrees.

    Shapes: ``(B, D) -> (B, D)``.

    Example:
        >>> cross = CrossNetwork(23, num_layers=3, low_rank=4)
        >>> cross(torch.randn(5, 23)).shape
        torch.Size([5, 23])
    """

    def __init__(self, in_features: int, num_layers: int = 3, low_rank: int | None = None) -> None:
        super().__init__()
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ConfigError(f"CrossNetwork: in_features must be an int >= 1, got {in_features!r}")
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 0:
            raise ConfigError(f"CrossNetwork: num_cross_layers must be an int >= 0, got {num_layers!r}")
        if low_rank is not None and (isinstance(low_rank, bool) or not isinstance(low_rank, int) or low_rank < 1):
            raise ConfigError(f"CrossNetwork: low_rank must be None or an int >= 1, got {low_rank!r}")
        self.in_features = in_features
        self.low_rank = low_rank
        if low_rank is None:
            self.kernels = nn.ModuleList(nn.Linear(in_features, in_features) for _ in range(num_layers))
        else:
            # W x + b = U (V^T x) + b: V^T projects down to r dims (no bias), U back up (with b).
            self.kernels = nn.ModuleList(
                nn.Sequential(nn.Linear(in_features, low_rank, bias=False), nn.Linear(low_rank, in_features))
                for _ in range(num_layers)
            )
        for kernel in self.kernels:
            for module in kernel.modules():
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def num_layers(self) -> int:
        return len(self.kernels)

    def layer_weight(self, layer: int) -> torch.Tensor:
        """The ``(D, D)`` matrix ``W_l`` of one layer (``U V^T`` when low-rank)."""
        kernel = self.kernels[layer]
        if self.low_rank is None:
            return kernel.weight
        return kernel[1].weight @ kernel[0].weight

    def layer_bias(self, layer: int) -> torch.Tensor:
        """The ``(D,)`` bias ``b_l`` of one layer."""
        kernel = self.kernels[layer]
        return kernel.bias if self.low_rank is None else kernel[1].bias

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        if x0.dim() != 2 or x0.shape[1] != self.in_features:
            raise ShapeMismatchError(
                f"CrossNetwork: input has shape {tuple(x0.shape)}, expected (batch, {self.in_features})"
            )
        x = x0
        for kernel in self.kernels:
            x = x0 * kernel(x) + x
        return x
