"""ShardingSpec / ShardingPlan validation, the split rule, and the printed plan."""

from __future__ import annotations

import pytest

from recembed.distributed import (
    Shard,
    ShardingPlan,
    ShardingSpec,
    ShardingType,
    shard_layout,
)
from recembed.distributed.plan_types import split_sizes
from recembed.errors import ConfigError, UnknownKeyError


def test_split_sizes_are_contiguous_and_even():
    assert split_sizes(10, 3) == [4, 3, 3]
    assert split_sizes(8, 4) == [2, 2, 2, 2]
    assert split_sizes(2, 2) == [1, 1]


def test_row_and_column_layouts():
    rows = shard_layout(ShardingSpec("row_wise", (2, 0)), num_rows=5, dim=3)
    assert rows == [Shard(2, (0, 3), (0, 3)), Shard(0, (3, 5), (0, 3))]
    cols = shard_layout(ShardingSpec(ShardingType.COLUMN_WISE, (1, 3), sizes=(1, 5)), num_rows=4, dim=6)
    assert cols == [Shard(1, (0, 4), (0, 1)), Shard(3, (0, 4), (1, 6))]
    assert [s.rank for s in shard_layout(ShardingSpec("data_parallel"), 4, 2, world_size=3)] == [0, 1, 2]
    assert shard_layout(ShardingSpec("table-wise", 1), 4, 2) == [Shard(1, (0, 4), (0, 2))]


@pytest.mark.parametrize("kwargs, match", [
    ({"type": "diagonal"}, "not one of"),
    ({"type": "table_wise", "ranks": (0, 1)}, "exactly one rank"),
    ({"type": "row_wise", "ranks": ()}, "at least one rank"),
    ({"type": "row_wise", "ranks": (1, 1)}, "repeat a rank"),
    ({"type": "row_wise", "ranks": (0, -1)}, "ints >= 0"),
    ({"type": "row_wise", "ranks": (0, 1), "sizes": (3,)}, "one int >= 1 per rank"),
    ({"type": "table_wise", "ranks": (0,), "sizes": (3,)}, "sizes are for row_wise"),
])
def test_bad_specs_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ShardingSpec(**kwargs)


def test_layout_refuses_sizes_that_do_not_fit_the_table():
    with pytest.raises(ConfigError, match="sum to 5, but the table has 6 rows"):
        shard_layout(ShardingSpec("row_wise", (0, 1), sizes=(2, 3)), num_rows=6, dim=2)
    with pytest.raises(ConfigError, match="at least one of the table's 2 columns per rank"):
        shard_layout(ShardingSpec("column_wise", (0, 1, 2)), num_rows=6, dim=2)


def test_plan_checks_ranks_against_the_world():
    with pytest.raises(ConfigError, match="rank 2, but the world has 2 ranks"):
        ShardingPlan({"t": ShardingSpec("table_wise", (2,))}, world_size=2)
    plan = ShardingPlan.coerce({"t": ShardingSpec("row_wise", (0, 1))}, 2)
    with pytest.raises(ConfigError, match="made for 2 ranks, but the world has 4"):
        ShardingPlan.coerce(plan, 4)
    with pytest.raises(UnknownKeyError, match="no table 'u'"):
        plan["u"]


def test_plan_json_round_trip_and_text_table():
    plan = ShardingPlan({"t_big": ShardingSpec("row_wise", (0, 1, 2)), "t_small": "data_parallel"}, 3,
                        estimates={"t_big": {"bytes": 3 * 2**20, "lookups": 1536.0}},
                        rank_bytes=[2**20, 2**20, 2**20], rank_cost=[0.001, 0.001, 0.002])
    again = ShardingPlan.from_json(plan.to_json())
    assert again.specs == plan.specs and again.world_size == 3
    lines = plan.table().splitlines()
    assert lines[0].split() == ["table", "sharding", "ranks", "bytes", "lookups/batch"]
    assert lines[2].split() == ["t_big", "row_wise", "0-2", "3.0", "MiB", "1,536"]
    assert lines[3].split() == ["t_small", "data_parallel", "all", "-", "-"]
    assert lines[-1].split() == ["2", "1.0", "MiB", "2.000", "ms"]
