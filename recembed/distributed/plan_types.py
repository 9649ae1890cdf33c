"""What a sharding plan says: per table, how it is split and which ranks hold the pieces.

A :class:`ShardingSpec` names a :class:`ShardingType` and the ranks; a
:class:`ShardingPlan` maps table names to specs. :func:`shard_layout` turns a spec and a
table's size into concrete shards (rank, row range, column range), the one place the
split rule lives: contiguous blocks, the first ``n % k`` blocks one larger.

Example:
    >>> spec = ShardingSpec("row_wise", (0, 1, 2))
    >>> [(s.rank, s.rows, s.cols) for s in shard_layout(spec, num_rows=10, dim=4)]
    [(0, (0, 4), (0, 4)), (1, (4, 7), (0, 4)), (2, (7, 10), (0, 4))]
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from recembed.errors import ConfigError, UnknownKeyError

__all__ = ["ShardingType", "ShardingSpec", "Shard", "ShardingPlan", "shard_layout", "split_sizes"]


class ShardingType(str, enum.Enum):
    """How one table is spread over ranks.

    - ``TABLE_WISE``: the whole table on one rank.
    - ``ROW_WISE``: rows in contiguous blocks, one block per rank; partial pooled sums are added.
    - ``COLUMN_WISE``: embedding dimensions in contiguous blocks; each rank returns its columns.
    - ``DATA_PARALLEL``: a replica on every rank, updated identically from every rank's ids.
    """

    TABLE_WISE = "table_wise"
    ROW_WISE = "row_wise"
    COLUMN_WISE = "column_wise"
    DATA_PARALLEL = "data_parallel"

    @classmethod
    def parse(cls, value: "ShardingType | str", where: str) -> "ShardingType":
        if isinstance(value, ShardingType):
            return value
        if isinstance(value, str):
            text = value.lower().replace("-", "_")
            for member in cls:
                if text in (member.value, member.name.lower()):
                    return member
        allowed = ", ".join(m.value for m in cls)
        raise ConfigError(f"{where}: sharding type {value!r} is not one of {allowed}")


def split_sizes(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` contiguous sizes, the first ``total % parts`` one larger."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


@dataclass(frozen=True)
class ShardingSpec:
    """One table's placement.

    Args:
        type: a :class:`ShardingType` or its value (``"row_wise"`` ...).
        ranks: the ranks holding the shards, in shard order. ``TABLE_WISE`` takes one
            rank; ``DATA_PARALLEL`` takes every rank (an empty tuple means all).
        sizes: optional uneven split for ``ROW_WISE`` (rows per rank) or ``COLUMN_WISE``
            (columns per rank); by default the split is as even as possible.
    """

    type: ShardingType | str
    ranks: tuple[int, ...] = ()
    sizes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", ShardingType.parse(self.type, "ShardingSpec"))
        ranks = self.ranks
        if isinstance(ranks, int) and not isinstance(ranks, bool):
            ranks = (ranks,)
        if not isinstance(ranks, (list, tuple)) or not all(
            isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in ranks
        ):
            raise ConfigError(f"ShardingSpec: ranks must be a tuple of ints >= 0, got {self.ranks!r}")
        if len(set(ranks)) != len(ranks):
            raise ConfigError(f"ShardingSpec: ranks {tuple(ranks)} repeat a rank; a rank holds one shard per table")
        object.__setattr__(self, "ranks", tuple(int(r) for r in ranks))
        if self.type is ShardingType.TABLE_WISE and len(self.ranks) != 1:
            raise ConfigError(f"ShardingSpec: table_wise takes exactly one rank, got {self.ranks}")
        if self.type in (ShardingType.ROW_WISE, ShardingType.COLUMN_WISE) and not self.ranks:
            raise ConfigError(f"ShardingSpec: {self.type.value} needs at least one rank")
        if self.sizes is not None:
            if self.type not in (ShardingType.ROW_WISE, ShardingType.COLUMN_WISE):
                raise ConfigError(f"ShardingSpec: sizes are for row_wise or column_wise, not {self.type.value}")
            sizes = tuple(self.sizes)
            if len(sizes) != len(self.ranks) or not all(isinstance(s, int) and s >= 1 for s in sizes):
                raise ConfigError(
                    f"ShardingSpec: sizes {sizes} must be one int >= 1 per rank (ranks {self.ranks})"
                )
            object.__setattr__(self, "sizes", sizes)

    def to_dict(self) -> dict:
        return {"type": self.type.value, "ranks": list(self.ranks), "sizes": None if self.sizes is None else list(self.sizes)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "ShardingSpec":
        sizes = data.get("sizes")
        return cls(data["type"], tuple(data.get("ranks", ())), None if sizes is None else tuple(sizes))


@dataclass(frozen=True)
class Shard:
    """One piece of a table: ``rank`` holds rows ``[rows[0], rows[1])`` and columns ``[cols[0], cols[1])``."""

    rank: int
    rows: tuple[int, int]
    cols: tuple[int, int]

    @property
    def num_rows(self) -> int:
        return self.rows[1] - self.rows[0]

    @property
    def num_cols(self) -> int:
        return self.cols[1] - self.cols[0]


def shard_layout(spec: ShardingSpec, num_rows: int, dim: int, world_size: int | None = None) -> list[Shard]:
    """The shards ``spec`` makes of a ``(num_rows, dim)`` table, in shard order.

    ``DATA_PARALLEL`` with no ranks needs ``world_size`` (one full replica per rank).
    """
    t = spec.type
    ranks = spec.ranks
    if t is ShardingType.DATA_PARALLEL:
        if not ranks:
            if world_size is None:
                raise ConfigError("shard_layout: data_parallel with no ranks needs world_size")
            ranks = tuple(range(world_size))
        return [Shard(r, (0, num_rows), (0, dim)) for r in ranks]
    if t is ShardingType.TABLE_WISE:
        return [Shard(ranks[0], (0, num_rows), (0, dim))]
    total = num_rows if t is ShardingType.ROW_WISE else dim
    sizes = list(spec.sizes) if spec.sizes is not None else split_sizes(total, len(ranks))
    what = "rows" if t is ShardingType.ROW_WISE else "columns"
    if sum(sizes) != total:
        raise ConfigError(f"{t.value} sizes {sizes} sum to {sum(sizes)}, but the table has {total} {what}")
    if min(sizes) < 1:
        raise ConfigError(
            f"{t.value} over {len(ranks)} ranks needs at least one of the table's {total} {what} per rank"
        )
    shards, start = [], 0
    for rank, size in zip(ranks, sizes):
        span = (start, start + size)
        shards.append(Shard(rank, span, (0, dim)) if t is ShardingType.ROW_WISE else Shard(rank, (0, num_rows), span))
        start += size
    return shards


@dataclass
class ShardingPlan:
    """Per table (by name) its :class:`ShardingSpec`, plus the planner's estimates when it made one.

    ``estimates[table]`` holds ``bytes`` (weights + optimizer state over all shards) and
    ``lookups`` (expected ids looked up per global batch); ``rank_bytes`` and
    ``rank_cost`` give each rank's total memory and estimated per-batch cost.
    """

    specs: dict[str, ShardingSpec]
    world_size: int
    estimates: dict[str, dict[str, float]] = field(default_factory=dict)
    rank_bytes: list[float] = field(default_factory=list)
    rank_cost: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.world_size, bool) or not isinstance(self.world_size, int) or self.world_size < 1:
            raise ConfigError(f"ShardingPlan: world_size must be an int >= 1, got {self.world_size!r}")
        specs = {}
        for name, spec in dict(self.specs).items():
            if isinstance(spec, Mapping):
                spec = ShardingSpec.from_dict(spec)
            elif isinstance(spec, (str, ShardingType)):
                spec = ShardingSpec(spec, ())
            if not isinstance(spec, ShardingSpec):
                raise ConfigError(f"ShardingPlan: table '{name}' maps to {spec!r}, not a ShardingSpec")
            for r in spec.ranks:
                if r >= self.world_size:
                    raise ConfigError(
                        f"ShardingPlan: table '{name}' is placed on rank {r}, but the world has "
                        f"{self.world_size} ranks (0..{self.world_size - 1})"
                    )
            specs[name] = spec
        self.specs = specs

    @classmethod
    def coerce(cls, plan: "ShardingPlan | Mapping", world_size: int) -> "ShardingPlan":
        """A plan from a ``ShardingPlan`` or a ``{table: ShardingSpec}`` mapping, checked against ``world_size``."""
        if isinstance(plan, ShardingPlan):
            if plan.world_size != world_size:
                raise ConfigError(f"the sharding plan was made for {plan.world_size} ranks, but the world has {world_size}")
            return plan
        if isinstance(plan, Mapping):
            return cls(dict(plan), world_size)
        raise ConfigError(f"plan must be a ShardingPlan or a {{table: ShardingSpec}} dict, got {type(plan).__name__}")

    def __getitem__(self, table: str) -> ShardingSpec:
        if table not in self.specs:
            raise UnknownKeyError(f"the sharding plan has no table '{table}' (tables: {sorted(self.specs)})")
        return self.specs[table]

    def __contains__(self, table: str) -> bool:
        return table in self.specs

    def tables(self) -> list[str]:
        return list(self.specs)

    def table(self) -> str:
        """The plan as a text table: table, sharding type, ranks, bytes, expected lookups per batch."""
        header = ("table", "sharding", "ranks", "bytes", "lookups/batch")
        rows = []
        for name, spec in self.specs.items():
            est = self.estimates.get(name, {})
            ranks = "all" if spec.type is ShardingType.DATA_PARALLEL and not spec.ranks else _ranks_text(spec.ranks)
            rows.append((name, spec.type.value, ranks, _bytes_text(est.get("bytes")),
                         "-" if est.get("lookups") is None else f"{est['lookups']:,.0f}"))
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        if self.rank_bytes:
            lines.append("")
            lines.append("rank  memory      est. cost/batch")
            for r, (b, c) in enumerate(zip(self.rank_bytes, self.rank_cost or [0.0] * len(self.rank_bytes))):
                lines.append(f"{r:<4}  {_bytes_text(b):<10}  {c * 1e3:.3f} ms")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"world_size": self.world_size,
                           "specs": {n: s.to_dict() for n, s in self.specs.items()}}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "ShardingPlan":
        data = json.loads(text)
        return cls({n: ShardingSpec.from_dict(s) for n, s in data["specs"].items()}, int(data["world_size"]))


def _ranks_text(ranks: Iterable[int]) -> str:
    ranks = list(ranks)
    if len(ranks) > 2 and ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"{ranks[0]}-{ranks[-1]}"
    return ",".join(str(r) for r in ranks)


def _bytes_text(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{int(value)} B"
