"""The planner: memory limits (optimizer state counted), balance, constraints, naming."""

from __future__ import annotations

import pytest
from torch import nn

from recembed.distributed import ShardingType, plan, shard_layout
from recembed.errors import ConfigError, UnknownKeyError
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig


def _cfg(name, rows, dim, **kw):
    return EmbeddingBagConfig(name=name, num_embeddings=rows, embedding_dim=dim, **kw)


def _bytes_per_rank(p, configs, world):
    """Independent count: float32 weights + Adam's two elementwise states / row-wise Adagrad's one per row."""
    per_state = {"adam": (2, 0), "rowwise_adagrad": (0, 1), None: (0, 0)}
    out = [0] * world
    for cfg in configs:
        elem, row = per_state[None if cfg.optimizer is None else cfg.optimizer.value]
        for s in shard_layout(p[cfg.name], cfg.num_embeddings, cfg.embedding_dim, world):
            out[s.rank] += 4 * s.num_rows * s.num_cols * (1 + elem) + 4 * s.num_rows * row
    return out


def test_memory_limit_with_optimizer_state_is_respected():
    configs = [_cfg("big", 40_000, 32, optimizer="adam"), _cfg("mid", 20_000, 32, optimizer="rowwise_adagrad"),
               _cfg("small", 500, 8, optimizer="adam"), _cfg("tiny", 10, 4)]
    limit = 12_000_000  # "big" alone is 40k x 32 x 4 x 3 = 15.4 MB: it must be split
    p = plan(configs, world_size=2, per_rank_memory_bytes=limit, batch_size=64)
    used = _bytes_per_rank(p, configs, 2)
    assert max(used) <= limit
    assert [int(b) for b in p.rank_bytes] == used
    assert p["big"].type in (ShardingType.ROW_WISE, ShardingType.COLUMN_WISE)
    assert len(p["big"].ranks) == 2
    assert p.estimates["big"]["bytes"] == 40_000 * 32 * 4 * 3
    assert p.estimates["small"]["lookups"] == 64 * 2


def test_a_table_that_cannot_fit_is_reported():
    with pytest.raises(ConfigError, match="table 'huge' .* does not fit: split over all 2 ranks"):
        plan([_cfg("huge", 100_000, 64, optimizer="adam")], 2, per_rank_memory_bytes=10_000_000)


def test_equal_tables_spread_one_per_rank():
    configs = [_cfg(f"t{i}", 1000, 16) for i in range(4)]
    p = plan(configs, world_size=4, batch_size=128)
    assert sorted(p[c.name].ranks[0] for c in configs) == [0, 1, 2, 3]
    assert all(p[c.name].type is ShardingType.TABLE_WISE for c in configs)


def test_constraints_of_optimizers_and_pooling_hold():
    # Neither table can stay whole on one rank next to the other, so each must be split: row-wise Adagrad keeps a
    # per-row statistic (no column split), MAX pooling cannot add partial sums (no row split).
    configs = [_cfg("rw_ada", 30_000, 16, optimizer="rowwise_adagrad"), _cfg("max", 20_000, 16, pooling="max")]
    p = plan(configs, world_size=2, per_rank_memory_bytes=2_000_000, batch_size=32)
    assert p["rw_ada"].type is ShardingType.ROW_WISE
    assert p["max"].type is ShardingType.COLUMN_WISE


def test_num_shards_is_honoured():
    p = plan([_cfg("t", 900, 12, num_shards=3), _cfg("u", 50, 4)], world_size=4)
    assert len(p["t"].ranks) == 3 and p["t"].type in (ShardingType.ROW_WISE, ShardingType.COLUMN_WISE)
    with pytest.raises(ConfigError, match="num_shards=5 exceeds the world size 4"):
        plan([_cfg("t", 900, 12, num_shards=5)], world_size=4)


def test_tables_of_a_model_are_named_by_path_when_names_clash():
    class TwoCollections(nn.Module):
        def __init__(self):
            super().__init__()
            self.left = EmbeddingBagCollection([_cfg("t", 10, 4, feature_names=["a"])])
            self.right = EmbeddingBagCollection([_cfg("t", 10, 4, feature_names=["b"]),
                                                 _cfg("u", 10, 4, feature_names=["c"])])

    p = plan(TwoCollections(), world_size=2)
    assert sorted(p.specs) == ["left.t", "right.t", "u"]


def test_bad_arguments():
    with pytest.raises(UnknownKeyError, match="unknown table 'nope'"):
        plan([_cfg("t", 10, 4)], 2, expected_ids_per_batch={"nope": 3})
    with pytest.raises(ConfigError, match="world_size must be an int >= 1"):
        plan([_cfg("t", 10, 4)], 0)
    with pytest.raises(ConfigError, match="2 entries for 3 ranks"):
        plan([_cfg("t", 10, 4)], 3, per_rank_memory_bytes=[1e6, 1e6])
