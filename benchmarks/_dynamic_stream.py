"""The id stream of benchmarks/dynamic_tables.py: raw int64 ids, Zipf ranks over a drifting vocabulary."""

from __future__ import annotations

import numpy as np

TABLES, BATCH, BAG, DIM = 8, 2048, 20, 64
PER_TABLE = BATCH * BAG
_MASK62 = np.uint64((1 << 62) - 1)


def _fmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


class DriftingZipf:
    """Batches of raw int64 ids: Zipf(a) ranks over a vocabulary shifted by ``drift`` ranks per batch.

    With a = 1.1 about a quarter of all draws have a rank beyond 1M (the tail of an unbounded
    vocabulary), so a full 1M-row LRU table meets ~28% ids without a row every batch.
    """

    def __init__(self, seed: int, a: float = 1.1, drift: float = 0.5):
        self.rng, self.a, self.drift, self.t = np.random.default_rng(seed), a, drift, 0

    def next(self, n: int) -> np.ndarray:
        ranks = self.rng.zipf(self.a, n).astype(np.uint64) + np.uint64(int(self.t * self.drift))
        self.t += 1
        return scramble(ranks)  # non-negative: TorchRec's MCH needs that


class ModuloZipf:
    """The standard workload's ids as raw int64 ids: Zipf(1.1) ranks modulo ``rows``, scrambled by ``fmix64``.

    ``benchmarks/embedding_training.py`` feeds a plain table the ranks modulo its rows; a
    dynamic table of that capacity gets the same vocabulary as arbitrary 62-bit ids, so its map
    (not an identity) does the work. Every id fits, so once warm almost every id has a row.
    """

    def __init__(self, seed: int, rows: int, a: float = 1.1):
        self.rng, self.rows, self.a = np.random.default_rng(seed), rows, a

    def next(self, n: int) -> np.ndarray:
        return scramble((self.rng.zipf(self.a, n) - 1) % self.rows)


def scramble(ranks: np.ndarray) -> np.ndarray:
    """Non-negative int64 ranks -> non-negative 62-bit ids (fmix64 is a bijection of 64-bit words, so
    a million ranks collide after the mask with probability about 1e-7)."""
    with np.errstate(over="ignore"):
        return (_fmix64(ranks) & _MASK62).astype(np.int64)
