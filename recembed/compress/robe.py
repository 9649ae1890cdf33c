"""ROBE: random offset block embeddings (Desai et al., MLSys 2022), the ROBE-Z variant.

Every table value lives in one shared circular array ``A`` of ``size`` floats. An id's
vector is cut into chunks of ``chunk_size`` (Z) columns; chunk ``c`` of id ``i`` is read
as Z contiguous values starting at a hashed offset::

    start(i, c) = hash_ids(i * chunks + c, size, hash_seed)       chunks = ceil(D / Z)
    vector(i)[c * Z + z] = A[(start(i, c) + z) mod size]

Reading contiguous blocks keeps the lookup cache-friendly, and overlapping blocks share
values, so ``size`` can be any number of floats (``ceil(compression_ratio * ids * D)``).
There is no sign hash. The array is stored as a ``(size, 1)`` sub-table named
``robe``, so a fused optimizer updates each value with its own state (row-wise Adagrad on
a one-column table is elementwise Adagrad).

Example:
    >>> cfg = EmbeddingBagConfig(name="t_query", num_embeddings=200_000, embedding_dim=32,
    ...                          feature_names=["query"], compression=ROBESpec(compression_ratio=0.01))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recembed.compress.base import (
    CompressedTable,
    SubTable,
    check_ratio,
    id_space,
    sub_table_init,
)
from recembed.errors import ConfigError
from recembed.sparse.hashing import hash_ids
from recembed.tables.config import BaseEmbeddingConfig

__all__ = ["ROBEEmbeddingTable", "ROBESpec"]


@dataclass(frozen=True)
class ROBESpec:
    """One shared array of ``ceil(compression_ratio * ids * embedding_dim)`` floats read in blocks of ``chunk_size``."""

    compression_ratio: float = 0.1
    chunk_size: int = 8

    def __post_init__(self) -> None:
        check_ratio(self.compression_ratio, "ROBESpec")
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ConfigError(f"ROBESpec: chunk_size must be an int >= 1, got {self.chunk_size!r}")

    def build(self, config: BaseEmbeddingConfig, device: torch.device | str | None = None) -> ROBEEmbeddingTable:
        return ROBEEmbeddingTable(config, self, device)


class ROBEEmbeddingTable(CompressedTable):
    """A ``(size, 1)`` array read in hashed blocks of ``chunk_size`` values."""

    kind = "robe"

    def __init__(self, config: BaseEmbeddingConfig, spec: ROBESpec, device: torch.device | str | None = None):
        ids, dim = id_space(config), config.embedding_dim
        size = max(1, int(-(-spec.compression_ratio * ids * dim // 1)))
        self.size = size
        self.chunk_size = min(spec.chunk_size, dim)
        self.num_chunks = -(-dim // self.chunk_size)
        super().__init__(config, [SubTable("robe", size, 1, sub_table_init(config))], device)
        column = torch.arange(dim, device=device)
        self.register_buffer("_chunk_of_column", column // self.chunk_size, persistent=False)
        self.register_buffer("_offset_in_chunk", column % self.chunk_size, persistent=False)

    def element_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Array index of every value of every id: ``(N,)`` -> ``(N, D)`` int64 in ``[0, size)``."""
        keys = rows.unsqueeze(1) * self.num_chunks + torch.arange(self.num_chunks, device=rows.device)
        starts = hash_ids(keys, self.size, self.config.hash_seed)  # (N, chunks)
        return (starts[:, self._chunk_of_column] + self._offset_in_chunk) % self.size

    def _pooled_sum(self, rows: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        # One inner bag per (bag b, column j), holding column j's array index for each id of bag b.
        dim, bags, n = self.config.embedding_dim, offsets.numel() - 1, rows.numel()
        index = self.element_rows(rows)
        lengths = offsets[1:] - offsets[:-1]
        bag = torch.repeat_interleave(torch.arange(bags, device=rows.device), lengths)
        start = offsets[:-1][bag]
        columns = torch.arange(dim, device=rows.device)
        target = (start * dim).unsqueeze(1) + columns * lengths[bag].unsqueeze(1) \
            + (torch.arange(n, device=rows.device) - start).unsqueeze(1)
        values = torch.empty(n * dim, dtype=torch.int64, device=rows.device)
        values[target.reshape(-1)] = index.reshape(-1)
        spread = None
        if weights is not None:
            spread = torch.empty(n * dim, dtype=weights.dtype, device=weights.device)
            spread[target.reshape(-1)] = weights.unsqueeze(1).expand(n, dim).reshape(-1)
        inner_lengths = lengths.repeat_interleave(dim)
        inner_offsets = torch.cat([inner_lengths.new_zeros(1), inner_lengths.cumsum(0)])
        return self._inner(["robe"], values, inner_offsets, spread, bags * dim).view(bags, dim)
