"""Quotient-remainder compositional embeddings (Shi et al., KDD 2020).

With ``m`` = ``num_collisions``, id ``i`` is split into the complementary pair
``(q, r) = (i // m, i % m)``: a quotient table of ``ceil(ids / m)`` rows and a remainder
table of ``m`` rows. No two ids share both rows, so every id keeps a distinct vector::

    mult:   vector(i) = Q[q] * R[r]          (elementwise; both tables D wide)
    add:    vector(i) = Q[q] + R[r]          (both tables D wide)
    concat: vector(i) = [Q[q], R[r]]         (Q is ceil(D / 2) wide, R is floor(D / 2);
                                              an odd D gives the quotient half the extra column)

Sizing by ``compression_ratio`` picks the smallest ``m`` with
``ceil(ids / m) + m <= compression_ratio * ids`` - a few ids per quotient row, as in the
paper (ratio 0.25 gives m = 4 for large tables). The two tables together never have fewer
than about ``2 * sqrt(ids)`` rows, so a very small ratio on a small table is a ConfigError
that says what the table can reach.

Initialisation: ``add`` draws both tables as the plain table would, scaled by
``1/sqrt(2)``; ``concat`` draws both as the plain table; ``mult`` starts the quotient
table at 1 and draws the remainder table, so each starting vector is its remainder row.

Example:
    >>> cfg = EmbeddingBagConfig(name="t_user", num_embeddings=1_000_000, embedding_dim=64,
    ...                          feature_names=["user"], compression=QRSpec(num_collisions=4))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from recembed.compress.base import (
    CompressedTable,
    SubTable,
    check_ratio,
    fill_ones,
    id_space,
    sub_table_init,
)
from recembed.errors import ConfigError
from recembed.tables.config import BaseEmbeddingConfig

__all__ = ["QR_OPERATIONS", "QREmbeddingTable", "QRSpec", "qr_collisions_for_ratio"]

QR_OPERATIONS = ("mult", "add", "concat")


def qr_collisions_for_ratio(num_ids: int, ratio: float, table: str = "") -> int:
    """Smallest ``m`` with ``ceil(num_ids / m) + m <= ratio * num_ids``.

    Raises:
        ConfigError: no ``m`` fits (the ratio is below what two tables can reach).
    """
    target = ratio * num_ids + 1e-9
    root = math.isqrt(num_ids)
    fewest = min(math.ceil(num_ids / m) + m for m in (max(root, 1), root + 1))
    if fewest > target:
        raise ConfigError(
            f"table '{table}' (qr): compression_ratio={ratio} asks for {ratio * num_ids:.1f} rows, but quotient and "
            f"remainder tables of {num_ids} ids need at least {fewest} rows (ratio {fewest / num_ids:.4g}); "
            "use a larger ratio, or Bloom/hashing for this table"
        )
    # ceil(n/m) + m <= t holds between the roots of m^2 - t m + n; start at the smaller one.
    m = max(1, int((target - math.sqrt(max(target * target - 4 * num_ids, 0.0))) / 2))
    while math.ceil(num_ids / m) + m > target:
        m += 1
    return m


@dataclass(frozen=True)
class QRSpec:
    """Quotient-remainder table; give ``num_collisions`` (m) or ``compression_ratio``.

    Args:
        num_collisions: m >= 1, the remainder table's rows (ids per quotient row).
        compression_ratio: in (0, 1]; m is derived (see :func:`qr_collisions_for_ratio`).
        operation: ``"mult"``, ``"add"`` or ``"concat"``.
    """

    num_collisions: int | None = None
    compression_ratio: float | None = None
    operation: str = "mult"

    def __post_init__(self) -> None:
        if (self.num_collisions is None) == (self.compression_ratio is None):
            raise ConfigError(
                f"QRSpec: give exactly one of num_collisions and compression_ratio, got "
                f"num_collisions={self.num_collisions!r}, compression_ratio={self.compression_ratio!r}"
            )
        if self.compression_ratio is not None:
            check_ratio(self.compression_ratio, "QRSpec")
        elif isinstance(self.num_collisions, bool) or not isinstance(self.num_collisions, int) \
                or self.num_collisions < 1:
            raise ConfigError(f"QRSpec: num_collisions must be an int >= 1, got {self.num_collisions!r}")
        if self.operation not in QR_OPERATIONS:
            raise ConfigError(f"QRSpec: operation={self.operation!r} is not one of {', '.join(QR_OPERATIONS)}")

    def build(self, config: BaseEmbeddingConfig, device: torch.device | str | None = None) -> QREmbeddingTable:
        return QREmbeddingTable(config, self, device)


class QREmbeddingTable(CompressedTable):
    """Sub-tables ``quotient`` (ceil(ids / m) rows) and ``remainder`` (m rows), combined by ``operation``."""

    kind = "qr"

    def __init__(self, config: BaseEmbeddingConfig, spec: QRSpec, device: torch.device | str | None = None):
        ids, dim, op = id_space(config), config.embedding_dim, spec.operation
        if spec.num_collisions is not None:
            if spec.num_collisions > ids:
                raise ConfigError(
                    f"table '{config.name}' (qr): num_collisions={spec.num_collisions} exceeds the table's {ids} ids"
                )
            m = spec.num_collisions
        else:
            m = qr_collisions_for_ratio(ids, spec.compression_ratio, config.name)  # type: ignore[arg-type]
        if op == "concat" and dim < 2:
            raise ConfigError(f"table '{config.name}' (qr): operation='concat' splits the vector in two; "
                              f"embedding_dim must be >= 2, got {dim}")
        self.operation = op
        self.num_collisions = m
        self.linear = op != "mult"
        if op == "concat":
            dims = ((dim + 1) // 2, dim // 2)
            inits = (sub_table_init(config), sub_table_init(config))
        elif op == "add":
            dims = (dim, dim)
            inits = (sub_table_init(config, parts=2), sub_table_init(config, parts=2))
        else:
            dims = (dim, dim)
            inits = (fill_ones, sub_table_init(config))
        self.split_dims = dims
        tables = [SubTable("quotient", math.ceil(ids / m), dims[0], inits[0]),
                  SubTable("remainder", m, dims[1], inits[1])]
        super().__init__(config, tables, device)

    def quotient_remainder(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows // m, rows % m)`` for rows ``(N,)`` in ``[0, ids)``."""
        return torch.div(rows, self.num_collisions, rounding_mode="floor"), rows % self.num_collisions

    def _both(self, rows: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        # Key-major KJT: the quotient feature's bags, then the remainder feature's, same bag structure.
        q, r = self.quotient_remainder(rows)
        n = rows.numel()
        inner_offsets = torch.cat([offsets, offsets[1:] + n])
        spread = None if weights is None else torch.cat([weights, weights])
        return self._inner(["quotient", "remainder"], torch.cat([q, r]), inner_offsets, spread, offsets.numel() - 1)

    def _pooled_sum(self, rows: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        both = self._both(rows, offsets, weights)
        if self.operation == "concat":
            return both  # the quotient half then the remainder half, already side by side
        dim = self.config.embedding_dim
        return both[:, :dim] + both[:, dim:]

    def id_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        if self.operation != "mult":
            return super().id_vectors(rows)
        both = self._both(rows, torch.arange(rows.numel() + 1, device=rows.device), None)
        dim = self.config.embedding_dim
        return both[:, :dim] * both[:, dim:]
