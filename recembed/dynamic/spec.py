"""``DynamicSpec``: the config field value that makes a table dynamic.

Set it as ``dynamic=`` on an ``EmbeddingBagConfig`` or ``EmbeddingConfig``; the table then
takes raw int64 ids of any value (or strings, hashed), gives each admitted id its own row
among ``num_embeddings`` rows, and evicts or expires rows as ids come and go.

Example:
    >>> cfg = EmbeddingBagConfig(name="t_item", num_embeddings=1_000_000, embedding_dim=64,
    ...                          feature_names=["item"], optimizer="adagrad",
    ...                          dynamic=DynamicSpec(min_count=2, eviction="lfu", ttl=10_000))
    >>> ebc = EmbeddingBagCollection([cfg])   # item ids may be any int64
"""

from __future__ import annotations

import enum
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from recembed.errors import ConfigError

if TYPE_CHECKING:  # the table module imports the collections; load it only when building
    from recembed.dynamic.table import DynamicEmbeddingTable
    from recembed.tables.config import BaseEmbeddingConfig

__all__ = ["AdmissionCounter", "DefaultRow", "DynamicSpec", "Eviction", "IdType"]


class Eviction(str, enum.Enum):
    """Which row a new id takes when the table is full (after free and expired rows)."""

    LRU = "lru"    # the row seen longest ago
    LFU = "lfu"    # the row with the fewest occurrences, ties to the one seen longest ago
    NONE = "none"  # none: new ids wait on the default row until a row frees up (ttl)


class AdmissionCounter(str, enum.Enum):
    """How occurrences of not-yet-admitted ids are counted for ``min_count``."""

    EXACT = "exact"          # one counter per pending id (bounded by counter_capacity)
    COUNT_MIN = "count_min"  # a fixed-size count-min sketch: may admit early, never late


class DefaultRow(str, enum.Enum):
    """What the shared row of ids without a row of their own holds."""

    ZERO = "zero"        # zeros, never trained; left out of bags (like padding)
    TRAINED = "trained"  # one trained vector shared by every such id (an "unknown" bucket)


class IdType(str, enum.Enum):
    """What ids a table takes through ``lookup``."""

    INT = "int"  # integer tensors only
    STR = "str"  # also lists of strings, hashed to int64 by recembed.sparse.hashing.hash_strings


def _coerce(enum_cls: type[enum.Enum], value: object, field: str) -> enum.Enum:
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str):
        for member in enum_cls:
            if value.lower() in (member.value, member.name.lower()):
                return member
    allowed = ", ".join(repr(m.value) for m in enum_cls)
    raise ConfigError(f"DynamicSpec: {field}={value!r} is not one of {allowed}")


def _check_int(value: object, field: str, minimum: int, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"DynamicSpec: {field} must be an int, got {value!r}")
    if value < minimum:
        raise ConfigError(f"DynamicSpec: {field} must be >= {minimum}, got {value}")
    return int(value)


@dataclass(frozen=True)
class DynamicSpec:
    """A dynamic table: one row per admitted id, at most ``num_embeddings`` of them.

    Attributes:
        min_count: occurrences an id needs before it gets a row (>= 1); until then it
            reads the default row.
        counter: ``"exact"`` or ``"count_min"`` (ignored when ``min_count == 1``).
        eviction: ``"lru"``, ``"lfu"`` or ``"none"``.
        ttl: steps (training batches) a row may go unseen before it is freed, or None.
        default_row: ``"zero"`` (frozen zeros, left out of bags and of MEAN's count) or
            ``"trained"`` (one shared trained vector).
        id_type: ``"int"``, or ``"str"`` to also accept lists of strings.
        counter_capacity: pending ids the exact counter remembers (default ``num_embeddings``);
            when full, the ids last seen at or before the median step (at least half) are forgotten.
        sketch_width, sketch_depth: count-min size (width rounded up to a power of two;
            default ``num_embeddings``) and number of hash rows.
        seed: seeds the fresh values of recycled rows and the sketch hashes.
    """

    min_count: int = 1
    counter: AdmissionCounter | str = AdmissionCounter.EXACT
    eviction: Eviction | str = Eviction.LRU
    ttl: int | None = None
    default_row: DefaultRow | str = DefaultRow.ZERO
    id_type: IdType | str = IdType.INT
    counter_capacity: int | None = None
    sketch_width: int | None = None
    sketch_depth: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        fix = object.__setattr__  # frozen: coerce once, here
        fix(self, "min_count", _check_int(self.min_count, "min_count", 1))
        fix(self, "counter", _coerce(AdmissionCounter, self.counter, "counter"))
        fix(self, "eviction", _coerce(Eviction, self.eviction, "eviction"))
        fix(self, "ttl", _check_int(self.ttl, "ttl (steps a row may go unseen)", 1, optional=True))
        fix(self, "default_row", _coerce(DefaultRow, self.default_row, "default_row"))
        fix(self, "id_type", _coerce(IdType, self.id_type, "id_type"))
        fix(self, "counter_capacity", _check_int(self.counter_capacity, "counter_capacity", 1, optional=True))
        fix(self, "sketch_width", _check_int(self.sketch_width, "sketch_width", 1, optional=True))
        fix(self, "sketch_depth", _check_int(self.sketch_depth, "sketch_depth", 1))
        fix(self, "seed", _check_int(self.seed, "seed", 0))

    def build(self, config: BaseEmbeddingConfig, device: torch.device | str | None = None) -> DynamicEmbeddingTable:
        """The module a collection holds for ``config``'s table."""
        from recembed.dynamic.table import DynamicEmbeddingTable

        return DynamicEmbeddingTable(config, self, device)
