"""The hashing trick, sized by a compression ratio.

The hashing trick itself is a table config field: ``hash_size=m`` hashes every int64 id
into rows ``[0, m)`` with :func:`recembed.sparse.hashing.hash_ids` (seeded MurmurHash3
``fmix64``), so ``EmbeddingBagConfig(num_embeddings=m, hash_size=m, ...)`` *is* an m-row
hashed table. :class:`HashedSpec` is the same table chosen the way the other compression
kinds are chosen - by a ratio of the declared vocabulary - so one config can switch
between methods without its ``num_embeddings`` changing, and it drops ``padding_idx`` by
id (before hashing). It uses the very same hash: ``HashedSpec(num_buckets=m)`` on a
config with ``hash_seed=s`` sends every id to the row a plain ``num_embeddings=m,
hash_size=m, hash_seed=s`` table would.

Collisions: ids ``a`` and ``b`` share every parameter exactly when
``hash_ids(a) == hash_ids(b)``; with ``n`` ids in ``m`` rows about ``n / m`` ids share a
row, and a row holds the average need of its ids.

Example:
    >>> cfg = EmbeddingBagConfig(name="t_ad", num_embeddings=1_000_000, embedding_dim=16,
    ...                          feature_names=["ad"], compression=HashedSpec(compression_ratio=0.1))
    >>> ebc = EmbeddingBagCollection([cfg])   # 100,000 rows; any int64 ad id is accepted
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recembed.compress.base import (
    CompressedTable,
    SubTable,
    check_ratio,
    compressed_rows,
    id_space,
    sub_table_init,
)
from recembed.errors import ConfigError, InvalidDtypeError
from recembed.sparse.hashing import hash_ids
from recembed.tables.config import BaseEmbeddingConfig

__all__ = ["HashedEmbeddingTable", "HashedSpec"]


@dataclass(frozen=True)
class HashedSpec:
    """Hash ids into ``num_buckets`` rows, or ``ceil(compression_ratio * ids)`` rows; give one.

    ``ids`` is the config's ``hash_size`` when set, else ``num_embeddings``; raw ids of any
    int64 value are hashed (with the config's ``hash_seed``), as with ``hash_size``.
    """

    compression_ratio: float | None = None
    num_buckets: int | None = None

    def __post_init__(self) -> None:
        if (self.compression_ratio is None) == (self.num_buckets is None):
            raise ConfigError(
                f"HashedSpec: give exactly one of compression_ratio and num_buckets, got "
                f"compression_ratio={self.compression_ratio!r}, num_buckets={self.num_buckets!r}"
            )
        if self.compression_ratio is not None:
            check_ratio(self.compression_ratio, "HashedSpec")
        elif isinstance(self.num_buckets, bool) or not isinstance(self.num_buckets, int) or self.num_buckets < 1:
            raise ConfigError(f"HashedSpec: num_buckets must be an int >= 1, got {self.num_buckets!r}")

    def build(self, config: BaseEmbeddingConfig, device: torch.device | str | None = None) -> HashedEmbeddingTable:
        return HashedEmbeddingTable(config, self, device)


class HashedEmbeddingTable(CompressedTable):
    """``num_buckets`` rows; id ``i`` reads row ``hash_ids(i, num_buckets, config.hash_seed)``."""

    kind = "hashed"

    def __init__(self, config: BaseEmbeddingConfig, spec: HashedSpec, device: torch.device | str | None = None):
        ids = id_space(config)
        if spec.num_buckets is not None:
            if spec.num_buckets > ids:
                raise ConfigError(
                    f"table '{config.name}' (hashed): num_buckets={spec.num_buckets} exceeds the table's {ids} ids; "
                    "that would not compress it"
                )
            buckets = spec.num_buckets
        else:
            buckets = compressed_rows(ids, spec.compression_ratio)  # type: ignore[arg-type]
        self.num_buckets = buckets
        super().__init__(config, [SubTable("hashed", buckets, config.embedding_dim, sub_table_init(config))], device)

    def rows_of(self, ids: torch.Tensor, feature: str | None) -> torch.Tensor:
        # Raw ids are kept (any int64 value is fine): padding is matched by id, hashing comes after.
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            where = f"feature '{feature}' (table '{self.config.name}')" if feature else f"table '{self.config.name}'"
            raise InvalidDtypeError(f"{where}: ids must be integers, got dtype {ids.dtype}")
        return ids.to(torch.int64)

    def bucket_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Row of each raw id: ``(*,)`` int -> ``(*,)`` int64 in ``[0, num_buckets)``."""
        return hash_ids(ids, self.num_buckets, self.config.hash_seed)

    def _pooled_sum(self, rows: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        return self._inner(["hashed"], self.bucket_of(rows), offsets, weights, offsets.numel() - 1)
