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
        with np.errstate(over="ignore"):
            return (_fmix64(ranks) & _MASK62).astype(np.int64)  # non-negative: TorchRec's MCH needs that
