"""The victim pool's pieces: the stamp sort over any spread, and refills that take the oldest rows."""

from __future__ import annotations

import numpy as np
import pytest

from recembed.dynamic._heap import LAST, STAMP
from recembed.dynamic._pool import _sort_by_stamp, pool_refill


@pytest.mark.parametrize("spread", [1, 2_000, 3_000_000, 2**40])  # 1, 2, 3 and 4 radix passes
def test_sort_by_stamp_orders_rows_by_stamp_for_any_spread(spread):
    rng = np.random.default_rng(spread % 97)
    stamps = rng.choice(spread + 1, size=min(spread + 1, 5000), replace=False) + 12345
    pool = np.stack([np.arange(len(stamps)), stamps], axis=1).astype(np.int64)
    extra = np.full((7, 2), -9, np.int64)  # rows past n stay as they are
    full = np.concatenate([pool, extra])
    _sort_by_stamp(full, len(stamps))
    order = np.argsort(stamps, kind="stable")
    assert full[: len(stamps), 1].tolist() == stamps[order].tolist()
    assert full[: len(stamps), 0].tolist() == order.tolist()
    assert (full[len(stamps):] == -9).all()


def test_refill_takes_every_row_at_least_as_old_as_its_threshold():
    capacity, step = 10_000, 50
    rng = np.random.default_rng(0)
    meta = np.zeros((capacity, 5), np.int64)
    meta[:, LAST] = rng.integers(-1, step + 1, size=capacity)  # -1: free rows
    meta[:, STAMP] = rng.permutation(capacity) + 1
    pool = np.zeros((capacity, 2), np.int64)
    n = pool_refill(pool, meta, step, 1, 800)
    rows = pool[:n, 0]
    assert n > 0 and (np.diff(pool[:n, 1]) > 0).all()  # sorted by stamp
    ages = step - meta[rows, LAST]
    threshold = ages.min()
    eligible = (meta[:, LAST] >= 0) & (step - meta[:, LAST] >= threshold)
    assert sorted(rows.tolist()) == np.flatnonzero(eligible).tolist()  # all of them, nothing else
    assert 400 < n < 1600  # about the target, from the sample
    assert threshold >= 1  # rows touched in this step never enter
