"""Bloom embeddings (Serra & Karatzoglou, RecSys 2017), as Spotlight's ``BloomEmbedding``.

An id's vector is the sum of ``k`` rows of one small table, each row picked by its own
hash function: with ``m = ceil(compression_ratio * ids)`` rows and seeds ``s_1..s_k``::

    row_j(id) = murmurhash3_32(id as int32, seed=s_j) mod m       (signed hash, floor modulo)
    vector(id) = sum_j table[row_j(id)]

This is Spotlight's formula (scikit-learn's ``murmurhash3_32``, ``positive=False``, then
numpy's ``%``). Two ids share *all* their parameters only if all ``k`` rows coincide
(probability about ``m**-k`` per pair), so a Bloom table degrades more gracefully than the
hashing trick at the same size. ``padding_idx`` ids add a zero vector and get no update
(Spotlight maps them to a zero row; here they are dropped before the lookup, so no
trained row is spent on them and ids that merely hash to row 0 are unaffected).

Default seeds: ``s_j = (0x9E3779B1 * (8 * hash_seed + j + 1)) mod 2**32`` for
``j = 0..k-1``, so tables with different ``hash_seed`` get different functions. Pass
``seeds=`` to choose them (e.g. Spotlight's own list, for bit-identical rows).

Example:
    >>> spec = BloomSpec(compression_ratio=0.1, num_hashes=2)
    >>> cfg = EmbeddingBagConfig(name="t_item", num_embeddings=50_000, embedding_dim=32,
    ...                          feature_names=["item"], compression=spec)
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
from recembed.compress.murmur import murmurhash3_32
from recembed.errors import ConfigError
from recembed.tables.config import BaseEmbeddingConfig

__all__ = ["MAX_BLOOM_HASHES", "BloomEmbeddingTable", "BloomSpec", "default_bloom_seeds"]

#: More hash functions than this add lookups without adding capacity (the paper uses 2-4).
MAX_BLOOM_HASHES = 8
_GOLDEN32 = 0x9E3779B1
_MAX_INT32_IDS = 1 << 31


def default_bloom_seeds(num_hashes: int, hash_seed: int = 0) -> tuple[int, ...]:
    """The seeds a :class:`BloomSpec` without ``seeds`` uses (see the module docstring)."""
    return tuple((_GOLDEN32 * (8 * hash_seed + j + 1)) & 0xFFFFFFFF for j in range(num_hashes))


@dataclass(frozen=True)
class BloomSpec:
    """Bloom embedding: ``num_hashes`` (k) hashed rows of a table ``compression_ratio`` times the plain size, summed.

    Args:
        compression_ratio: in (0, 1]; the table has ``ceil(ratio * ids)`` rows.
        num_hashes: k in ``[1, 8]``, and at most the number of rows.
        seeds: k distinct seeds in ``[0, 2**32)``; default :func:`default_bloom_seeds`.
    """

    compression_ratio: float = 0.2
    num_hashes: int = 4
    seeds: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check_ratio(self.compression_ratio, "BloomSpec")
        k = self.num_hashes
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_BLOOM_HASHES:
            raise ConfigError(f"BloomSpec: num_hashes must be an int in [1, {MAX_BLOOM_HASHES}], got {k!r}")
        if self.seeds is not None:
            seeds = tuple(self.seeds)
            if len(seeds) != k:
                raise ConfigError(f"BloomSpec: {len(seeds)} seeds given for num_hashes={k}; give one per hash")
            for s in seeds:
                if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 1 << 32:
                    raise ConfigError(f"BloomSpec: seed {s!r} is not an int in [0, 2**32)")
            if len(set(seeds)) != k:
                raise ConfigError(f"BloomSpec: seeds must be distinct (equal seeds are the same hash), got {seeds}")
            object.__setattr__(self, "seeds", seeds)

    def build(self, config: BaseEmbeddingConfig, device: torch.device | str | None = None) -> BloomEmbeddingTable:
        return BloomEmbeddingTable(config, self, device)


class BloomEmbeddingTable(CompressedTable):
    """One ``(num_buckets, D)`` table; an id's vector sums its ``num_hashes`` hashed rows."""

    kind = "bloom"

    def __init__(self, config: BaseEmbeddingConfig, spec: BloomSpec, device: torch.device | str | None = None):
        ids = id_space(config)
        if ids > _MAX_INT32_IDS:
            raise ConfigError(
                f"table '{config.name}' (bloom): {ids} ids; Bloom hashes int32 keys, so at most 2**31 ids "
                "(set hash_size to fold larger id ranges first)"
            )
        buckets = compressed_rows(ids, spec.compression_ratio)
        if spec.num_hashes > buckets:
            raise ConfigError(
                f"table '{config.name}' (bloom): num_hashes={spec.num_hashes} is more than the {buckets} rows of "
                f"the compressed table (compression_ratio={spec.compression_ratio} of {ids} ids); "
                "use fewer hashes or a larger ratio"
            )
        self.num_buckets = buckets
        self.num_hashes = spec.num_hashes
        self.seeds = spec.seeds if spec.seeds is not None else default_bloom_seeds(spec.num_hashes, config.hash_seed)
        table = SubTable("bloom", buckets, config.embedding_dim, sub_table_init(config, parts=spec.num_hashes))
        super().__init__(config, [table], device)

    def bucket_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The k rows of each id: ``(N,)`` -> ``(N, k)`` int64 in ``[0, num_buckets)``."""
        if rows.numel() == 0:
            return rows.new_zeros((0, self.num_hashes))
        # torch's % takes the divisor's sign, as numpy's does, so negative hashes land in [0, m).
        return torch.stack([murmurhash3_32(rows, s) % self.num_buckets for s in self.seeds], dim=1)

    def _pooled_sum(self, rows: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        k = self.num_hashes
        buckets = self.bucket_rows(rows).reshape(-1)  # id-major: the k rows of id i sit together
        spread = None if weights is None else weights.repeat_interleave(k)
        return self._inner(["bloom"], buckets, offsets * k, spread, offsets.numel() - 1)
