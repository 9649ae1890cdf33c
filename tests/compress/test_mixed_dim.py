"""Mixed-dimension tables: blocks, widths from the power rule, projections, rank maps and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from recembed.compress import MixedDimSpec, default_block_sizes, power_rule_dims
from recembed.errors import ConfigError

from .builders import bags, one_table, pool


def by_hand(table, i: int) -> torch.Tensor:
    rank = i if table.rank_of_id is None else int(table.rank_of_id[i])
    starts = np.cumsum([0] + table.block_sizes)
    b = int(np.searchsorted(starts, rank, side="right") - 1)
    row = table.sub_table_weight(f"block{b}").detach()[rank - starts[b]]
    proj = table.projections[b]
    return row if isinstance(proj, torch.nn.Identity) else proj.weight.detach() @ row


def test_default_blocks_are_log_spaced_and_widths_follow_the_power_rule():
    assert default_block_sizes(10_000, 4) == [10, 90, 900, 9000]
    assert default_block_sizes(4, 4) == [1, 1, 1, 1]
    assert sum(default_block_sizes(37, 3)) == 37
    assert power_rule_dims([1.0, 0.25, 0.01], dim=16, alpha=0.5) == [16, 8, 2]
    assert power_rule_dims([1.0, 0.0], dim=16, alpha=0.5, min_dim=2) == [16, 2]
    table = one_table(MixedDimSpec(alpha=0.5), num_embeddings=10_000, dim=16).embedding_bags["t"]
    # Zipf(1) popularity by id order: mean 1/(r+1) over each block, relative to the head block.
    freq = 1.0 / np.arange(1, 10_001)
    starts = np.cumsum([0, 10, 90, 900, 9000])
    p = [freq[s:e].mean() for s, e in zip(starts[:-1], starts[1:])]
    assert table.block_dims == power_rule_dims(p, 16, 0.5)
    assert table.block_dims[0] == 16 and table.block_dims == sorted(table.block_dims, reverse=True)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_lookup_is_the_projected_block_row(mode):
    spec = MixedDimSpec(block_sizes=(3, 7, 20), block_dims=(5, 3, 1))
    ebc = one_table(spec, num_embeddings=30, dim=5, pooling=mode)
    table = ebc.embedding_bags["t"]
    assert isinstance(table.projections[0], torch.nn.Identity)
    assert table.projections[1].weight.shape == (5, 3) and table.projections[2].weight.shape == (5, 1)
    lists = [[0, 4, 29], [12], [], [2, 2, 9]]
    weights = None if mode == "max" else [[1.0, 0.5, -1.0], [2.0], [], [1.0, 1.0, 3.0]]
    out = ebc(bags(lists, weights)).values()
    want = torch.stack([pool([by_hand(table, i) for i in bag], mode, 5, None if weights is None else weights[b])
                        for b, bag in enumerate(lists)])
    assert_close(out, want)


def test_counts_rank_ids_by_popularity_and_the_rank_map_is_counted():
    counts = np.array([0, 50, 3, 50, 7, 1, 0, 100, 2, 9])
    table = one_table(MixedDimSpec(block_sizes=(2, 8), block_dims=(4, 2), counts=counts), num_embeddings=10,
                      dim=4).embedding_bags["t"]
    # Most popular first, ties by id: 7 (100), 1 (50), 3 (50), 9, 4, 2, 8, 5, 0, 6.
    assert table.rank_of_id.tolist() == [8, 1, 5, 2, 4, 7, 9, 0, 6, 3]
    block, local = table.locate(torch.tensor([7, 1, 3, 6]))
    assert block.tolist() == [0, 0, 1, 1] and local.tolist() == [0, 1, 0, 7]
    assert table.num_bytes() == (2 * 4 + 8 * 2) * 4 + 2 * 4 * 4 + 10 * 4  # tables + projection + rank map
    assert_close(table.id_vectors(torch.tensor([3])).detach()[0], by_hand(table, 3))


def test_compression_ratio_solves_alpha_within_the_byte_budget():
    counts = np.random.default_rng(0).zipf(1.3, 5000).clip(max=5000)
    counts = np.bincount(counts - 1, minlength=5000)[:5000]
    for ratio in (0.5, 0.25, 0.1):
        table = one_table(MixedDimSpec(compression_ratio=ratio, counts=counts), num_embeddings=5000,
                          dim=32).embedding_bags["t"]
        assert table.num_bytes() <= ratio * 5000 * 32 * 4
        assert table.block_dims[0] == 32
    loose = one_table(MixedDimSpec(compression_ratio=1.0), num_embeddings=5000, dim=32).embedding_bags["t"]
    assert loose.block_dims == [32, 32, 32, 32]  # alpha = 0 already fits


def test_projections_train_as_dense_parameters_under_a_fused_optimizer():
    ebc = one_table(MixedDimSpec(block_sizes=(2, 8), block_dims=(4, 2)), num_embeddings=10, dim=4,
                    optimizer="sgd", lr=0.5)
    table = ebc.embedding_bags["t"]
    dense = [p for p in ebc.parameters() if p.requires_grad]
    assert [p.shape for p in dense] == [torch.Size([4, 2])]
    before = table.sub_table_weight("block1").detach().clone()
    ebc(bags([[5, 6]])).values().sum().backward()
    assert dense[0].grad is not None and dense[0].grad.abs().sum() > 0
    assert not torch.equal(before, table.sub_table_weight("block1").detach())  # rows updated inside backward


def test_errors():
    with pytest.raises(ConfigError, match="at most one of alpha, compression_ratio and block_dims"):
        MixedDimSpec(alpha=0.3, compression_ratio=0.5)
    with pytest.raises(ConfigError, match="alpha must be a finite number >= 0"):
        MixedDimSpec(alpha=-1.0)
    with pytest.raises(ConfigError, match="counts must be a non-empty 1-D array"):
        MixedDimSpec(counts=[[1, 2]])
    with pytest.raises(ConfigError, match="counts has 3 entries, the table has 10 ids"):
        one_table(MixedDimSpec(counts=[1, 2, 3]), num_embeddings=10)
    with pytest.raises(ConfigError, match=r"block_sizes \[3, 3\] sum to 6, the table has 10 ids"):
        one_table(MixedDimSpec(block_sizes=(3, 3)), num_embeddings=10)
    with pytest.raises(ConfigError, match="block_dims \\[9, 2\\] exceed embedding_dim=4"):
        one_table(MixedDimSpec(block_sizes=(3, 7), block_dims=(9, 2)), num_embeddings=10, dim=4)
    with pytest.raises(ConfigError, match="compression_ratio=0.01 is out of reach"):
        one_table(MixedDimSpec(compression_ratio=0.01), num_embeddings=1000, dim=8)
