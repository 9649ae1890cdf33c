import pytest
import torch
from torch import nn

from recembed.errors import ConfigError
from recembed.models import MLP


def test_shapes_and_layer_layout():
    mlp = MLP(6, [5, 4, 2], activation="tanh", dropout=0.2)
    assert mlp(torch.zeros(3, 6)).shape == (3, 2)
    assert mlp(torch.zeros(7, 3, 6)).shape == (7, 3, 2)
    kinds = [type(layer).__name__ for layer in mlp.layers]
    # activation + dropout after every hidden layer, nothing after the last one
    assert kinds == ["Linear", "Tanh", "Dropout", "Linear", "Tanh", "Dropout", "Linear"]
    assert (mlp.in_features, mlp.out_features) == (6, 2)


def test_matches_hand_computation():
    torch.manual_seed(0)
    mlp = MLP(3, [4, 2], activation="relu", final_activation="sigmoid")
    x = torch.randn(5, 3)
    first, second = mlp.layers[0], mlp.layers[2]
    expected = torch.sigmoid(torch.relu(x @ first.weight.T + first.bias) @ second.weight.T + second.bias)
    assert torch.allclose(mlp(x), expected)


def test_empty_layer_sizes_is_identity():
    mlp = MLP(4, [])
    x = torch.randn(2, 4)
    assert torch.equal(mlp(x), x)
    assert mlp.out_features == 4


def test_dropout_only_in_training():
    torch.manual_seed(0)
    mlp = MLP(8, [16, 4], dropout=0.5)
    x = torch.randn(10, 8)
    mlp.eval()
    assert torch.equal(mlp(x), mlp(x))
    mlp.train()
    assert not torch.equal(mlp(x), mlp(x))


def test_activation_factory():
    mlp = MLP(2, [3, 1], activation=lambda: nn.LeakyReLU(0.2))
    assert isinstance(mlp.layers[1], nn.LeakyReLU) and mlp.layers[1].negative_slope == 0.2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"in_features": 3, "layer_sizes": [4], "activation": "swishy"}, "activation 'swishy'"),
        ({"in_features": 3, "layer_sizes": [4, 0]}, "layer sizes must be ints >= 1"),
        ({"in_features": 3, "layer_sizes": 4}, "layer_sizes must be a list"),
        ({"in_features": -1, "layer_sizes": [4]}, "in_features"),
        ({"in_features": 3, "layer_sizes": [4], "dropout": 1.0}, "dropout"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MLP(**kwargs)
