"""Feature specs: which columns of a table become sparse ids, dense floats and the label.

A spec is plain configuration, checked when it is made. The rows each sparse feature
needs (for its embedding table) come from :meth:`FeatureSpec.num_rows`.

Row conventions, the same for every reader:

- ``vocab="build"``: row 0 is for unknown/rare tokens and missing values, known
  tokens take rows 1.. by decreasing frequency (see :mod:`recembed.data.vocab`).
  The table needs ``len(vocabulary)`` rows.
- ``vocab="hash"``: row 0 is for missing values; a present token goes to
  ``1 + hash(token) % (num_buckets - 1)``. The table needs ``num_buckets`` rows.
- A single-valued feature (no ``separator``) always has one id per example, the
  missing row when the field is empty. A multi-valued feature (``separator`` set)
  has one id per non-empty token; an empty field gives an empty bag (length 0).

Example:
    >>> spec = FeatureSpec(
    ...     sparse=[SparseFeature("user", "userId"),
    ...             SparseFeature("genres", separator="|", vocab="hash", num_buckets=64)],
    ...     dense=[DenseFeature("age", transform="log1p")],
    ...     label=LabelSpec("clicked"))
    >>> spec.columns()
    ['clicked', 'age', 'userId', 'genres']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from recembed.errors import ConfigError, UnknownKeyError

__all__ = ["SparseFeature", "DenseFeature", "LabelSpec", "FeatureSpec", "VOCAB_KINDS"]

VOCAB_KINDS = ("build", "hash")
_TRANSFORMS = (None, "log1p")
_LABEL_KINDS = ("binary", "rating")


def _check_name(owner: str, name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{owner}: name must be a non-empty string, got {name!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SparseFeature:
    """A categorical feature read from ``column`` (defaults to ``name``).

    Args:
        name: feature name (the key in the batch's KeyedJaggedTensor).
        column: source column; ``None`` means the same as ``name``.
        separator: set for multi-id columns such as genres ``"a|b|c"``.
        vocab: ``"build"`` (a frequency-ordered vocabulary from the data) or ``"hash"``.
        num_buckets: table rows for ``vocab="hash"`` (>= 2; row 0 is the missing row).
        min_count: ``vocab="build"`` keeps tokens seen at least this often.
        hash_seed: seed of the hash function for ``vocab="hash"``.
    """

    name: str
    column: Optional[str] = None
    separator: Optional[str] = None
    vocab: str = "build"
    num_buckets: Optional[int] = None
    min_count: int = 1
    hash_seed: int = 0

    def __post_init__(self) -> None:
        owner = f"SparseFeature({self.name!r})"
        _check_name("SparseFeature", self.name)
        if self.column is not None and (not isinstance(self.column, str) or not self.column):
            raise ConfigError(f"{owner}: column must be a non-empty string or None, got {self.column!r}")
        if self.separator is not None and (not isinstance(self.separator, str) or not self.separator):
            raise ConfigError(f"{owner}: separator must be a non-empty string or None, got {self.separator!r}")
        if self.vocab not in VOCAB_KINDS:
            raise ConfigError(f"{owner}: vocab must be one of {VOCAB_KINDS}, got {self.vocab!r}")
        if self.vocab == "hash":
            if not _is_int(self.num_buckets) or self.num_buckets < 2:
                raise ConfigError(
                    f"{owner}: vocab='hash' needs num_buckets, an int >= 2 (row 0 is the "
                    f"missing row), got {self.num_buckets!r}"
                )
        elif self.num_buckets is not None:
            raise ConfigError(
                f"{owner}: num_buckets={self.num_buckets!r} only applies to vocab='hash'; "
                "a built vocabulary's size comes from the data and min_count"
            )
        if not _is_int(self.min_count) or self.min_count < 1:
            raise ConfigError(f"{owner}: min_count must be an int >= 1, got {self.min_count!r}")
        if not _is_int(self.hash_seed):
            raise ConfigError(f"{owner}: hash_seed must be an int, got {self.hash_seed!r}")

    @property
    def source(self) -> str:
        """The column this feature is read from."""
        return self.column if self.column is not None else self.name

    @property
    def multi_valued(self) -> bool:
        return self.separator is not None


@dataclass(frozen=True)
class DenseFeature:
    """A numeric feature read from ``column`` (defaults to ``name``).

    Args:
        fill: the value used for an empty field (placed as is, not transformed).
        transform: ``None`` or ``"log1p"`` = ``log(1 + max(x, 0))`` (the standard
            Criteo treatment of counts; negative values count as 0).
    """

    name: str
    column: Optional[str] = None
    fill: float = 0.0
    transform: Optional[str] = None

    def __post_init__(self) -> None:
        owner = f"DenseFeature({self.name!r})"
        _check_name("DenseFeature", self.name)
        if self.column is not None and (not isinstance(self.column, str) or not self.column):
            raise ConfigError(f"{owner}: column must be a non-empty string or None, got {self.column!r}")
        if self.transform not in _TRANSFORMS:
            raise ConfigError(f"{owner}: transform must be one of {_TRANSFORMS}, got {self.transform!r}")
        try:
            fill = float(self.fill)
        except (TypeError, ValueError):
            raise ConfigError(f"{owner}: fill must be a number, got {self.fill!r}") from None
        if fill != fill or fill in (float("inf"), float("-inf")):
            raise ConfigError(f"{owner}: fill must be finite, got {self.fill!r}")

    @property
    def source(self) -> str:
        return self.column if self.column is not None else self.name


@dataclass(frozen=True)
class LabelSpec:
    """The label column: ``kind="binary"`` (must be 0 or 1) or ``"rating"`` (any finite number)."""

    column: str
    kind: str = "binary"

    def __post_init__(self) -> None:
        _check_name("LabelSpec", self.column)
        if self.kind not in _LABEL_KINDS:
            raise ConfigError(f"LabelSpec({self.column!r}): kind must be one of {_LABEL_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class FeatureSpec:
    """All features of a dataset.

    Args:
        sparse: sparse features, in the key order of the batches.
        dense: dense features, in column order of ``Batch.dense``.
        label: the label column.
        timestamp: optional column of integer timestamps (``Batch.timestamps``).
        user / item: optional names of the sparse features that identify the user and
            the item (for retrieval models that need to know them).
    """

    sparse: Sequence[SparseFeature]
    dense: Sequence[DenseFeature] = ()
    label: Optional[LabelSpec] = None
    timestamp: Optional[str] = None
    user: Optional[str] = None
    item: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparse", tuple(self.sparse))
        object.__setattr__(self, "dense", tuple(self.dense))
        for f in self.sparse:
            if not isinstance(f, SparseFeature):
                raise ConfigError(f"FeatureSpec.sparse must hold SparseFeature, got {f!r}")
        for f in self.dense:
            if not isinstance(f, DenseFeature):
                raise ConfigError(f"FeatureSpec.dense must hold DenseFeature, got {f!r}")
        if not isinstance(self.label, LabelSpec):
            raise ConfigError(f"FeatureSpec.label must be a LabelSpec, got {self.label!r}")
        names = [f.name for f in self.sparse] + [f.name for f in self.dense]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"FeatureSpec: feature names must be unique, repeated: {dup}")
        sparse_names = [f.name for f in self.sparse]
        for role in ("user", "item"):
            value = getattr(self, role)
            if value is not None and value not in sparse_names:
                raise UnknownKeyError(
                    f"FeatureSpec.{role}={value!r} is not a sparse feature; sparse features: {sparse_names}"
                )
        if self.timestamp is not None and (not isinstance(self.timestamp, str) or not self.timestamp):
            raise ConfigError(f"FeatureSpec.timestamp must be a column name or None, got {self.timestamp!r}")

    @property
    def sparse_names(self) -> list[str]:
        return [f.name for f in self.sparse]

    @property
    def dense_names(self) -> list[str]:
        return [f.name for f in self.dense]

    def columns(self) -> list[str]:
        """Every column the spec reads (label, dense, sparse, timestamp), without repeats."""
        cols = [self.label.column]
        cols += [f.source for f in self.dense] + [f.source for f in self.sparse]
        if self.timestamp is not None:
            cols.append(self.timestamp)
        return list(dict.fromkeys(cols))

    def needs_vocabularies(self) -> list[str]:
        """Names of the sparse features whose vocabulary must be built from data."""
        return [f.name for f in self.sparse if f.vocab == "build"]

    def num_rows(self, vocabularies: Optional[Mapping[str, object]] = None) -> dict[str, int]:
        """Table rows each sparse feature needs: ``num_buckets``, or ``len(vocabulary)``.

        Args:
            vocabularies: feature name -> :class:`~recembed.data.vocab.Vocabulary`, needed
                for the ``vocab="build"`` features (a reader's ``.vocabularies``).
        """
        vocabularies = vocabularies or {}
        rows = {}
        for f in self.sparse:
            if f.vocab == "hash":
                rows[f.name] = int(f.num_buckets)
            elif f.name in vocabularies:
                rows[f.name] = len(vocabularies[f.name])
            else:
                raise ConfigError(
                    f"feature {f.name!r} uses vocab='build' but no vocabulary was given; "
                    "build it first (e.g. reader.fit_vocabularies()) and pass reader.vocabularies"
                )
        return rows
