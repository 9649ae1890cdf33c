import pytest
import torch

from recembed.errors import ConfigError, ShapeMismatchError
from recembed.models import CrossNetwork, fm_second_order, pairwise_dot_interaction


def test_pairwise_dot_matches_brute_force_loop():
    g = torch.Generator().manual_seed(0)
    batch, num_features, dim = 3, 4, 5
    dense = torch.randn(batch, dim, generator=g)
    sparse = torch.randn(batch, num_features, dim, generator=g)
    out = pairwise_dot_interaction(dense, sparse)
    assert out.shape == (batch, (num_features + 1) * num_features // 2)
    for b in range(batch):
        vectors = [dense[b]] + [sparse[b, f] for f in range(num_features)]
        expected = [
            float(vectors[i] @ vectors[j]) for i in range(len(vectors)) for j in range(i + 1, len(vectors))
        ]
        assert out[b].tolist() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_pairwise_dot_shape_errors():
    with pytest.raises(ShapeMismatchError, match="vector width"):
        pairwise_dot_interaction(torch.zeros(2, 3), torch.zeros(2, 4, 5))
    with pytest.raises(ShapeMismatchError, match=r"\(B, F, d\)"):
        pairwise_dot_interaction(torch.zeros(2, 3), torch.zeros(2, 3))


def test_fm_second_order_matches_pair_sum():
    g = torch.Generator().manual_seed(1)
    fields = torch.randn(4, 5, 3, generator=g)
    out = fm_second_order(fields)
    for b in range(4):
        expected = sum(float(fields[b, i] @ fields[b, j]) for i in range(5) for j in range(i + 1, 5))
        assert float(out[b]) == pytest.approx(expected, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("low_rank", [None, 3])
def test_cross_network_follows_the_formula(low_rank):
    torch.manual_seed(0)
    width = 7
    cross = CrossNetwork(width, num_layers=2, low_rank=low_rank)
    with torch.no_grad():  # non-zero biases, so the test sees them
        for p in cross.parameters():
            if p.dim() == 1:
                p.normal_()
    x0 = torch.randn(4, width)
    x = x0
    for layer in range(2):
        kernel = cross.kernels[layer]
        if low_rank is None:
            weight, bias = kernel.weight, kernel.bias
        else:
            down, up = kernel[0].weight, kernel[1].weight  # V^T (r, D), U (D, r)
            assert down.shape == (low_rank, width) and up.shape == (width, low_rank)
            weight, bias = up @ down, kernel[1].bias
        assert torch.allclose(cross.layer_weight(layer), weight)
        assert torch.equal(cross.layer_bias(layer), bias)
        x = x0 * (x @ weight.T + bias) + x
    assert torch.allclose(cross(x0), x, atol=1e-5)


def test_cross_network_low_rank_parameter_count_and_zero_layers():
    assert sum(p.numel() for p in CrossNetwork(10, 1, low_rank=2).parameters()) == 2 * 10 * 2 + 10
    x0 = torch.randn(3, 10)
    assert torch.equal(CrossNetwork(10, 0)(x0), x0)


def test_cross_network_errors():
    with pytest.raises(ConfigError, match="low_rank"):
        CrossNetwork(4, 2, low_rank=0)
    with pytest.raises(ConfigError, match="num_cross_layers"):
        CrossNetwork(4, -1)
    with pytest.raises(ShapeMismatchError, match=r"expected \(batch, 4\)"):
        CrossNetwork(4, 1)(torch.zeros(2, 5))
