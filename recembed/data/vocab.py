"""Vocabularies: raw string ids -> table rows, built in one counting pass.

Row 0 is reserved for out-of-vocabulary ids (unseen, below ``min_count``) and for
missing values; known tokens take rows ``1..len(tokens)`` in order of decreasing
frequency (ties: the token that sorts first as a string comes first), so the most
frequent ids sit in the first rows whatever order the data came in.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from recembed.data._io import atomic_text_writer
from recembed.errors import ConfigError, DataFormatError, UnknownKeyError

__all__ = ["Vocabulary", "VocabularyBuilder", "OOV_ROW"]

OOV_ROW = 0
_FORMAT = "recembed.vocabulary"
_VERSION = 1


class Vocabulary:
    """A fixed mapping token -> row, with row 0 for unknown and missing tokens.

    ``len(vocab)`` is the number of table rows it needs (tokens + 1).

    Example:
        >>> v = Vocabulary.build(["b", "a", "b", "c", "b", "a"], min_count=2)
        >>> v.tokens, len(v)
        (['b', 'a'], 3)
        >>> v.lookup(["a", "zzz", "b"]).tolist()
        [2, 0, 1]
    """

    def __init__(
        self,
        tokens: Sequence[str],
        counts: Optional[Sequence[int]] = None,
        *,
        name: Optional[str] = None,
        min_count: int = 1,
    ) -> None:
        self.tokens: list[str] = [str(t) for t in tokens]
        self.counts: Optional[list[int]] = None if counts is None else [int(c) for c in counts]
        if self.counts is not None and len(self.counts) != len(self.tokens):
            raise ConfigError(
                f"Vocabulary {name!r}: {len(self.tokens)} tokens but {len(self.counts)} counts"
            )
        self.name = name
        self.min_count = int(min_count)
        if "" in self.tokens:
            raise ConfigError(f"Vocabulary {name!r}: the empty string means 'missing' and cannot be a token")
        self._row = {token: row for row, token in enumerate(self.tokens, start=1)}
        if len(self._row) != len(self.tokens):
            seen: set[str] = set()
            dup = next(t for t in self.tokens if t in seen or seen.add(t))
            raise ConfigError(f"Vocabulary {name!r}: token {dup!r} appears twice")

    @classmethod
    def build(
        cls,
        tokens: Iterable[str],
        *,
        min_count: int = 1,
        max_size: Optional[int] = None,
        name: Optional[str] = None,
    ) -> "Vocabulary":
        """Count ``tokens`` and keep those seen at least ``min_count`` times (at most ``max_size``)."""
        builder = VocabularyBuilder(name=name)
        builder.update(tokens)
        return builder.build(min_count=min_count, max_size=max_size)

    def __len__(self) -> int:
        return len(self.tokens) + 1

    def __contains__(self, token: object) -> bool:
        return token in self._row

    def __getitem__(self, token: str) -> int:
        """The row of ``token`` (OOV_ROW when unknown)."""
        return self._row.get(token, OOV_ROW)

    def token(self, row: int) -> Optional[str]:
        """The token stored in ``row``; None for the OOV row."""
        if not 0 <= row < len(self):
            raise UnknownKeyError(f"Vocabulary {self.name!r}: row {row} is outside [0, {len(self)})")
        return None if row == OOV_ROW else self.tokens[row - 1]

    def lookup(self, tokens: Sequence[Optional[str]]) -> np.ndarray:
        """Rows of ``tokens`` as an ``(N,)`` int64 array; unknown, None and ``""`` give 0."""
        get = self._row.get
        return np.fromiter((get(t, OOV_ROW) for t in tokens), dtype=np.int64, count=len(tokens))

    # ----------------------------------------------------------------- storage
    def to_json_dict(self) -> dict:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "name": self.name,
            "oov_row": OOV_ROW,
            "min_count": self.min_count,
            "tokens": self.tokens,
            "counts": self.counts,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON, atomically."""
        with atomic_text_writer(path) as f:
            json.dump(self.to_json_dict(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        """Read a vocabulary written by :meth:`save`."""
        where = os.fspath(path)
        try:
            with open(where, "r", encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"not valid JSON ({exc.msg})", path=where, line=exc.lineno) from exc
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise DataFormatError(f"not a recembed vocabulary (expected format {_FORMAT!r})", path=where)
        if data.get("version") != _VERSION or data.get("oov_row") != OOV_ROW:
            raise DataFormatError(
                f"vocabulary version {data.get('version')!r} / oov_row {data.get('oov_row')!r} "
                f"is not supported (expected version {_VERSION}, oov_row {OOV_ROW})",
                path=where,
            )
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise DataFormatError("vocabulary 'tokens' must be a list of strings", path=where)
        return cls(tokens, data.get("counts"), name=data.get("name"), min_count=data.get("min_count", 1))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self.tokens[:5])
        more = ", ..." if len(self.tokens) > 5 else ""
        return f"Vocabulary(name={self.name!r}, rows={len(self)}, tokens=[{head}{more}])"


class VocabularyBuilder:
    """Counts tokens over any number of chunks, then freezes into a :class:`Vocabulary`."""

    def __init__(self, name: Optional[str] = None) -> None:
        self.name = name
        self.counter: Counter[str] = Counter()

    def update(self, tokens: Iterable[Optional[str]]) -> None:
        """Count ``tokens``; missing values (None or ``""``) are not counted."""
        self.counter.update(tokens)
        self.counter.pop(None, None)  # type: ignore[call-overload]
        self.counter.pop("", None)

    def update_counts(self, counts: Mapping[str, int]) -> None:
        """Add ready-made counts ``{token: count}``; missing values are not counted."""
        self.counter.update(counts)
        self.counter.pop("", None)

    def build(self, *, min_count: int = 1, max_size: Optional[int] = None) -> Vocabulary:
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ConfigError(f"min_count must be an int >= 1, got {min_count!r}")
        if max_size is not None and max_size < 0:
            raise ConfigError(f"max_size must be >= 0 or None, got {max_size!r}")
        kept = [(t, c) for t, c in self.counter.items() if c >= min_count]
        kept.sort(key=lambda tc: (-tc[1], tc[0]))
        if max_size is not None:
            kept = kept[:max_size]
        return Vocabulary(
            [t for t, _ in kept], [c for _, c in kept], name=self.name, min_count=min_count
        )
