"""ROBE: every value read from one shared array at hashed block offsets."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from recembed.compress import ROBESpec
from recembed.errors import ConfigError
from recembed.sparse.hashing import hash_ids

from .builders import bags, one_table, pool


def by_hand(table, i: int, dim: int) -> torch.Tensor:
    array = table.sub_table_weight("robe").detach()[:, 0]
    z, chunks, size = table.chunk_size, table.num_chunks, table.size
    starts = [int(hash_ids(torch.tensor([i * chunks + c]), size, table.config.hash_seed)) for c in range(chunks)]
    return torch.stack([array[(starts[j // z] + j % z) % size] for j in range(dim)])


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_lookup_reads_contiguous_blocks_at_hashed_offsets(mode):
    ebc = one_table(ROBESpec(compression_ratio=0.1, chunk_size=3), num_embeddings=40, dim=7, pooling=mode)
    table = ebc.embedding_bags["t"]
    assert table.size == math.ceil(0.1 * 40 * 7) and table.num_chunks == 3
    lists = [[1, 2, 39], [8], [], [8, 8]]
    weights = None if mode == "max" else [[1.0, 2.0, -1.0], [0.5], [], [1.0, 1.0]]
    out = ebc(bags(lists, weights)).values()
    want = torch.stack([pool([by_hand(table, i, 7) for i in bag], mode, 7, None if weights is None else weights[b])
                        for b, bag in enumerate(lists)])
    assert_close(out, want)


def test_fused_training_updates_the_shared_array():
    ebc = one_table(ROBESpec(0.2, 4), num_embeddings=30, dim=8, optimizer="rowwise_adagrad", lr=0.1)
    table = ebc.embedding_bags["t"]
    before = table.sub_table_weight("robe").detach().clone()
    ebc(bags([[3, 4]])).values().pow(2).sum().backward()
    changed = (before != table.sub_table_weight("robe").detach()).flatten()
    touched = torch.unique(table.element_rows(torch.tensor([3, 4])))
    assert set(torch.nonzero(changed).flatten().tolist()) <= set(touched.tolist())
    assert changed.any()


def test_errors():
    with pytest.raises(ConfigError, match="chunk_size must be an int >= 1"):
        ROBESpec(0.1, chunk_size=0)
    with pytest.raises(ConfigError, match=r"compression_ratio must be a number in \(0, 1\]"):
        ROBESpec(compression_ratio=1.01)
