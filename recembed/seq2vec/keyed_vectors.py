"""KeyedVectors: trained vectors looked up by key, apart from any training state.

Example:
    >>> import numpy as np
    >>> kv = KeyedVectors(["cat", "dog", "car"], np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32))
    >>> kv["cat"].shape, "dog" in kv, len(kv)
    ((2,), True, 3)
    >>> [key for key, _ in kv.most_similar("cat", topn=1)]
    ['dog']
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from recembed.errors import ConfigError, ShapeMismatchError, UnknownKeyError
from recembed.seq2vec import formats
from recembed.seq2vec.vocabulary import plain_key

__all__ = ["KeyedVectors"]

#: A query term of :meth:`KeyedVectors.most_similar`: a key or a raw ``(D,)`` vector.
Query = Hashable | np.ndarray


class KeyedVectors:
    """A ``(N, D)`` float32 matrix whose rows are named by keys (str or int).

    Attributes:
        vectors: ``(N, D)`` float32 array (may be a read-only memory map after ``load``).
        index_to_key: the ``N`` keys; key ``index_to_key[i]`` owns ``vectors[i]``.
        key_to_index: key -> row.
    """

    def __init__(self, keys: Sequence[Hashable], vectors: np.ndarray, *, key_to_index: dict | None = None) -> None:
        vectors = np.asanyarray(vectors)  # keeps a np.memmap a memmap
        if vectors.ndim != 2:
            raise ShapeMismatchError(f"vectors must be 2-D (N, D), got shape {vectors.shape}")
        if vectors.dtype != np.float32:
            vectors = vectors.astype(np.float32)
        if len(keys) != vectors.shape[0]:
            raise ShapeMismatchError(f"{len(keys)} keys for {vectors.shape[0]} vector rows")
        self.index_to_key = list(keys) if not isinstance(keys, list) else keys
        self.key_to_index = key_to_index if key_to_index is not None else {
            plain_key(k): i for i, k in enumerate(self.index_to_key)}
        if len(self.key_to_index) != len(self.index_to_key):
            raise ConfigError(f"keys are not unique: {len(self.index_to_key)} keys, "
                              f"{len(self.key_to_index)} distinct")
        self.vectors = vectors
        self._normed: np.ndarray | None = None

    # -- lookups ---------------------------------------------------------------------------
    @property
    def vector_size(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.index_to_key)

    def __contains__(self, key: Hashable) -> bool:
        try:
            return key in self.key_to_index
        except TypeError:  # unhashable
            return False

    def __repr__(self) -> str:
        return f"KeyedVectors(keys={len(self)}, vector_size={self.vector_size})"

    def get_index(self, key: Hashable, default: int | None = None) -> int:
        """Row of ``key``; ``default`` if given and the key is absent, else UnknownKeyError."""
        index = self.key_to_index.get(key) if key.__hash__ is not None else None
        if index is not None:
            return index
        if default is not None:
            return default
        raise UnknownKeyError(f"key {key!r} not present in KeyedVectors of {len(self)} keys")

    def get_vector(self, key: Hashable, norm: bool = False) -> np.ndarray:
        """``(D,)`` vector of ``key`` (a view into ``vectors``; unit length if ``norm``)."""
        index = self.get_index(key)
        return self.get_normed_vectors()[index] if norm else self.vectors[index]

    def __getitem__(self, key_or_keys: Hashable | Iterable[Hashable]) -> np.ndarray:
        """``kv[key]`` -> ``(D,)``; ``kv[[k1, k2]]`` -> ``(2, D)`` (a copy)."""
        if isinstance(key_or_keys, (list, tuple, np.ndarray)):
            return self.vectors[[self.get_index(k) for k in key_or_keys]]
        return self.get_vector(key_or_keys)

    # -- similarity ------------------------------------------------------------------------
    def get_normed_vectors(self) -> np.ndarray:
        """``(N, D)`` float32 rows scaled to unit L2 norm (zero rows stay zero); cached."""
        if self._normed is None:
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self._normed = (self.vectors / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)
        return self._normed

    def invalidate_norms(self) -> None:
        """Forget the cached unit vectors (call after changing ``vectors`` in place)."""
        self._normed = None

    def _unit_query(self, term: Query) -> tuple[np.ndarray, int | None]:
        if isinstance(term, np.ndarray):
            term = term.astype(np.float32).reshape(-1)
            if term.shape[0] != self.vector_size:
                raise ShapeMismatchError(f"query vector has dimension {term.shape[0]}, "
                                         f"the vectors have {self.vector_size}")
            norm = float(np.linalg.norm(term))
            return (term / norm if norm > 0 else term), None
        index = self.get_index(term)
        return self.get_normed_vectors()[index], index

    def most_similar(
        self,
        positive: Query | Sequence[Query] | None = None,
        negative: Query | Sequence[Query] | None = None,
        topn: int | None = 10,
    ) -> list[tuple[Hashable, float]] | np.ndarray:
        """Keys closest by cosine to the mean of ``positive`` minus the mean of ``negative``.

        Each term is a key or a ``(D,)`` vector; query keys are excluded from the result.

        Returns:
            up to ``topn`` ``(key, cosine)`` pairs, most similar first; with
            ``topn=None``, the ``(N,)`` cosine of every key instead.

        Example:
            >>> kv.most_similar(positive=["king", "woman"], negative=["man"], topn=3)  # doctest: +SKIP
        """
        positive = _as_terms(positive)
        negative = _as_terms(negative)
        if not positive and not negative:
            raise ConfigError("most_similar needs at least one positive or negative key or vector")
        if topn is not None and (not isinstance(topn, (int, np.integer)) or topn < 1):
            raise ConfigError(f"topn must be a positive int or None, got {topn!r}")
        query = np.zeros(self.vector_size, dtype=np.float32)
        exclude: set[int] = set()
        for sign, terms in ((1.0, positive), (-1.0, negative)):
            for term in terms:
                unit, index = self._unit_query(term)
                query += sign * unit
                if index is not None:
                    exclude.add(index)
        norm = float(np.linalg.norm(query))
        if norm > 0:
            query /= norm
        scores = self.get_normed_vectors() @ query
        if topn is None:
            return scores
        wanted = min(topn + len(exclude), scores.shape[0])
        candidates = np.argpartition(-scores, wanted - 1)[:wanted] if wanted < scores.shape[0] else np.arange(scores.shape[0])
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
        result = [(self.index_to_key[i], float(scores[i])) for i in candidates.tolist() if i not in exclude]
        return result[:topn]

    def similarity(self, key1: Hashable, key2: Hashable) -> float:
        """Cosine similarity of two keys."""
        normed = self.get_normed_vectors()
        return float(normed[self.get_index(key1)] @ normed[self.get_index(key2)])

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write ``path`` (JSON: keys and shape) and ``path + '.vectors.npy'``, atomically each."""
        formats.save_native(path, self.index_to_key, self.vectors)

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: str | None = None) -> KeyedVectors:
        """Load what :meth:`save` wrote; ``mmap="r"`` maps the vectors read-only instead of reading them."""
        keys, vectors = formats.load_native(path, mmap=mmap)
        return cls(keys, vectors)

    def save_word2vec_format(self, path: str | os.PathLike, binary: bool = False) -> None:
        """Write the word2vec C tool's text (or binary) format, readable by gensim."""
        formats.save_word2vec(path, self.index_to_key, self.vectors, binary=binary)

    @classmethod
    def load_word2vec_format(cls, path: str | os.PathLike, binary: bool = False) -> KeyedVectors:
        """Read the word2vec text (or binary) format; keys come back as str."""
        keys, vectors = formats.load_word2vec(path, binary=binary)
        return cls(keys, vectors)

    # -- into recembed tables --------------------------------------------------------------
    def to_pretrained_weight(self):
        """``(torch.FloatTensor (N, D), key_to_index)`` for initialising an embedding table.

        Row ``key_to_index[key]`` of the tensor is ``self[key]``; the tensor owns its memory.
        """
        import torch

        return torch.tensor(np.asarray(self.vectors, dtype=np.float32)), dict(self.key_to_index)

    def to_embedding_bag(self, freeze: bool = True, mode: str = "mean"):
        """A :class:`recembed.tables.EmbeddingBag` holding these vectors as its weight.

        Look rows up with ``kv.key_to_index``. Example::

            bag = kv.to_embedding_bag(freeze=True, mode="mean")
        """
        from recembed.tables import EmbeddingBag  # the tables layer sits beside seq2vec

        weight, _ = self.to_pretrained_weight()
        return EmbeddingBag.from_pretrained(weight, freeze=freeze, mode=mode)


def _as_terms(terms: Query | Sequence[Query] | None) -> list[Query]:
    if terms is None:
        return []
    if isinstance(terms, np.ndarray):
        if terms.ndim == 1:
            return [terms]
        if terms.ndim == 2:
            return list(terms)
        raise ShapeMismatchError(f"a query array must be (D,) or (K, D), got shape {terms.shape}")
    if isinstance(terms, (list, tuple)):
        return list(terms)
    return [terms]
