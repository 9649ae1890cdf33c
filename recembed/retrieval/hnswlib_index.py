"""Adapter: an hnswlib HNSW graph behind the :class:`VectorIndex` contract.

hnswlib is optional (``pip install 'recembed[hnswlib]'``) and imported on first use. The
graph uses hnswlib's inner-product space (vectors are unit-normalised first for
``metric="cosine"``), labels are internal rows, and exclusions are handled by asking for
``k + (largest exclusion list)`` results and filtering.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Mapping, Optional

import numpy as np
import torch

from recembed.errors import CheckpointError, require
from recembed.retrieval.base import VectorIndex
from recembed.retrieval.exclusion import Exclusion, overfetch_count, trim_results
from recembed.retrieval.params import METRIC_PARAM, Param, int_check

_MIN_CAPACITY = 1024


def _hnswlib() -> Any:
    return require("hnswlib", "hnswlib", "HnswlibIndex")


class HnswlibIndex(VectorIndex):
    """Hierarchical navigable small-world graph search (Malkov & Yashunin, 2018) via hnswlib.

    Args:
        M: graph out-degree (more: higher recall, more memory, slower build).
        ef_construction: candidate list size while inserting.
        ef_search: candidate list size while searching (raised to the number of results
            fetched when that is larger).
        metric: ``"dot"`` or ``"cosine"``.
        seed: hnswlib's random seed for level assignment.

    Scores are ``1 - hnswlib distance``, i.e. the inner product (float32 rounding aside).

    Example:
        >>> index = HnswlibIndex(M=16, ef_search=64).build(torch.randn(1000, 16))
        >>> scores, ids = index.search(torch.randn(2, 16), k=5)
    """

    kind = "hnswlib"
    param_specs = {
        "M": Param(int_check(2, 4096), fixed_once_filled=True, doc="graph out-degree"),
        "ef_construction": Param(int_check(1), fixed_once_filled=True, doc="insert-time candidate list"),
        "ef_search": Param(int_check(1), fixed_once_filled=False, doc="search-time candidate list"),
        "metric": METRIC_PARAM,
        "seed": Param(int_check(0), fixed_once_filled=True, doc="level-assignment seed"),
    }

    def __init__(
        self, *, M: int = 16, ef_construction: int = 200, ef_search: int = 64, metric: str = "dot", seed: int = 100
    ) -> None:
        super().__init__(M=M, ef_construction=ef_construction, ef_search=ef_search, metric=metric, seed=seed)
        self._index: Any = None

    @property
    def native(self) -> Any:
        """The underlying ``hnswlib.Index`` (``None`` until vectors are added)."""
        return self._index

    def _clear(self) -> None:
        self._index = None

    def _add(self, vectors: torch.Tensor) -> None:
        start, count = len(self), vectors.shape[0]
        if self._index is None:
            self._index = _hnswlib().Index(space="ip", dim=vectors.shape[1])
            self._index.init_index(
                max_elements=max(count, _MIN_CAPACITY), ef_construction=self.ef_construction, M=self.M, random_seed=self.seed
            )
        elif start + count > self._index.get_max_elements():
            self._index.resize_index(max(start + count, 2 * self._index.get_max_elements()))
        if count:
            self._index.add_items(vectors.numpy(), np.arange(start, start + count, dtype=np.int64))

    def _search(self, queries: torch.Tensor, k: int, exclusion: Optional[Exclusion]) -> tuple[np.ndarray, np.ndarray]:
        fetch = overfetch_count(k, exclusion, len(self))
        self._index.set_ef(max(self.ef_search, fetch))
        rows, distances = self._index.knn_query(queries.numpy(), k=fetch)
        return trim_results(1.0 - distances, rows.astype(np.int64), exclusion, k)

    def _state(self) -> dict[str, np.ndarray]:
        if self._index is None:
            return {}
        with tempfile.TemporaryDirectory() as folder:
            file = os.path.join(folder, "graph.bin")
            self._index.save_index(file)
            with open(file, "rb") as stream:
                return {"hnsw_graph": np.frombuffer(stream.read(), dtype=np.uint8)}

    def _restore(self, state: Mapping[str, np.ndarray], count: int, path: str) -> None:
        self._index = None
        if count == 0:
            return
        if "hnsw_graph" not in state:
            raise CheckpointError(f"{path}: hnswlib index file lacks the 'hnsw_graph' array")
        index = _hnswlib().Index(space="ip", dim=self._dim)
        with tempfile.TemporaryDirectory() as folder:
            file = os.path.join(folder, "graph.bin")
            with open(file, "wb") as stream:
                stream.write(np.ascontiguousarray(state["hnsw_graph"], dtype=np.uint8).tobytes())
            try:
                index.load_index(file, max_elements=count)
            except RuntimeError as exc:
                raise CheckpointError(f"{path}: hnswlib could not read the stored graph: {exc}") from exc
        if index.get_current_count() != count:
            raise CheckpointError(f"{path}: stored graph has {index.get_current_count()} vectors, expected {count}")
        self._index = index
