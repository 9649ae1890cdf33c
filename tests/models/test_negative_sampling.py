import math

import pytest
import torch

from recembed.errors import ConfigError, IdOutOfRangeError
from recembed.models import NegativeSampler


def test_uniform_sampler_range_log_q_and_seed():
    sampler = NegativeSampler(10, seed=3)
    items, log_q = sampler.sample(200, 5)
    assert items.shape == log_q.shape == (200, 5)
    assert items.dtype == torch.int64 and int(items.min()) >= 0 and int(items.max()) < 10
    assert torch.allclose(log_q, torch.full_like(log_q, -math.log(10)))
    counts = torch.bincount(items.reshape(-1), minlength=10).float()
    assert float(counts.min()) > 60 and float(counts.max()) < 140  # 100 expected each
    again, _ = NegativeSampler(10, seed=3).sample(200, 5)
    assert torch.equal(items, again)


def test_popularity_sampler_follows_counts_to_the_power():
    counts = torch.tensor([100.0, 10.0, 0.0, 1.0, 50.0])
    sampler = NegativeSampler.from_counts(counts, power=0.75, seed=0)
    items, log_q = sampler.sample(4000, 10)
    expected = counts.pow(0.75) / counts.pow(0.75).sum()
    freq = torch.bincount(items.reshape(-1), minlength=5).double() / items.numel()
    assert int((items == 2).sum()) == 0  # zero count: never drawn
    assert torch.allclose(freq, expected.double(), atol=0.01)
    assert torch.allclose(log_q, torch.log(expected)[items], atol=1e-6)
    assert torch.allclose(sampler.log_q(torch.tensor([0, 4])), torch.log(expected[[0, 4]]), atol=1e-6)


def test_power_zero_is_uniform_over_all_items():
    sampler = NegativeSampler.from_counts(torch.tensor([5.0, 0.0, 1.0]), power=0.0)
    assert torch.allclose(sampler.log_q(torch.tensor([0, 1, 2])), torch.full((3,), -math.log(3)))


def test_errors():
    with pytest.raises(ConfigError, match="probabilities has 2 entries"):
        NegativeSampler(3, torch.tensor([1.0, 1.0]))
    with pytest.raises(ConfigError, match="not all zero"):
        NegativeSampler(2, torch.tensor([0.0, 0.0]))
    with pytest.raises(IdOutOfRangeError, match=r"\[0, 3\)"):
        NegativeSampler(3).log_q(torch.tensor([3]))
