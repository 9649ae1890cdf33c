"""The contract every index follows: build/add, search with exclusions, save/load, params.

Subclasses implement five small hooks (``_clear``, ``_add``, ``_search``, ``_state``,
``_restore``); this class does everything users can get wrong: it checks and converts
inputs, normalises for the cosine metric, keeps the external ids, resolves exclusions,
maps internal rows back to ids, and guards the parameters.

Storage model: the index assigns rows ``0..len-1`` in insertion order; ``ids[row]`` is the
user's id for that row. Subclasses only ever see rows.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Mapping, Optional, TypeVar

import numpy as np
import torch

from recembed.errors import CheckpointError, ConfigError, InvalidIdError
from recembed.retrieval._inputs import ArrayLike, as_float_matrix, as_id_array, check_k, check_new_ids, normalize_rows
from recembed.retrieval.exclusion import Exclusion, build_exclusion
from recembed.retrieval.params import Param
from recembed.retrieval.persistence import PathLike, read_index_file, require_arrays, write_index_file

IndexT = TypeVar("IndexT", bound="VectorIndex")

_REGISTRY: dict[str, type["VectorIndex"]] = {}


class VectorIndex(ABC):
    """Abstract nearest-neighbour index over ``(N, D)`` vectors with int64 ids.

    Scores are inner products (``metric="dot"``) or cosine similarities
    (``metric="cosine"``: vectors and queries are scaled to unit length); higher is better.

    Example:
        >>> index = ExactIndex(metric="cosine").build(torch.randn(100, 8))
        >>> scores, ids = index.search(torch.randn(3, 8), k=5, exclude=[[1], [], [2, 3]])
        >>> scores.shape, ids.dtype
        (torch.Size([3, 5]), torch.int64)
    """

    kind: ClassVar[str] = ""
    param_specs: ClassVar[Mapping[str, Param]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _REGISTRY[cls.kind] = cls

    def __init__(self, **params: Any) -> None:
        object.__setattr__(self, "_params", {})
        self._check_and_store(params, initial=True)
        self._dim: Optional[int] = None
        self._fixed_dim: Optional[int] = None
        self._ids = np.empty(0, dtype=np.int64)
        self._ids_are_rows = True  # ids == arange(len): row lookup needs no search
        self._sorted_ids: Optional[tuple[np.ndarray, np.ndarray]] = None  # (sorted ids, rows), lazy

    # ------------------------------------------------------------------ parameters
    def get_params(self) -> dict[str, Any]:
        """The current tuning parameters, as accepted by the constructor."""
        return dict(self._params)

    def set_params(self: IndexT, **params: Any) -> IndexT:
        """Change tuning parameters; unknown names and bad values raise :class:`ConfigError`.

        Construction parameters (e.g. ``num_tables``) can change only while the index is
        empty; search parameters (e.g. ``num_probes``) can change any time.

        Example:
            >>> LSHIndex().set_params(num_probes=16).num_probes
            16
        """
        self._check_and_store(params, initial=False)
        return self

    def _check_and_store(self, params: Mapping[str, Any], initial: bool) -> None:
        owner = type(self).__name__
        for name in params:
            if name not in self.param_specs:
                raise ConfigError(
                    f"{owner} has no parameter {name!r}; valid parameters: {sorted(self.param_specs)}"
                )
        checked = {name: self.param_specs[name].check(owner, name, value) for name, value in params.items()}
        if not initial and len(self) > 0:
            fixed = [n for n in checked if self.param_specs[n].fixed_once_filled and checked[n] != self._params[n]]
            if fixed:
                raise ConfigError(
                    f"{owner}: {fixed} are construction parameters and the index already holds "
                    f"{len(self)} vectors; create a new index with the new values and build it"
                )
        previous = dict(self._params)
        self._params.update(checked)
        if not initial:
            try:
                self._params_changed(set(checked))
            except Exception:
                self._params = previous  # a refused value must not linger
                raise

    def _params_changed(self, names: set[str]) -> None:
        """Hook: react to changed search parameters (e.g. push them to a native index)."""

    def __getattr__(self, name: str) -> Any:
        params = self.__dict__.get("_params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        elif name in self.param_specs:
            self.set_params(**{name: value})
        elif isinstance(getattr(type(self), name, None), property):
            raise ConfigError(f"{type(self).__name__}.{name} is read-only")
        else:
            raise ConfigError(
                f"{type(self).__name__} has no parameter {name!r}; valid parameters: {sorted(self.param_specs)}"
            )

    # ------------------------------------------------------------------ contents
    def __len__(self) -> int:
        return int(self._ids.shape[0])

    @property
    def dim(self) -> Optional[int]:
        """Vector dimension, or ``None`` before the first vectors arrive."""
        return self._dim if self._dim is not None else self._fixed_dim

    @property
    def ids(self) -> torch.Tensor:
        """``(N,)`` int64 ids in insertion order (a copy)."""
        return torch.from_numpy(self._ids.copy())

    def __repr__(self) -> str:
        params = ", ".join(f"{name}={value!r}" for name, value in self._params.items())
        return f"{type(self).__name__}({params}) with {len(self)} vectors of dim {self.dim}"

    def build(self: IndexT, vectors: ArrayLike, ids: Optional[ArrayLike] = None) -> IndexT:
        """Replace the contents with ``vectors`` ``(N, D)`` and ``ids`` ``(N,)`` (default ``arange(N)``).

        Inputs are checked before anything is dropped, so a refused build leaves the index
        as it was. Returns ``self`` so ``index = ExactIndex().build(x)`` reads naturally.
        """
        matrix, new_ids = self._checked_batch(vectors, ids, start=0, dim=self._fixed_dim, existing=False)
        self._clear()
        self._dim = None
        self._ids = np.empty(0, dtype=np.int64)
        self._ids_are_rows = True
        self._sorted_ids = None
        self._append(matrix, new_ids)
        return self

    def add(self, vectors: ArrayLike, ids: Optional[ArrayLike] = None) -> None:
        """Append ``vectors`` ``(n, D)`` with ``ids`` ``(n,)`` int64.

        ``ids`` defaults to ``arange(len(self), len(self) + n)``. Ids must be >= 0 and not
        already in the index (:class:`InvalidIdError`).
        """
        matrix, new_ids = self._checked_batch(vectors, ids, start=len(self), dim=self.dim, existing=True)
        self._append(matrix, new_ids)

    def _checked_batch(
        self, vectors: ArrayLike, ids: Optional[ArrayLike], start: int, dim: Optional[int], existing: bool
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Validate a batch: float32 ``(n, dim)`` vectors (normalised for cosine) and fresh ids."""
        matrix = as_float_matrix(vectors, "vectors", dim, copy=self.metric == "dot")  # cosine copies anyway
        if ids is None:
            new_ids = np.arange(start, start + matrix.shape[0], dtype=np.int64)
        else:
            new_ids = as_id_array(ids, "ids", expected_len=matrix.shape[0])
        check_new_ids(new_ids)
        clashes = new_ids[self._rows_of(new_ids) >= 0] if existing else new_ids[:0]
        if clashes.size:
            raise InvalidIdError(
                f"{clashes.size} id(s) are already in the index, e.g. {clashes[:5].tolist()}; ids must be unique"
            )
        if self.metric == "cosine":
            matrix = normalize_rows(matrix)
        return matrix, new_ids

    def _append(self, matrix: torch.Tensor, new_ids: np.ndarray) -> None:
        start = len(self)
        self._add(matrix)
        self._dim = matrix.shape[1]
        self._ids_are_rows = self._ids_are_rows and np.array_equal(
            new_ids, np.arange(start, start + new_ids.shape[0], dtype=np.int64)
        )
        self._ids = np.concatenate([self._ids, new_ids])
        self._sorted_ids = None

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Internal rows of ``ids`` (int64 array), -1 for ids not in the index."""
        size = len(self)
        if self._ids_are_rows:
            return np.where((ids >= 0) & (ids < size), ids, -1)
        if self._sorted_ids is None:
            order = np.argsort(self._ids, kind="stable")
            self._sorted_ids = (self._ids[order], order.astype(np.int64))
        sorted_ids, rows = self._sorted_ids
        position = np.searchsorted(sorted_ids, ids).clip(max=size - 1)
        return np.where(sorted_ids[position] == ids, rows[position], -1)

    # ------------------------------------------------------------------ search
    def search(
        self, queries: ArrayLike, k: int, exclude: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` best vectors for each query.

        Args:
            queries: ``(Q, D)`` float tensor or array.
            k: results per query, ``1 <= k <= len(self)``.
            exclude: ids to leave out per query (see :mod:`recembed.retrieval.exclusion`
                for the accepted forms); ids not in the index are ignored.

        Returns:
            ``(scores, ids)``: ``(Q, k)`` float32 and ``(Q, k)`` int64 tensors, best first.
            Where fewer than ``k`` results exist (exclusions, or an approximate index
            finding fewer candidates) the row ends with score ``-inf`` and id ``-1``.
        """
        k = check_k(k, len(self))
        matrix = as_float_matrix(queries, "queries", self.dim)
        if self.metric == "cosine":
            matrix = normalize_rows(matrix)
        exclusion = None
        if exclude is not None:
            exclusion = build_exclusion(exclude, matrix.shape[0], self._rows_of, len(self))
        scores, rows = self._search(matrix, k, exclusion)
        scores = np.asarray(scores, dtype=np.float32)
        rows = np.asarray(rows, dtype=np.int64)
        ids = np.where(rows >= 0, self._ids[rows.clip(min=0)], -1)
        return torch.from_numpy(np.ascontiguousarray(scores)), torch.from_numpy(ids)

    # ------------------------------------------------------------------ persistence
    def save(self, path: PathLike) -> None:
        """Write the index to one ``.npz`` file at ``path`` (atomically; no pickle)."""
        meta = {"kind": self.kind, "params": self._params, "dim": self.dim, "count": len(self)}
        arrays = {"ids": self._ids, **{f"state.{name}": array for name, array in self._state().items()}}
        write_index_file(path, meta, arrays)

    @classmethod
    def load(cls: type[IndexT], path: PathLike) -> IndexT:
        """Read an index written by :meth:`save`.

        ``VectorIndex.load`` returns whichever index class wrote the file;
        ``LSHIndex.load`` insists on an LSH index (:class:`CheckpointError` otherwise).
        """
        meta, arrays = read_index_file(path)
        kind = meta.get("kind")
        if kind not in _REGISTRY:
            import recembed.retrieval  # noqa: F401  (registers every index class)
        target = _REGISTRY.get(kind)
        if target is None:
            raise CheckpointError(f"{os.fspath(path)}: unknown index kind {kind!r}; known: {sorted(_REGISTRY)}")
        if not issubclass(target, cls):
            raise CheckpointError(f"{os.fspath(path)}: holds a {target.__name__}, not a {cls.__name__}")
        require_arrays(path, arrays, "ids")
        if not isinstance(meta.get("params"), dict):
            raise CheckpointError(f"{os.fspath(path)}: metadata lacks the index parameters")
        try:
            index = target(**meta["params"])
        except (TypeError, ConfigError) as exc:
            raise CheckpointError(f"{os.fspath(path)}: stored parameters are invalid ({exc})") from exc
        ids = arrays.pop("ids").astype(np.int64)
        state = {name[len("state."):]: array for name, array in arrays.items() if name.startswith("state.")}
        if len(ids) and meta.get("dim") is None:
            raise CheckpointError(f"{os.fspath(path)}: holds {len(ids)} vectors but no dimension")
        if len(ids):
            index._dim = meta.get("dim")
        else:
            index._fixed_dim = meta.get("dim")  # an empty index keeps the dimension it was made for
        index._restore(state, count=len(ids), path=os.fspath(path))
        index._ids = ids
        index._ids_are_rows = bool(np.array_equal(ids, np.arange(len(ids))))
        return index

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _clear(self) -> None:
        """Drop all stored vectors (``build`` calls this before adding)."""

    @abstractmethod
    def _add(self, vectors: torch.Tensor) -> None:
        """Store ``(n, D)`` float32 vectors (already normalised for cosine) as the next rows."""

    @abstractmethod
    def _search(
        self, queries: torch.Tensor, k: int, exclusion: Optional[Exclusion]
    ) -> tuple[Any, Any]:
        """Return ``(Q, k)`` float32 scores and int64 rows (-1 / -inf padded), best first.

        ``queries`` are checked float32 (normalised for cosine); ``1 <= k <= len(self)``.
        """

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """Arrays that, with the parameters and ids, recreate the index exactly."""

    @abstractmethod
    def _restore(self, state: Mapping[str, np.ndarray], count: int, path: str) -> None:
        """Inverse of :meth:`_state`; raise :class:`CheckpointError` (naming ``path``) if bad."""


def index_kinds() -> dict[str, type[VectorIndex]]:
    """Registered index classes by their saved ``kind`` name."""
    return dict(_REGISTRY)
