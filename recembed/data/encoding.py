"""Encoding checked raw values into table rows and model-ready floats.

:class:`FeatureEncoder` applies a :class:`~recembed.data.spec.FeatureSpec`'s row
conventions (vocabulary or hash, the missing row, dense transforms and fills) to a
:class:`~recembed.data.row_parsing.ParsedChunk` and returns a
:class:`~recembed.data.row_block.RowBlock`.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from recembed.data.columns import FactorizedTokens
from recembed.data.row_block import RowBlock
from recembed.data.row_parsing import ParsedChunk
from recembed.data.spec import FeatureSpec, SparseFeature
from recembed.data.vocab import OOV_ROW, Vocabulary, VocabularyBuilder
from recembed.errors import ConfigError, UnknownKeyError
from recembed.sparse.hashing import hash_ids, hash_strings

__all__ = ["FeatureEncoder", "build_vocabularies", "hash_tokens", "MISSING_ROW"]

# Hashed features put missing values in the same row vocabularies use for unknown ids.
MISSING_ROW = OOV_ROW
# Hashing a string costs far more than a dict lookup and categorical data is heavy-tailed,
# so each hashed feature remembers recent tokens; the cache is dropped when it grows past this.
_HASH_CACHE_LIMIT = 1 << 18


def hash_tokens(tokens: Sequence[str], num_buckets: int, seed: int = 0) -> np.ndarray:
    """Rows of present tokens under ``vocab="hash"``: ``1 + bucket`` in ``[1, num_buckets)``.

    Example:
        >>> rows = hash_tokens(["a", "b"], num_buckets=10)
        >>> bool(((rows >= 1) & (rows < 10)).all())
        True
    """
    if not tokens:
        return np.zeros(0, dtype=np.int64)
    buckets = hash_ids(hash_strings(list(tokens), seed=seed), num_buckets - 1, seed=seed)
    return buckets.numpy() + 1


def build_vocabularies(spec: FeatureSpec, chunks: Iterable[ParsedChunk]) -> dict[str, Vocabulary]:
    """One counting pass over parsed chunks -> a vocabulary per ``vocab="build"`` feature."""
    features = [f for f in spec.sparse if f.vocab == "build"]
    builders = {f.name: VocabularyBuilder(name=f.name) for f in features}
    for chunk in chunks:
        for f in features:
            column = chunk.tokens[f.name]
            if isinstance(column, FactorizedTokens):
                builders[f.name].update_counts(column.counts())
            else:
                builders[f.name].update(column[1] if f.multi_valued else column)
    return {f.name: builders[f.name].build(min_count=f.min_count) for f in features}


class FeatureEncoder:
    """Maps parsed values to rows and floats, following a spec.

    Args:
        spec: the features.
        vocabularies: a :class:`Vocabulary` for every ``vocab="build"`` feature.
    """

    def __init__(self, spec: FeatureSpec, vocabularies: Optional[Mapping[str, Vocabulary]] = None):
        self.spec = spec
        self.vocabularies = dict(vocabularies or {})
        missing = [n for n in spec.needs_vocabularies() if n not in self.vocabularies]
        if missing:
            raise ConfigError(
                f"features {missing} use vocab='build' but have no vocabulary; "
                "build them with build_vocabularies() or a reader's fit_vocabularies()"
            )
        unknown = [n for n in self.vocabularies if n not in spec.sparse_names]
        if unknown:
            raise UnknownKeyError(
                f"vocabularies given for {unknown}, which are not sparse features; "
                f"sparse features: {spec.sparse_names}"
            )
        self._caches: dict[str, dict[str, int]] = {f.name: {} for f in spec.sparse}
        dense = spec.dense
        self._log1p = np.array([f.transform == "log1p" for f in dense], dtype=bool)
        self._fill = np.array([float(f.fill) for f in dense], dtype=np.float64)

    @property
    def num_rows(self) -> dict[str, int]:
        """Table rows each sparse feature needs."""
        return self.spec.num_rows(self.vocabularies)

    def _rows(self, feature: SparseFeature, tokens: Sequence[str]) -> np.ndarray:
        """Rows of ``tokens`` (``""`` = missing) as an ``(N,)`` int64 array."""
        if isinstance(tokens, FactorizedTokens):
            return self._rows(feature, tokens.uniques)[tokens.codes]
        # Map each distinct token once (categorical data repeats a lot), then look the
        # whole column up through a dict at C speed.
        distinct = dict.fromkeys(tokens)
        if feature.vocab == "build":
            vocab = self.vocabularies[feature.name]  # "" is never a token: it maps to row 0
            mapping = dict(zip(distinct, vocab.lookup(list(distinct)).tolist()))
        else:
            mapping = self._caches[feature.name]
            new = [t for t in distinct if t not in mapping]
            if new:
                if len(mapping) + len(new) > _HASH_CACHE_LIMIT:
                    mapping.clear()
                    new = list(distinct)
                present = [t for t in new if t != ""]
                mapping.update(zip(present, hash_tokens(present, feature.num_buckets, feature.hash_seed).tolist()))
                mapping[""] = MISSING_ROW
        return np.fromiter(map(mapping.__getitem__, tokens), dtype=np.int64, count=len(tokens))

    def encode_sparse(self, feature: SparseFeature, column) -> tuple[np.ndarray, np.ndarray]:
        """``(lengths, rows)`` of one feature's parsed column (see ParsedChunk.tokens)."""
        if feature.multi_valued:
            lengths, flat = column
            return lengths, self._rows(feature, flat)
        return np.ones(len(column), dtype=np.int64), self._rows(feature, column)

    def encode_dense(self, dense: np.ndarray) -> np.ndarray:
        """``(n, n_dense)`` float32: transform present values, put ``fill`` in empty (NaN) fields."""
        x = np.array(dense, dtype=np.float64)
        missing = np.isnan(x)
        if self._log1p.any():
            cols = self._log1p
            x[:, cols] = np.log1p(np.maximum(x[:, cols], 0.0))
        x = np.where(missing, self._fill, x)
        return x.astype(np.float32)

    def encode(self, chunk: ParsedChunk) -> RowBlock:
        """The chunk's rows as a :class:`RowBlock` (sparse keys in spec order)."""
        sparse = {f.name: self.encode_sparse(f, chunk.tokens[f.name]) for f in self.spec.sparse}
        return RowBlock(
            labels=chunk.labels.astype(np.float32),
            dense=self.encode_dense(chunk.dense),
            sparse=sparse,
            timestamps=chunk.timestamps,
        )

