"""The vocabulary of a sequence corpus: keys ordered by descending count, and their counts.

Built from raw per-key counts by :func:`finalize_vocabulary`, which applies ``min_count``
and ``max_final_vocab`` the way gensim does: ``max_final_vocab`` raises the effective
``min_count`` just enough that at most that many keys survive (ties at the cut-off are all
dropped, so the result can be smaller).

Example:
    >>> vocab = finalize_vocabulary(["a", "b", "c"], np.array([5, 1, 9]), min_count=2)
    >>> vocab.keys, vocab.counts.tolist()
    (['c', 'a'], [9, 5])
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from recembed.errors import ConfigError, UnknownKeyError

__all__ = ["Vocabulary", "finalize_vocabulary", "plain_key"]


def plain_key(key: Hashable) -> Hashable:
    """Turn numpy scalars into the equal Python value, so keys serialise to JSON."""
    if isinstance(key, np.generic):
        return key.item()
    return key


@dataclass
class Vocabulary:
    """Keys and counts of a trained vocabulary; index ``i`` is row ``i`` of the vectors.

    Attributes:
        keys: ``V`` keys (str or int), most frequent first.
        counts: ``(V,)`` int64 occurrence counts in the corpus the vocabulary was built from.
        key_to_index: key -> row.
    """

    keys: list
    counts: np.ndarray
    key_to_index: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=np.int64)
        if len(self.keys) != self.counts.shape[0]:
            raise ConfigError(f"vocabulary has {len(self.keys)} keys but {self.counts.shape[0]} counts")
        if not self.key_to_index:
            self.key_to_index = {key: i for i, key in enumerate(self.keys)}
        if len(self.key_to_index) != len(self.keys):
            raise ConfigError("vocabulary keys are not unique")

    def __len__(self) -> int:
        return len(self.keys)

    def count(self, key: Hashable) -> int:
        """Occurrences of ``key`` in the corpus; raises :class:`UnknownKeyError` if absent."""
        index = self.key_to_index.get(key)
        if index is None:
            raise UnknownKeyError(f"key {key!r} is not in the vocabulary of {len(self.keys)} keys")
        return int(self.counts[index])


def finalize_vocabulary(
    keys: Sequence[Hashable],
    counts: np.ndarray,
    *,
    min_count: int,
    max_final_vocab: int | None = None,
    max_vocab_size: int | None = None,
) -> Vocabulary:
    """Filter and order raw counts into a :class:`Vocabulary`.

    Args:
        keys: candidate keys; ``counts``: ``(K,)`` their counts (0 marks a dead key).
        min_count: drop keys seen fewer times.
        max_final_vocab: keep at most this many keys, by raising ``min_count``.
        max_vocab_size: keep only the ``max_vocab_size`` most frequent candidates
            (used for in-memory corpora, where streaming pruning has nothing to do).

    Returns:
        keys most frequent first; ties keep the order of ``keys``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    order = np.argsort(-counts, kind="stable")
    counts_sorted = counts[order]
    effective_min = max(int(min_count), 1)
    if max_vocab_size is not None and counts_sorted.shape[0] > max_vocab_size:
        # Like streaming pruning: the cut-off count and anything tied with it goes.
        effective_min = max(effective_min, int(counts_sorted[max_vocab_size]) + 1)
    if max_final_vocab is not None and counts_sorted.shape[0] > max_final_vocab:
        effective_min = max(effective_min, int(counts_sorted[max_final_vocab]) + 1)
    num_kept = int(np.searchsorted(-counts_sorted, -effective_min, side="right"))
    kept = order[:num_kept]
    return Vocabulary(keys=[plain_key(keys[i]) for i in kept], counts=counts_sorted[:num_kept])
