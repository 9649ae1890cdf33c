"""The Criteo click-log format: reading (streaming) and writing.

Each line is ``label, I1..I13, C1..C26`` separated by tabs, no header: the label is 0
or 1, ``I*`` are integer counts and ``C*`` are categorical ids written as hex strings.
Any field but the label may be empty (missing).

Reading follows the usual DLRM treatment:

- dense ``I*``: ``log(1 + max(x, 0))``; an empty field gives 0.0.
- categorical ``C*``: hashed into ``num_buckets`` rows per feature (``vocab="hash"``,
  the default) or mapped through a vocabulary built from the file (``vocab="build"``).
  An empty field goes to row 0 in both cases (the missing/OOV row; see
  :mod:`recembed.data.spec`), so every example has exactly one id per feature.

Clean chunks are parsed by a compiled scanner (:mod:`recembed.data.fast_tsv`).

Example:
    >>> reader = read_criteo("day_0.tsv", num_buckets=100_000, batch_size=4096)  # doctest: +SKIP
    >>> batch = next(iter(reader))                                                # doctest: +SKIP
    >>> batch.dense.shape, batch.sparse.keys()[:2]                                # doctest: +SKIP
    (torch.Size([4096, 13]), ['C1', 'C2'])
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import numpy as np

from recembed.data._io import atomic_text_writer
from recembed.data.spec import DenseFeature, FeatureSpec, LabelSpec, SparseFeature
from recembed.data.tabular import TabularReader
from recembed.errors import ConfigError, ShapeMismatchError

__all__ = [
    "CRITEO_NUM_DENSE",
    "CRITEO_NUM_CATEGORICAL",
    "criteo_column_names",
    "criteo_spec",
    "read_criteo",
    "write_criteo_tsv",
]

CRITEO_NUM_DENSE = 13
CRITEO_NUM_CATEGORICAL = 26
_DEFAULT_BUCKETS = 100_000


def criteo_column_names(num_dense: int = CRITEO_NUM_DENSE, num_categorical: int = CRITEO_NUM_CATEGORICAL) -> list[str]:
    """``["label", "I1", ..., "I<num_dense>", "C1", ..., "C<num_categorical>"]``."""
    return ["label"] + [f"I{i}" for i in range(1, num_dense + 1)] + [
        f"C{i}" for i in range(1, num_categorical + 1)
    ]


def criteo_spec(
    *,
    num_dense: int = CRITEO_NUM_DENSE,
    num_categorical: int = CRITEO_NUM_CATEGORICAL,
    vocab: str = "hash",
    num_buckets: Union[int, Sequence[int]] = _DEFAULT_BUCKETS,
    min_count: int = 1,
    hash_seed: int = 0,
) -> FeatureSpec:
    """The :class:`FeatureSpec` of a Criteo-format file (features named ``I*`` and ``C*``).

    Args:
        vocab: ``"hash"`` or ``"build"`` for every categorical feature.
        num_buckets: rows per hashed feature, one int for all or one per feature.
        min_count: for ``vocab="build"``: tokens seen fewer times go to row 0.
    """
    for name, value in (("num_dense", num_dense), ("num_categorical", num_categorical)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"criteo_spec: {name} must be an int >= 0, got {value!r}")
    if isinstance(num_buckets, int):
        buckets = [num_buckets] * num_categorical
    else:
        buckets = list(num_buckets)
        if len(buckets) != num_categorical:
            raise ConfigError(
                f"criteo_spec: num_buckets has {len(buckets)} entries for {num_categorical} categorical features"
            )
    names = criteo_column_names(num_dense, num_categorical)
    dense = [DenseFeature(n, transform="log1p", fill=0.0) for n in names[1 : 1 + num_dense]]
    sparse = [
        SparseFeature(
            n,
            vocab=vocab,
            num_buckets=b if vocab == "hash" else None,
            min_count=min_count,
            hash_seed=hash_seed,
        )
        for n, b in zip(names[1 + num_dense :], buckets)
    ]
    return FeatureSpec(sparse=sparse, dense=dense, label=LabelSpec("label", kind="binary"))


def read_criteo(
    path: Union[str, os.PathLike],
    *,
    num_dense: int = CRITEO_NUM_DENSE,
    num_categorical: int = CRITEO_NUM_CATEGORICAL,
    vocab: str = "hash",
    num_buckets: Union[int, Sequence[int]] = _DEFAULT_BUCKETS,
    min_count: int = 1,
    hash_seed: int = 0,
    **options: Any,
) -> TabularReader:
    """A streaming reader of a Criteo-format TSV file (``.gz`` allowed).

    ``options`` go to :class:`TabularReader` (``batch_size``, ``shuffle``, ``seed``,
    ``drop_last``, ``on_error``, ``vocabularies``, ``chunk_rows``, ``shuffle_buffer``).
    Lines with the wrong number of fields, a label other than 0/1, or a dense value
    that is not a finite number are malformed (raise, or skip with ``on_error="skip"``).
    """
    spec = criteo_spec(
        num_dense=num_dense, num_categorical=num_categorical, vocab=vocab,
        num_buckets=num_buckets, min_count=min_count, hash_seed=hash_seed,
    )
    return TabularReader(
        path, spec, format="tsv", delimiter="\t", header=False,
        column_names=criteo_column_names(num_dense, num_categorical), **options,
    )


def write_criteo_tsv(
    path: Union[str, os.PathLike],
    labels: np.ndarray,
    dense: np.ndarray,
    categorical: np.ndarray,
    *,
    dense_missing: Optional[np.ndarray] = None,
    chunk_rows: int = 65536,
) -> None:
    """Write examples as a Criteo-format TSV file, atomically.

    Args:
        labels: ``(N,)`` 0/1 values.
        dense: ``(N, n_dense)`` integer counts.
        categorical: ``(N, n_categorical)`` strings (e.g. hex ids); ``""`` is written as missing.
        dense_missing: optional ``(N, n_dense)`` bool mask of dense fields to leave empty.
    """
    labels = np.asarray(labels)
    dense = np.asarray(dense)
    categorical = np.asarray(categorical, dtype=object)
    n = labels.shape[0]
    if labels.ndim != 1 or dense.ndim != 2 or categorical.ndim != 2 or dense.shape[0] != n or categorical.shape[0] != n:
        raise ShapeMismatchError(
            f"write_criteo_tsv: labels (N,), dense (N, n_dense), categorical (N, n_cat) expected; "
            f"got {labels.shape}, {dense.shape}, {categorical.shape}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ConfigError("write_criteo_tsv: labels must be 0 or 1")
    if dense_missing is not None and dense_missing.shape != dense.shape:
        raise ShapeMismatchError(f"write_criteo_tsv: dense_missing shape {dense_missing.shape} != dense {dense.shape}")
    with atomic_text_writer(path) as f:
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            dense_text = dense[start:stop].astype(np.int64).astype(str).astype(object)
            if dense_missing is not None:
                dense_text[dense_missing[start:stop]] = ""
            label_text = labels[start:stop].astype(np.int64).astype(str).astype(object)
            table = np.concatenate(
                [label_text[:, None], dense_text, categorical[start:stop]], axis=1
            )
            f.write("".join("\t".join(row) + "\n" for row in table.tolist()))
