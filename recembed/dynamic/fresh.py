"""Fresh initial values for recycled rows, as a pure function of (seed, row, generation).

When a row passes to a new id it restarts from the table's initial distribution. The values
are counter-based random numbers: entry ``(row, j)`` after the row's ``g``-th release is
drawn from ``fmix64`` (MurmurHash3's finaliser) of ``seed``, ``row``, ``g`` and ``j``, so
they need no generator state, are identical after a checkpoint is loaded, and do not
depend on the order rows were recycled in.

| init            | fresh values                                            |
|-----------------|---------------------------------------------------------|
| "uniform"       | U(lo, hi), the table's range (default ±sqrt(1/num_embeddings)) |
| "xavier"        | U(±sqrt(6 / (num_embeddings + dim)))                    |
| "normal"        | N(0, 1) (Box-Muller on two 32-bit uniforms)             |
| "scaled_normal" | N(0, (1/dim)^2)                                         |
| "zeros"         | zeros                                                   |
| a callable      | the callable, on a (rows, dim) float32 tensor (torch's global RNG) |

Example:
    >>> fresh_values("uniform", (-0.1, 0.1), 4, np.array([3, 7]), np.array([1, 1]), seed=0).shape
    (2, 4)
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from recembed.dynamic._hashing import fmix64_word
from recembed.kernels.prefetch import prefetch

__all__ = ["fresh_values", "write_fresh_rows", "zero_rows"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S32 = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)
_TWO_PI = 2.0 * math.pi
_AHEAD = 8  # rows between the prefetch of a target row and the write to it (recycled rows are scattered)


@numba.njit(inline="always")
def _fetch_row(out, row):
    for column in range(0, out.shape[1], 64 // out.itemsize):
        prefetch(out, row, column)


@numba.njit(cache=True, nogil=True)
def zero_rows(out, rows):
    """``out[rows] = 0`` for a 2-D array and a few thousand scattered rows (prefetched ahead)."""
    n = rows.shape[0]
    for i in range(n):
        if i + _AHEAD < n:
            _fetch_row(out, rows[i + _AHEAD])
        for j in range(out.shape[1]):
            out[rows[i], j] = 0


@numba.njit(inline="always")
def _row_base(row, generation, salt):
    return fmix64_word(fmix64_word(np.uint64(row) ^ salt) + np.uint64(generation) * _GOLDEN)


@numba.njit(cache=True, nogil=True)
def _draw_uniform(out, targets, rows, generations, seed, a, b):
    """Fill ``out[targets[i]]`` with row ``rows[i]``'s U(a, b) values.

    Hash ``p`` of a row gives entries ``2p`` (low 32 bits) and ``2p + 1`` (high 32 bits). The
    hashes of a row are computed in their own loop, which the compiler vectorises.
    """
    d = out.shape[1]
    half = (d + 1) // 2
    salt = fmix64_word(np.uint64(seed) ^ _GOLDEN)
    hashes = np.empty(half, np.uint64)
    width = b - a
    n = rows.shape[0]
    for i in range(n):
        if i + _AHEAD < n:
            _fetch_row(out, targets[i + _AHEAD])
        base = _row_base(rows[i], generations[i], salt)
        for p in range(half):
            hashes[p] = fmix64_word(base + np.uint64(p + 1) * _GOLDEN)
        row = out[targets[i]]
        for p in range(d // 2):
            x = hashes[p]
            row[2 * p] = a + width * (np.float64(x & _LOW32) * 2.0**-32)
            row[2 * p + 1] = a + width * (np.float64(x >> _S32) * 2.0**-32)
        if d % 2:
            row[d - 1] = a + width * (np.float64(hashes[half - 1] & _LOW32) * 2.0**-32)


@numba.njit(cache=True, nogil=True)
def _draw_normal(out, targets, rows, generations, seed, sigma):
    """Fill ``out[targets[i]]`` with row ``rows[i]``'s N(0, sigma^2) values.

    Hash ``p`` of a row gives two 32-bit uniforms, one Box-Muller pair: entries ``2p`` and ``2p + 1``.
    """
    d = out.shape[1]
    salt = fmix64_word(np.uint64(seed) ^ _GOLDEN)
    n = rows.shape[0]
    for i in range(n):
        if i + _AHEAD < n:
            _fetch_row(out, targets[i + _AHEAD])
        t = targets[i]
        base = _row_base(rows[i], generations[i], salt)
        for p in range((d + 1) // 2):
            x = fmix64_word(base + np.uint64(p + 1) * _GOLDEN)
            u1 = ((x >> _S32) + np.uint64(1)) * 2.0**-32  # in (0, 1]: safe for log
            u2 = (x & _LOW32) * 2.0**-32                   # in [0, 1)
            r = sigma * math.sqrt(-2.0 * math.log(u1))
            out[t, 2 * p] = r * math.cos(_TWO_PI * u2)
            if 2 * p + 1 < d:
                out[t, 2 * p + 1] = r * math.sin(_TWO_PI * u2)


def fresh_values(init: object, init_range: tuple[float, float] | None, dim: int, rows: np.ndarray,
                 generations: np.ndarray, seed: int) -> np.ndarray:
    """Fresh ``(len(rows), dim)`` float32 values for ``rows`` at their ``generations``.

    Args:
        init: the table's initialiser name (after ``"xavier"`` became ``"uniform"`` with its
            bound) or a callable filling a tensor in place.
        init_range: ``(lo, hi)`` for ``"uniform"``.
        dim: the row width.
        rows, generations: ``(K,)`` int64 row ids and how many times each was released.
        seed: the table's seed.
    """
    out = np.zeros((len(rows), dim), np.float32)
    write_fresh_rows(out, np.arange(len(rows), dtype=np.int64), init, init_range, rows, generations, seed)
    return out


def write_fresh_rows(weight: np.ndarray, targets: np.ndarray, init: object, init_range: tuple[float, float] | None,
                     rows: np.ndarray, generations: np.ndarray, seed: int) -> None:
    """``weight[targets[i]] = fresh values of rows[i]`` in place (``weight`` float32 ``(R, dim)``).

    ``targets`` and ``rows`` are the same for a table's own rows; :func:`fresh_values` writes
    into a new ``(K, dim)`` array instead. Same arguments as :func:`fresh_values` otherwise.
    """
    if len(rows) == 0:
        return
    targets = np.ascontiguousarray(targets, np.int64)
    if init == "zeros":
        weight[targets] = 0.0
        return
    if callable(init) and not isinstance(init, str):
        values = torch.zeros(len(rows), weight.shape[1], dtype=torch.float32)
        init(values)
        weight[targets] = values.numpy()
        return
    rows = np.ascontiguousarray(rows, np.int64)
    generations = np.ascontiguousarray(generations, np.int64)
    if init == "uniform":
        lo, hi = init_range  # type: ignore[misc]
        _draw_uniform(weight, targets, rows, generations, seed, float(lo), float(hi))
    elif init in ("normal", "scaled_normal"):
        _draw_normal(weight, targets, rows, generations, seed, 1.0 if init == "normal" else 1.0 / weight.shape[1])
    else:  # pragma: no cover - configs validate init names
        raise ValueError(f"unknown init {init!r}")
