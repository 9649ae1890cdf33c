"""What the hashing indexes share: vectors added in pieces, int8 first-pass codes, search buffers.

:class:`~recembed.retrieval.lsh.LSHIndex` (random hyperplanes) and
:class:`~recembed.retrieval.cross_polytope.CrossPolytopeLSHIndex` differ in how they hash and
probe; both keep the added vectors in float32, join pieces added since the last search
before (re)building their tables, score candidates on an int8 copy first and the best
``rerank`` again in float32, and report how many rows each query scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import numpy as np
import torch

from recembed.errors import CheckpointError, ConfigError
from recembed.kernels.host_memory import empty_float32, zeros_array
from recembed.retrieval.base import VectorIndex
from recembed.retrieval.exclusion import Exclusion

__all__ = ["HashTableIndex", "quantize_rows", "huge_page_copy"]


_QUANTIZE_CHUNK = 65536  # rows quantised per torch call


def quantize_rows(vectors: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, scales)``: ``(N, D)`` int8 and ``(N,)`` float32 with ``vectors ~= codes * scales[:, None]``.

    Symmetric per-row scaling (the row's largest magnitude maps to 127), so a row's error
    is at most ``scale / 2`` per coordinate whatever the other rows' norms. Large code
    arrays sit on huge pages: candidates are read at random, one TLB miss each otherwise.
    """
    num_rows, dim = vectors.shape
    codes = zeros_array((num_rows, dim), np.int8)
    scales = np.empty(num_rows, dtype=np.float32)
    for start in range(0, num_rows, _QUANTIZE_CHUNK):
        block = vectors[start : start + _QUANTIZE_CHUNK]
        scale = block.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127.0
        codes[start : start + block.shape[0]] = torch.round(block / scale[:, None]).to(torch.int8).numpy()
        scales[start : start + block.shape[0]] = scale.numpy()
    return codes, scales


def huge_page_copy(vectors: torch.Tensor) -> torch.Tensor:
    """A contiguous float32 copy of ``vectors``, on huge pages when large.

    Re-ranking reads rows at random; with 4 KiB pages nearly every one is a TLB miss
    (the int8 pass over 1M x 64 rows ran ~20% faster on huge pages, one thread).
    """
    out = empty_float32(vectors.numel()).view(vectors.shape)
    out.copy_(vectors)
    return out


class SearchBuffers:
    """A search's inputs and outputs for the numba kernels (``Q`` queries, ``k`` results each)."""

    def __init__(self, index: HashTableIndex, num_queries: int, k: int, exclusion: Optional[Exclusion]):
        self.rerank = max(index.rerank, k) if index.rerank else 0
        if self.rerank and index._quantized is None:
            index._quantized = quantize_rows(index._vectors)
        empty = (np.empty((0, 0), np.int8), np.empty(0, np.float32))
        self.codes, self.code_scales = index._quantized if self.rerank else empty
        if exclusion is None:
            self.exclude_offsets, self.exclude_rows = np.zeros(num_queries + 1, np.int64), np.empty(0, np.int64)
        else:
            self.exclude_offsets, self.exclude_rows = exclusion.offsets, exclusion.rows
        self.scores = np.empty((num_queries, k), dtype=np.float32)
        self.rows = np.empty((num_queries, k), dtype=np.int64)
        self.candidates = np.zeros(num_queries, dtype=np.int64)


class HashTableIndex(VectorIndex):
    """Base of the LSH indexes: subclasses build ``self._tables`` in ``_ready`` and search them."""

    rerank: int

    def _clear_vectors(self) -> None:
        self._vectors = torch.empty(0, 0)
        self._pending: list[torch.Tensor] = []
        self._tables: Optional[tuple[np.ndarray, np.ndarray]] = None
        self._quantized: Optional[tuple[np.ndarray, np.ndarray]] = None  # int8 copy, made at first need
        self._last_candidates: Optional[torch.Tensor] = None

    @property
    def last_candidates(self) -> Optional[torch.Tensor]:
        """``(Q,)`` int64: distinct rows scored per query in the last search (cost diagnostics)."""
        return self._last_candidates

    def _add(self, vectors: torch.Tensor) -> None:
        if len(self) + vectors.shape[0] > np.iinfo(np.int32).max:
            raise ConfigError(f"{type(self).__name__} holds at most {np.iinfo(np.int32).max} vectors (int32 rows)")
        self._pending.append(vectors)
        self._tables = None
        self._quantized = None

    def _join_pending(self) -> None:
        """Append the vectors added since the last search to ``self._vectors``."""
        if self._pending:
            parts = ([self._vectors] if self._vectors.numel() else []) + self._pending
            self._vectors = huge_page_copy(parts[0] if len(parts) == 1 else torch.cat(parts))
            self._pending = []

    def _buffers(self, num_queries: int, k: int, exclusion: Optional[Exclusion]) -> SearchBuffers:
        return SearchBuffers(self, num_queries, k, exclusion)

    def _finish(self, buffers: SearchBuffers) -> tuple[np.ndarray, np.ndarray]:
        self._last_candidates = torch.from_numpy(buffers.candidates)
        return buffers.scores, buffers.rows

    @staticmethod
    def _check_shapes(state: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], path: str,
                      what: str) -> None:
        """Raise CheckpointError naming the first array of ``state`` missing or not of its ``expected`` shape."""
        for name, shape in expected.items():
            if name not in state or state[name].shape != shape:
                found = state[name].shape if name in state else "missing"
                raise CheckpointError(f"{path}: {what} array {name!r} should have shape {shape}, found {found}")
