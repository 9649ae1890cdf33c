"""Random-hyperplane LSH (SimHash) with multi-probe lookup and exact re-ranking.

Each of ``num_tables`` tables hashes a vector to ``num_bits`` sign bits of its projections
on random Gaussian hyperplanes; vectors at a small angle share most bits (Charikar, 2002:
a bit differs with probability angle / pi). A query visits its own bucket and the
``num_probes - 1`` next most likely buckets in every table -- those reached by flipping
the bits whose hyperplanes pass closest to it (Lv et al., 2007) -- and the distinct
candidates are scored against the query. More tables or probes raise recall and cost;
more bits make buckets smaller (faster, lower recall per probe).

Scoring candidates is most of the search time once they number thousands: each is a
random read of a row. So when there are more than ``rerank`` of them, they are first
scored on an int8 copy of the vectors (one 64-byte cache line per 64-d row, against four
for float32), and only the best ``rerank`` are scored again in float32; returned scores
are always float32 inner products.

Hashing looks only at directions, so the index fits ``metric="cosine"`` best; with
``metric="dot"`` the candidates are still found by angle but ranked by inner product.
On data without cluster structure :class:`~recembed.retrieval.cross_polytope.CrossPolytopeLSHIndex`
finds more neighbours per row scored.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numba
import numpy as np
import torch

from recembed.errors import CheckpointError
from recembed.retrieval.exclusion import Exclusion
from recembed.retrieval.hash_index import HashTableIndex, huge_page_copy
from recembed.retrieval.lsh_kernels import build_tables, lsh_search, pack_sign_bits
from recembed.retrieval.params import METRIC_PARAM, Param, int_check

_MAX_BITS = 30  # codes are int32
_HASH_CHUNK = 65536  # rows hashed per matmul while building


def hash_codes(vectors: torch.Tensor, planes: torch.Tensor, num_tables: int, num_bits: int) -> np.ndarray:
    """``(num_tables, N)`` int32 codes: bit ``b`` of table ``t`` is ``vectors @ planes[t * num_bits + b] > 0``."""
    num_rows = vectors.shape[0]
    codes = np.empty((num_tables, num_rows), dtype=np.int32)
    for start in range(0, num_rows, _HASH_CHUNK):
        block = vectors[start : start + _HASH_CHUNK]
        pack_sign_bits((block @ planes.T).numpy(), num_bits, codes[:, start : start + block.shape[0]])
    return codes


def prefix_bits_for(num_rows: int, num_bits: int) -> int:
    """Bits of the bucket-directory prefix: one directory slot per ~8 rows, capped by ``num_bits``.

    Eight rows (one cache line of entries) per slot keeps the directory small enough to
    stay in cache while the binary search after it stays within a line or two.
    """
    return max(0, min(num_bits, int(math.log2(max(num_rows, 1))) - 3))


def sort_tables(codes: np.ndarray, prefix_bits: int, num_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``(entries, prefix_offsets)`` from ``(L, N)`` codes (see :mod:`lsh_kernels` for the layout)."""
    num_tables, num_rows = codes.shape
    entries = np.empty((num_tables, num_rows), dtype=np.int64)
    offsets = np.empty((num_tables, (1 << prefix_bits) + 1), dtype=np.int32)
    build_tables(np.ascontiguousarray(codes, dtype=np.int32), num_bits - prefix_bits, entries, offsets)
    return entries, offsets


def auto_num_bits(num_rows: int) -> int:
    """Default code length: ``floor(log2 N) - 2`` in ``[4, 24]``, i.e. about 4 rows per bucket.

    Measured on 1M x 64 Gaussian-mixture data (benchmarks/retrieval.py): with 16 tables
    and 16 probes, 17 bits (this rule at 1M) gave recall@10 0.99; 18 bits cost ~0.01 recall
    for fewer candidates, 16 bits doubled the candidates for +0.006.
    """
    return max(4, min(24, int(math.log2(max(num_rows, 1))) - 2))


def _optional_bits(owner: str, name: str, value: Any) -> Optional[int]:
    return None if value is None else int_check(1, _MAX_BITS)(owner, name, value)


class LSHIndex(HashTableIndex):
    """Multi-probe random-hyperplane LSH with exact re-ranking of the candidates.

    Args:
        metric: ``"cosine"`` (default) or ``"dot"`` (see module docstring).
        num_tables: independent hash tables (more: higher recall, more memory, slower).
            The default 48 (automatic bits, 16 probes) measured recall@10 0.89-0.905 at
            5.2-7.1x exact's queries/s on 1M x 64 wide-cluster data and 1.00 at 4.9x on
            tight clusters (benchmarks/retrieval.py, mixture-1.0 / mixture-0.5; two runs
            on a loaded machine); 16 tables gave 0.57 on the wide clusters.
        num_bits: bits per code, 1..30 (more: smaller buckets, fewer candidates), or
            ``None`` to pick :func:`auto_num_bits` of the size whenever the tables are built.
        num_probes: buckets visited per table per query, including the query's own.
        rerank: candidates re-scored in float32 after an int8 first pass (the module
            docstring); ``k`` is used when larger. 0: score every candidate in float32
            (no int8 copy is kept; slower when candidates are many).
        seed: seed of the random hyperplanes; same seed and data, same index.

    Memory: ``N * num_tables * 8`` bytes of tables and ``N * (D + 4)`` of int8 copy
    (when ``rerank > 0``) on top of the ``N * D * 4`` of vectors.
    Tables are built at the first search after vectors were added (hashing all of them
    again), so add in large batches.

    Example:
        >>> index = LSHIndex(num_tables=8, num_bits=10, num_probes=8).build(torch.randn(5000, 32))
        >>> scores, ids = index.search(torch.randn(2, 32), k=10)
        >>> index.last_candidates.shape  # vectors scored per query, for tuning
        torch.Size([2])
    """

    kind = "lsh"
    param_specs = {
        "metric": METRIC_PARAM,
        "num_tables": Param(int_check(1, 1024), fixed_once_filled=True, doc="hash tables"),
        "num_bits": Param(_optional_bits, fixed_once_filled=True, doc="bits per hash code, None: from size"),
        "num_probes": Param(int_check(1, 1 << 16), fixed_once_filled=False, doc="buckets visited per table"),
        "rerank": Param(int_check(0, 1 << 20), fixed_once_filled=False, doc="candidates re-scored in float32, 0: all"),
        "seed": Param(int_check(0), fixed_once_filled=True, doc="seed of the hyperplanes"),
    }

    def __init__(
        self,
        *,
        metric: str = "cosine",
        num_tables: int = 48,
        num_bits: Optional[int] = None,
        num_probes: int = 16,
        rerank: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__(
            metric=metric, num_tables=num_tables, num_bits=num_bits, num_probes=num_probes, rerank=rerank, seed=seed
        )
        self._clear()

    def _clear(self) -> None:
        self._clear_vectors()
        self._planes: Optional[torch.Tensor] = None  # (num_tables * bits, D), made with the tables
        self._bits = 0
        self._prefix_bits = 0

    @property
    def code_bits(self) -> int:
        """Bits per code of the current tables (``num_bits``, or its automatic value); 0 before any search."""
        return self._bits

    def _ready(self) -> tuple[np.ndarray, np.ndarray]:
        """Join pending vectors and (re)build the tables if anything was added."""
        self._join_pending()
        if self._tables is None:
            num_rows, dim = self._vectors.shape
            bits = self.num_bits if self.num_bits is not None else auto_num_bits(num_rows)
            if self._planes is None or self._planes.shape[0] != self.num_tables * bits:
                rng = np.random.default_rng(self.seed)
                self._planes = torch.from_numpy(rng.standard_normal((self.num_tables * bits, dim), dtype=np.float32))
            codes = hash_codes(self._vectors, self._planes, self.num_tables, bits)
            self._bits = bits
            self._prefix_bits = prefix_bits_for(num_rows, bits)
            self._tables = sort_tables(codes, self._prefix_bits, bits)
        return self._tables

    def _search(self, queries: torch.Tensor, k: int, exclusion: Optional[Exclusion]) -> tuple[np.ndarray, np.ndarray]:
        entries, offsets = self._ready()
        assert self._planes is not None
        num_queries = queries.shape[0]
        b = self._buffers(num_queries, k, exclusion)
        if num_queries:
            lsh_search(
                queries.numpy(), self._planes.numpy(), self._vectors.numpy(), b.codes, b.code_scales, entries, offsets,
                self._bits, self._prefix_bits, self.num_probes, k, b.rerank, min(num_queries, 4 * numba.get_num_threads()),
                b.exclude_offsets, b.exclude_rows, b.scores, b.rows, b.candidates,
            )  # fmt: skip
        return self._finish(b)

    def _state(self) -> dict[str, np.ndarray]:
        if len(self) == 0:
            return {}
        entries, offsets = self._ready()
        assert self._planes is not None
        return {"vectors": self._vectors.numpy(), "planes": self._planes.numpy(), "entries": entries, "prefix_offsets": offsets}

    def _restore(self, state: Mapping[str, np.ndarray], count: int, path: str) -> None:
        self._clear()
        if count == 0:
            return
        planes = state.get("planes")
        if planes is None or planes.ndim != 2 or planes.shape[0] % self.num_tables:
            raise CheckpointError(f"{path}: LSH 'planes' array is missing or not (num_tables * bits, dim)")
        bits = planes.shape[0] // self.num_tables
        if (self.num_bits is not None and bits != self.num_bits) or not 1 <= bits <= _MAX_BITS:
            raise CheckpointError(f"{path}: LSH planes give {bits} bits per code, parameters say {self.num_bits}")
        expected = {
            "vectors": (count, self._dim),
            "planes": (self.num_tables * bits, self._dim),
            "entries": (self.num_tables, count),
            "prefix_offsets": (self.num_tables, (1 << prefix_bits_for(count, bits)) + 1),
        }
        self._check_shapes(state, expected, path, "LSH")
        self._vectors = huge_page_copy(torch.from_numpy(np.asarray(state["vectors"], dtype=np.float32)))
        self._planes = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))
        self._bits = bits
        self._prefix_bits = prefix_bits_for(count, bits)
        self._tables = (
            np.ascontiguousarray(state["entries"], dtype=np.int64),
            np.ascontiguousarray(state["prefix_offsets"], dtype=np.int32),
        )
