"""Fresh values of recycled rows: the init's distribution, deterministic in (seed, row, generation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recembed.dynamic.fresh import fresh_values

ROWS = np.arange(2000, dtype=np.int64)
ONES = np.ones(2000, dtype=np.int64)


def test_uniform_values_fill_the_range_evenly():
    v = fresh_values("uniform", (-0.5, 0.25), 7, ROWS, ONES, seed=3)
    assert v.shape == (2000, 7) and v.dtype == np.float32
    assert v.min() >= -0.5 and v.max() < 0.25
    assert abs(v.mean() - (-0.125)) < 0.01
    assert abs(v.std() - 0.75 / math.sqrt(12)) < 0.01
    counts = np.histogram(v, bins=10, range=(-0.5, 0.25))[0]
    assert counts.min() > 0.9 * v.size / 10  # no bin is starved: odd columns included


@pytest.mark.parametrize("init, std", [("normal", 1.0), ("scaled_normal", 1.0 / 8)])
def test_normal_values_have_the_init_spread(init, std):
    v = fresh_values(init, None, 8, ROWS, ONES, seed=0)
    assert abs(v.mean()) < 0.03 * std
    assert abs(v.std() - std) < 0.02 * std
    assert abs(np.corrcoef(v[:, 0], v[:, 1])[0, 1]) < 0.06  # the two values of a pair are independent


def test_values_depend_on_seed_row_and_generation_only():
    a = fresh_values("uniform", (-1, 1), 5, np.array([4, 9]), np.array([2, 1]), seed=7)
    again = fresh_values("uniform", (-1, 1), 5, np.array([9, 4]), np.array([1, 2]), seed=7)
    np.testing.assert_array_equal(a, again[::-1])  # order of the request does not matter
    other_gen = fresh_values("uniform", (-1, 1), 5, np.array([4]), np.array([3]), seed=7)
    other_seed = fresh_values("uniform", (-1, 1), 5, np.array([4]), np.array([2]), seed=8)
    assert not np.allclose(a[0], other_gen[0]) and not np.allclose(a[0], other_seed[0])


def test_zeros_and_callables():
    assert not fresh_values("zeros", None, 3, ROWS[:4], ONES[:4], seed=0).any()

    def fill_sevens(t: torch.Tensor) -> None:
        t.fill_(7.0)

    assert (fresh_values(fill_sevens, None, 3, ROWS[:4], ONES[:4], seed=0) == 7.0).all()
