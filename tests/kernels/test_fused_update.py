"""The fused CPU backward: radix sort, row pieces, and summed-gradient updates against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from recembed.kernels.fused_update import _sort_packed_for_tests, fused_backward

SUM, MEAN, MAX = 0, 1, 2


@pytest.mark.parametrize("bits", [0, 7, 10, 23])
def test_sort_packed_orders_by_row_bits_and_keeps_ties_stable(bits):
    rng = np.random.default_rng(bits)
    n, shift = 500, 9
    rows = rng.integers(0, 1 << bits, n) if bits else np.zeros(n, np.int64)
    keys = (rows << shift) | np.arange(n)
    out = _sort_packed_for_tests(keys.copy(), shift, bits)
    order = np.argsort(rows, kind="stable")
    np.testing.assert_array_equal(out, keys[order])


def test_sort_packed_skips_a_pass_whose_digit_never_varies():
    keys = ((np.array([5, 3, 5, 1, 3]) + (7 << 10)) << 3) | np.arange(5)  # the high digit is 7 everywhere
    out = _sort_packed_for_tests(keys.copy(), 3, 20)
    np.testing.assert_array_equal(out >> 3, (np.array([1, 3, 3, 5, 5]) + (7 << 10)))
    np.testing.assert_array_equal(out & 7, [3, 1, 4, 0, 2])


def _problem(seed: int):
    """Two tables (dims 3 and 5): table 0 serves keys 0 (SUM) and 2 (SUM), table 1 key 1 (MEAN, padding row 0)."""
    rng = np.random.default_rng(seed)
    batch, dims, rows_per = 4, np.array([3, 5]), np.array([6, 9])
    key_table, key_pool = np.array([0, 1, 0]), np.array([SUM, MEAN, SUM])
    key_col = np.array([0, 3, 8])
    lengths = rng.integers(0, 5, (3, batch))
    lengths[0, 1] = 0  # an empty bag
    offsets = np.concatenate([[0], np.cumsum(lengths.ravel())]).astype(np.int64)
    rows = np.concatenate([rng.integers(0, rows_per[key_table[k]], lengths[k].sum()) for k in range(3)])
    rows[:3] = 2  # duplicates
    assert lengths[1].sum() > 0
    rows[offsets[batch]] = 0  # table 1's padding row, which drops out of its bag
    psw = rng.uniform(0.5, 1.5, len(rows)).astype(np.float32)
    grad = rng.normal(size=(batch, 11)).astype(np.float32)
    return batch, dims, rows_per, key_table, key_pool, key_col, offsets, rows.astype(np.int64), psw, grad


def _reference_grads(problem, pad, weighted):
    batch, dims, _, key_table, key_pool, key_col, offsets, rows, psw, grad = problem
    grads = [{} for _ in dims]
    for k in range(3):
        t = key_table[k]
        for b in range(batch):
            ids = range(offsets[k * batch + b], offsets[k * batch + b + 1])
            live = [i for i in ids if rows[i] != pad[t]]
            for i in live:
                scale = (psw[i] if weighted else 1.0) / (len(live) if key_pool[k] == MEAN else 1.0)
                g = grads[t].setdefault(int(rows[i]), np.zeros(dims[t]))
                g += scale * grad[b, key_col[k] : key_col[k] + dims[t]].astype(np.float64)
    return grads


def _run(problem, code, pad, weighted, parts, state_per_row):
    batch, dims, rows_per, _, key_pool, key_col, offsets, rows, psw, grad = problem
    sizes = rows_per * dims
    w_off = np.array([0, 32], np.int64)
    W = np.random.default_rng(1).normal(size=80).astype(np.float32)
    R = np.zeros(20 if state_per_row else 0, np.float32)
    r_off = np.array([0, 8] if state_per_row else [-1, -1], np.int64)
    none = np.array([-1, -1], np.int64)
    hyper = np.tile([0.1, 0.0, 1e-6, 0.9, 0.999, 0.1, 0.001], (2, 1))
    table_key_start, table_keys = np.array([0, 2, 3]), np.array([0, 2, 1])
    row_bits = np.array([3, 4], np.int64)
    assert sizes[0] <= w_off[1] and w_off[1] + sizes[1] <= 80
    fused_backward(W, np.zeros(0, np.float32), np.zeros(0, np.float32), R, w_off, dims.astype(np.int64), pad,
                   np.full(2, code, np.int64), none, none, r_off, hyper, row_bits, table_key_start, table_keys,
                   key_col, key_pool, rows, offsets, psw if weighted else np.zeros(0, np.float32), batch, grad,
                   np.zeros((0, 0), np.int64), parts)
    return W, R


@pytest.mark.parametrize("weighted", [False, True])
def test_sgd_applies_each_rows_summed_gradient_once(weighted):
    problem = _problem(3)
    pad = np.array([-1, 0], np.int64)
    before, _ = _run(problem, -1, pad, weighted, 1, False)  # code -1 changes nothing
    after, _ = _run(problem, 0, pad, weighted, 1, False)
    expected = before.astype(np.float64)
    for t, (off, d) in enumerate(zip([0, 32], problem[1])):
        for r, g in _reference_grads(problem, pad, weighted)[t].items():
            expected[off + r * d : off + (r + 1) * d] -= 0.1 * g
    np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-6)
    assert after[32] == before[32]  # table 1's padding row 0 never moves


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_row_pieces_give_the_same_update_as_one_piece(parts):
    problem = _problem(5)
    pad = np.array([-1, -1], np.int64)
    one_w, one_r = _run(problem, 2, pad, True, 1, True)
    many_w, many_r = _run(problem, 2, pad, True, parts, True)
    np.testing.assert_array_equal(many_w, one_w)  # same rows, same summation order: bit-identical
    np.testing.assert_array_equal(many_r, one_r)
    assert (one_r > 0).sum() == sum(len(g) for g in _reference_grads(problem, pad, True))
