"""A multi-layer perceptron: the dense building block of every model here."""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
from torch import nn

from recembed.errors import ConfigError

__all__ = ["MLP", "ACTIVATIONS", "make_activation"]

#: Activation names accepted by :class:`MLP`.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "identity": nn.Identity,
}

ActivationSpec = Union[str, Callable[[], nn.Module], None]


def make_activation(spec: ActivationSpec, owner: str = "MLP") -> nn.Module:
    """An activation module from a name in :data:`ACTIVATIONS`, a module factory, or None (identity)."""
    if spec is None:
        return nn.Identity()
    if isinstance(spec, str):
        if spec.lower() not in ACTIVATIONS:
            raise ConfigError(f"{owner}: activation {spec!r} is not one of {sorted(ACTIVATIONS)}")
        return ACTIVATIONS[spec.lower()]()
    if callable(spec):
        module = spec()
        if not isinstance(module, nn.Module):
            raise ConfigError(f"{owner}: activation factory must return an nn.Module, got {type(module).__name__}")
        return module
    raise ConfigError(f"{owner}: activation must be a name, a module factory or None, got {spec!r}")


class MLP(nn.Module):
    """Linear layers with an activation (and optional dropout) between them.

    Every layer but the last is followed by ``activation`` then ``dropout``; the last is
    followed by ``final_activation`` (None: raw output, e.g. a logit). An empty
    ``layer_sizes`` gives the identity (``out_features == in_features``).

    Shapes: ``(*, in_features) -> (*, layer_sizes[-1])``.

    Example:
        >>> mlp = MLP(16, [32, 8], activation="relu", dropout=0.1)
        >>> mlp(torch.zeros(4, 16)).shape
        torch.Size([4, 8])
    """

    def __init__(
        self,
        in_features: int,
        layer_sizes: Sequence[int],
        activation: ActivationSpec = "relu",
        final_activation: ActivationSpec = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 0:
            raise ConfigError(f"MLP: in_features must be an int >= 0, got {in_features!r}")
        if isinstance(layer_sizes, (int, str)) or not isinstance(layer_sizes, Sequence):
            raise ConfigError(f"MLP: layer_sizes must be a list of ints, got {layer_sizes!r}")
        sizes = list(layer_sizes)
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ConfigError(f"MLP: layer sizes must be ints >= 1, got {sizes}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"MLP: dropout must be a number in [0, 1), got {dropout!r}")
        make_activation(activation)  # fail on a bad name even when no hidden layer would use it
        make_activation(final_activation)
        self.in_features = in_features
        self.out_features = sizes[-1] if sizes else in_features
        layers: list[nn.Module] = []
        width = in_features
        for index, size in enumerate(sizes):
            layers.append(nn.Linear(width, size, bias=bias))
            if index < len(sizes) - 1:
                layers.append(make_activation(activation))
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
            elif final_activation is not None:
                layers.append(make_activation(final_activation))
            width = size
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
