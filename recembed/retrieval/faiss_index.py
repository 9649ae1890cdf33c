"""Adapter: any faiss index (by factory string) behind the :class:`VectorIndex` contract.

faiss is optional (``pip install 'recembed[faiss]'``) and imported on first use.
The faiss index stores rows ``0..N-1``; this adapter maps them to the user's ids, and
handles exclusions by asking faiss for ``k + (largest exclusion list)`` results and
filtering. Indexes are built for inner product; specs faiss offers only for L2 (e.g.
``"LSH"``, which ranks by Hamming distance of sign codes) are built for L2. Scores are
faiss's similarities for inner-product indexes and the negated distances otherwise, so
that higher is always better.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np
import torch

from recembed.errors import CheckpointError, ConfigError, require
from recembed.retrieval.base import VectorIndex
from recembed.retrieval.exclusion import Exclusion, overfetch_count, trim_results
from recembed.retrieval.params import METRIC_PARAM, Param, number_mapping_check, str_check


def _faiss() -> Any:
    return require("faiss", "faiss", "FaissIndex")


class FaissIndex(VectorIndex):
    """A faiss index built from a factory string, e.g. ``"Flat"``, ``"HNSW32"``, ``"LSH"``, ``"IVF256,Flat"``.

    Args:
        spec: a faiss ``index_factory`` string; the metric is inner product (vectors are
            unit-normalised first for ``metric="cosine"``).
        metric: ``"dot"`` or ``"cosine"``.
        search_params: faiss run-time parameters, e.g. ``{"efSearch": 128}`` for HNSW or
            ``{"nprobe": 16}`` for IVF; set through ``faiss.ParameterSpace``.

    Indexes that need training (IVF, PQ) are trained on the first batch added.

    Example:
        >>> index = FaissIndex(spec="HNSW32", search_params={"efSearch": 64}).build(torch.randn(1000, 16))
        >>> scores, ids = index.search(torch.randn(2, 16), k=5, exclude=[[0], [1, 2]])
    """

    kind = "faiss"
    param_specs = {
        "spec": Param(str_check, fixed_once_filled=True, doc="faiss index_factory string"),
        "metric": METRIC_PARAM,
        "search_params": Param(number_mapping_check, fixed_once_filled=False, doc="faiss run-time parameters"),
    }

    def __init__(self, *, spec: str = "Flat", metric: str = "dot", search_params: Optional[Mapping[str, float]] = None) -> None:
        super().__init__(spec=spec, metric=metric, search_params=search_params)
        self._index: Any = None

    @property
    def native(self) -> Any:
        """The underlying ``faiss.Index`` (``None`` until vectors are added)."""
        return self._index

    def _clear(self) -> None:
        self._index = None

    def _create(self, dim: int) -> Any:
        faiss = _faiss()
        try:
            index = faiss.index_factory(dim, self.spec, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as ip_error:
            # Some specs exist only for L2 (e.g. "LSH", which then ranks by Hamming distance).
            try:
                index = faiss.index_factory(dim, self.spec, faiss.METRIC_L2)
            except RuntimeError:
                raise ConfigError(
                    f"FaissIndex: faiss cannot build spec {self.spec!r} for dim {dim}: {ip_error}"
                ) from ip_error
        self._apply_search_params(index)
        return index

    def _apply_search_params(self, index: Any) -> None:
        space = _faiss().ParameterSpace()
        for name, value in self.search_params.items():
            try:
                space.set_index_parameter(index, name, value)
            except RuntimeError as exc:
                raise ConfigError(
                    f"FaissIndex(spec={self.spec!r}): faiss does not accept search parameter {name}={value!r}: {exc}"
                ) from exc

    def _params_changed(self, names: set[str]) -> None:
        if "search_params" in names and self._index is not None:
            self._apply_search_params(self._index)

    def _add(self, vectors: torch.Tensor) -> None:
        if self._index is None:
            self._index = self._create(vectors.shape[1])
        data = vectors.numpy()
        if not self._index.is_trained:
            try:
                self._index.train(data)
            except RuntimeError as exc:
                raise ConfigError(
                    f"FaissIndex: training spec {self.spec!r} on {data.shape[0]} vectors failed: {exc}"
                ) from exc
        self._index.add(data)

    def _search(self, queries: torch.Tensor, k: int, exclusion: Optional[Exclusion]) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        fetch = overfetch_count(k, exclusion, len(self))
        distances, rows = self._index.search(queries.numpy(), fetch)
        scores = distances if self._index.metric_type == faiss.METRIC_INNER_PRODUCT else -distances
        return trim_results(scores, rows, exclusion, k)

    def _state(self) -> dict[str, np.ndarray]:
        if self._index is None:
            return {}
        return {"faiss_index": np.asarray(_faiss().serialize_index(self._index), dtype=np.uint8)}

    def _restore(self, state: Mapping[str, np.ndarray], count: int, path: str) -> None:
        self._index = None
        if count == 0:
            return
        if "faiss_index" not in state:
            raise CheckpointError(f"{path}: faiss index file lacks the 'faiss_index' array")
        try:
            index = _faiss().deserialize_index(np.ascontiguousarray(state["faiss_index"], dtype=np.uint8))
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: faiss could not read the stored index: {exc}") from exc
        if index.ntotal != count or index.d != self._dim:
            raise CheckpointError(
                f"{path}: stored faiss index has {index.ntotal} vectors of dim {index.d}, "
                f"expected {count} of dim {self._dim}"
            )
        self._apply_search_params(index)
        self._index = index
