"""Initialisers: the named distributions, callables, pretrained tensors and the padding row."""

from __future__ import annotations

import math

import pytest
import torch

from recembed.tables import EmbeddingBag, EmbeddingBagConfig
from recembed.tables.init import initialise_weight

ROWS, DIM = 2000, 16  # 32,000 draws: the sample std is within ~1% of the true one


def _init(init, rows=ROWS, dim=DIM, seed=0, **fields) -> torch.Tensor:
    cfg = EmbeddingBagConfig(name="t", num_embeddings=rows, embedding_dim=dim, init=init, **fields)
    weight = torch.empty(rows, dim, dtype=cfg.torch_dtype)
    initialise_weight(weight, cfg, generator=torch.Generator().manual_seed(seed))
    return weight


def test_normal_is_standard_normal():
    w = _init("normal")
    assert abs(float(w.std()) - 1.0) < 0.03
    assert abs(float(w.mean())) < 0.03


@pytest.mark.parametrize("dim", [4, 16, 64])
def test_scaled_normal_has_std_one_over_dim(dim):
    w = _init("scaled_normal", rows=32000 // dim, dim=dim)
    assert float(w.std()) == pytest.approx(1.0 / dim, rel=0.03)
    assert abs(float(w.mean())) < 0.03 / dim


def test_uniform_defaults_to_plus_minus_sqrt_one_over_rows():
    w = _init("uniform")
    bound = math.sqrt(1.0 / ROWS)
    assert float(w.min()) >= -bound and float(w.max()) <= bound
    # The draws fill the interval: extremes near the bounds, std of U(-b, b) is b/sqrt(3).
    assert float(w.min()) < -0.99 * bound and float(w.max()) > 0.99 * bound
    assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.03)


def test_uniform_respects_init_range():
    w = _init("uniform", init_range=(0.25, 0.5))
    assert float(w.min()) >= 0.25 and float(w.max()) <= 0.5
    assert float(w.mean()) == pytest.approx(0.375, abs=0.005)


def test_xavier_uses_glorot_bound():
    w = _init("xavier")
    bound = math.sqrt(6.0 / (ROWS + DIM))
    assert float(w.abs().max()) <= bound
    assert float(w.abs().max()) > 0.99 * bound


def test_zeros():
    assert torch.count_nonzero(_init("zeros")) == 0


def test_default_config_init_is_uniform():
    cfg = EmbeddingBagConfig(name="t", num_embeddings=ROWS, embedding_dim=DIM)
    assert cfg.init == "uniform"


def test_same_generator_seed_gives_same_weights():
    assert torch.equal(_init("normal", seed=7), _init("normal", seed=7))
    assert not torch.equal(_init("normal", seed=7), _init("normal", seed=8))


@pytest.mark.parametrize("init", ["normal", "scaled_normal", "uniform", "xavier"])
@pytest.mark.parametrize("padding_idx", [0, 5, -1])
def test_padding_row_is_zeroed_after_named_init(init, padding_idx):
    w = _init(init, rows=20, padding_idx=padding_idx)
    pad = padding_idx % 20
    assert torch.count_nonzero(w[pad]) == 0
    others = torch.cat([w[:pad], w[pad + 1 :]])
    assert torch.count_nonzero(others) == others.numel()


def test_callable_init_fills_in_place_and_padding_row_is_zeroed():
    w = _init(lambda t: t.fill_(0.5), rows=6, dim=3, padding_idx=2)
    expected = torch.full((6, 3), 0.5)
    expected[2] = 0
    assert torch.equal(w, expected)


def test_pretrained_tensor_is_copied_and_its_padding_row_kept():
    # As nn.Embedding.from_pretrained: a pretrained padding row is not overwritten.
    pretrained = torch.arange(18, dtype=torch.float32).reshape(6, 3)
    w = _init(pretrained, rows=6, dim=3, padding_idx=2)
    assert torch.equal(w, pretrained)


def test_pretrained_tensor_is_cast_to_the_table_dtype():
    pretrained = torch.tensor([[0.1, 0.2], [0.3, 0.4]], dtype=torch.float64)
    w = _init(pretrained, rows=2, dim=2, dtype="float16")
    assert w.dtype is torch.float16
    assert torch.equal(w, pretrained.to(torch.float16))


def test_tables_use_their_config_init():
    cfg = EmbeddingBagConfig(name="t", num_embeddings=7, embedding_dim=3, init="zeros", padding_idx=1)
    table = EmbeddingBag(0, 0, config=cfg)
    assert table.weight.shape == (7, 3)
    assert torch.count_nonzero(table.weight) == 0
    assert table.weight.requires_grad
