"""Routing ids to shard owners and rebuilding the owners' global batches, without processes."""

from __future__ import annotations

import pytest
import torch

from recembed.data.batch import Batch
from recembed.distributed import ShardingSpec, kjt_rows, local_batch, rank_slice
from recembed.distributed.layout import CollectionLayout
from recembed.distributed.routing import assemble, route
from recembed.errors import ConfigError, IdOutOfRangeError
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagConfig

CONFIGS = [
    EmbeddingBagConfig(name="t_row", num_embeddings=10, embedding_dim=2, feature_names=["r1", "r2"],
                       pooling="mean", padding_idx=3),
    EmbeddingBagConfig(name="t_col", num_embeddings=5, embedding_dim=5, feature_names=["c"]),
    EmbeddingBagConfig(name="t_tab", num_embeddings=6, embedding_dim=3, feature_names=["t"]),
    EmbeddingBagConfig(name="t_rep", num_embeddings=4, embedding_dim=1, feature_names=["d"]),
]
SPECS = {"t_row": ShardingSpec("row_wise", (1, 0)), "t_col": ShardingSpec("column_wise", (0, 1), sizes=(2, 3)),
         "t_tab": ShardingSpec("table_wise", (1,)), "t_rep": ShardingSpec("data_parallel")}
IDS = {
    "r1": [[0, 3, 7], [], [9, 5], [4]],
    "r2": [[3], [8, 1], [], [6, 2, 3]],
    "c": [[1], [2, 3], [4], []],
    "t": [[5], [], [0, 1], [2]],
    "d": [[3], [2], [], [1, 0]],
}
# Each id's weight is the id + 0.5, so a weight shows which id it travelled with.
BATCH = KeyedJaggedTensor.from_lists(IDS, weights={k: [[i + 0.5 for i in bag] for bag in v] for k, v in IDS.items()})


def _owners_batches(layout, world):
    routed = [route(kjt_rows(BATCH, s.start, s.stop), layout) for s in (rank_slice(4, r, world) for r in range(world))]
    sizes = [r.batch for r in routed]
    out = []
    for d in range(world):
        keys = [e.feature for e in layout.entries[d]]
        msgs = [r.messages[d] for r in routed]
        out.append(assemble(keys, sizes, [m.lengths for m in msgs], [m.values for m in msgs],
                            [m.weights for m in msgs]))
    return routed, out


def test_layout_orders_sent_shards_before_replicas():
    layout = CollectionLayout(CONFIGS, SPECS, 2)
    assert [(e.feature, e.kind.value) for e in layout.entries[1]] == [
        ("r1", "row_wise"), ("r2", "row_wise"), ("c", "column_wise"), ("t", "table_wise"), ("d", "data_parallel")]
    assert layout.sent_width == [2 + 2 + 2, 2 + 2 + 3 + 3]
    assert layout.dp_width == 1
    # Rank 0 sends r1, r2 (rows 5-9) then c's columns 0-1; rank 1 r1, r2 (rows 0-4), c's columns 2-4, t.
    assert layout.received_to_output.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 6, 7, 8, 9, 10, 11]
    assert layout.dp_to_output.tolist() == [12]
    assert layout.mean_row_wise == ["r1", "r2"]


def test_owners_see_the_global_batch_in_order():
    layout = CollectionLayout(CONFIGS, SPECS, 2)
    routed, owners = _owners_batches(layout, 2)
    assert [o.stride() for o in owners] == [4, 4]
    for d in (0, 1):  # whole bags: column-wise on both ranks, the replica on both, table-wise on rank 1
        for key in ("c", "d"):
            assert [x.tolist() for x in owners[d][key].to_dense()] == [x.tolist() for x in BATCH[key].to_dense()]
    assert [x.tolist() for x in owners[1]["t"].to_dense()] == [[5], [], [0, 1], [2]]
    assert "t" not in owners[0].keys()
    # Row-wise: rank 1 holds rows 0-4, rank 0 rows 5-9 (local rows start at 0); padding id 3 is dropped.
    assert [x.tolist() for x in owners[1]["r1"].to_dense()] == [[0], [], [], [4]]
    assert [x.tolist() for x in owners[0]["r1"].to_dense()] == [[2], [], [4, 0], []]
    assert [x.tolist() for x in owners[1]["r2"].to_dense()] == [[], [1], [], [2]]
    assert [x.tolist() for x in owners[0]["r2"].to_dense()] == [[], [3], [], [1]]
    # Weights travel with their ids.
    assert [x.tolist() for x in owners[0]["r1"].to_dense_weights()] == [[7.5], [], [9.5, 5.5], []]
    # MEAN row-wise bags divide by the non-padding ids of the whole bag, counted before routing.
    assert routed[0].mean_counts["r1"].tolist() == [2, 0] and routed[1].mean_counts["r2"].tolist() == [0, 2]


def test_ids_are_checked_against_the_original_table():
    layout = CollectionLayout(CONFIGS, SPECS, 2)
    bad = KeyedJaggedTensor.from_lists({"r1": [[10]], "r2": [[]], "c": [[]], "t": [[]], "d": [[]]})
    with pytest.raises(IdOutOfRangeError, match="feature 'r1' \\(table 't_row'\\): id 10 out of range"):
        route(bad, layout)


def test_layout_refuses_specs_the_table_cannot_take():
    with pytest.raises(ConfigError, match="data_parallel replicates on every rank"):
        CollectionLayout(CONFIGS, {**SPECS, "t_rep": ShardingSpec("data_parallel", (0,))}, 2)
    with pytest.raises(ConfigError, match="row_wise over 3 ranks needs at least that many rows"):
        tiny = EmbeddingBagConfig(name="t_rep", num_embeddings=2, embedding_dim=1, feature_names=["d"])
        CollectionLayout(CONFIGS[:3] + [tiny], {**SPECS, "t_rep": ShardingSpec("row_wise", (0, 1, 2))}, 3)


def test_rank_slices_cover_the_batch_in_order():
    parts = [rank_slice(10, r, 4) for r in range(4)]
    assert [(p.start, p.stop) for p in parts] == [(0, 2), (2, 5), (5, 7), (7, 10)]
    for key in BATCH.keys():
        rows = [x.tolist() for p in (rank_slice(4, r, 3) for r in range(3))
                for x in kjt_rows(BATCH, p.start, p.stop)[key].to_dense()]
        assert rows == [x.tolist() for x in BATCH[key].to_dense()]
    empty = kjt_rows(BATCH, 2, 2)
    assert empty.stride() == 0 and empty.values().numel() == 0 and empty.weights().numel() == 0
    with pytest.raises(ConfigError, match=r"samples \[3, 6\) are not within the batch of 4"):
        kjt_rows(BATCH, 3, 6)


def test_local_batch_slices_every_field():
    batch = Batch(sparse=BATCH, dense=torch.arange(8.0).view(4, 2), labels=torch.tensor([0.0, 1.0, 2.0, 3.0]),
                  timestamps=torch.tensor([10, 11, 12, 13]), extra={"neg": torch.arange(12).view(4, 3)})
    part = local_batch(batch, rank=1, world_size=2)
    assert part.labels.tolist() == [2.0, 3.0] and part.timestamps.tolist() == [12, 13]
    assert part.dense.tolist() == [[4.0, 5.0], [6.0, 7.0]]
    assert part.extra["neg"].tolist() == [[6, 7, 8], [9, 10, 11]]
    assert [x.tolist() for x in part.sparse["r1"].to_dense()] == [[9, 5], [4]]
