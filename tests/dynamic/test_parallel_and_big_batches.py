"""Big batches (several blocks of LRU victims per step) against an O(1) LRU reference; assign_many, map_ids_many."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

from recembed.dynamic import DynamicSpec, IdRowMap, assign_many, map_ids_many
from recembed.errors import ConfigError, ShapeMismatchError
from recembed.tables import EmbeddingBagConfig


class _LruReference:
    """LRU with min_count 1: an OrderedDict in stamp order (first touch in a step moves an id to the end)."""

    def __init__(self, capacity: int):
        self.capacity, self.step = capacity, 0
        self.order: OrderedDict[int, int] = OrderedDict()  # id -> row, least recently stamped first
        self.last: dict[int, int] = {}
        self.free = list(range(capacity - 1, -1, -1))
        self.used_rows: set[int] = set()

    def assign(self, ids: list[int]) -> tuple[list[int], list[int]]:
        self.step += 1
        out: list[int | None] = [None] * len(ids)
        new: dict[int, list[int]] = {}
        for i, key in enumerate(ids):
            if key in self.order:
                if self.last[key] != self.step:
                    self.last[key] = self.step
                    self.order.move_to_end(key)
                out[i] = self.order[key]
            else:
                new.setdefault(key, []).append(i)
        recycled = []
        for key, where in new.items():
            row = self.capacity  # the default row
            if self.free:
                row = self.free.pop()
            else:
                oldest = next(iter(self.order))
                if self.last[oldest] != self.step:
                    row = self.order.pop(oldest)
                    del self.last[oldest]
            if row != self.capacity:
                if row in self.used_rows:
                    recycled.append(row)
                self.used_rows.add(row)
                self.order[key] = row
                self.last[key] = self.step
            for i in where:
                out[i] = row
        return out, recycled


def _zipf_batches(seed: int, steps: int, size: int, universe: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    pool = rng.integers(-(2**62), 2**62, size=universe)
    return [pool[np.minimum(rng.zipf(1.05, size) - 1, universe - 1)] for _ in range(steps)]


@pytest.mark.parametrize("pool_target", [None, 700])
def test_big_batches_match_an_lru_reference(pool_target):
    # Over 4,096 new ids a step (a hot Zipf part and fresh random ids), so victims are read
    # from the pool in several blocks, and the pool is refilled in the middle of a step
    # (several times with a pool of about 700 rows).
    capacity = 12_000
    m, ref = IdRowMap(capacity), _LruReference(capacity)
    if pool_target is not None:
        m.pool_target = pool_target
    rng = np.random.default_rng(3)
    hot = _zipf_batches(0, steps=8, size=12_000, universe=30_000)
    new_per_step = []
    for part in hot:
        batch = np.concatenate([part, rng.integers(-(2**62), 2**62, size=9_000)])
        rng.shuffle(batch)
        new_per_step.append(int(np.count_nonzero(m.find(np.unique(batch)) == m.default_row)))
        m.advance()
        rows, recycled = m.assign(batch)
        want_rows, want_recycled = ref.assign(batch.tolist())
        assert rows.tolist() == want_rows
        assert recycled.tolist() == want_recycled
        live_rows = m.live()[1]
        assert len(np.unique(live_rows)) == len(live_rows)  # no two live ids share a row
    assert m.num_live() == capacity
    assert max(new_per_step[2:]) > 4096  # the map was full and still met more new ids than a block


def test_assign_many_equals_assigning_in_turn():
    batches = _zipf_batches(1, steps=4, size=3000, universe=5000)
    together = [IdRowMap(500, eviction=e) for e in ("lru", "lfu", "lru")]
    alone = [IdRowMap(500, eviction=e) for e in ("lru", "lfu", "lru")]
    for step, batch in enumerate(batches):
        per_map = [batch, batch[::-1].copy(), batch[: 100 * (step + 1)]]
        for m in together + alone:
            m.advance()
        got = assign_many(together, per_map, threads=2)
        for m, ids, (rows, recycled) in zip(alone, per_map, got):
            want_rows, want_recycled = m.assign(ids)
            assert rows.tolist() == want_rows.tolist() and recycled.tolist() == want_recycled.tolist()


def test_assign_many_refuses_bad_arguments():
    m = IdRowMap(4)
    with pytest.raises(ShapeMismatchError, match="2 maps but 1 id arrays"):
        assign_many([m, IdRowMap(4)], [np.array([1])])
    with pytest.raises(ConfigError, match="a map appears twice"):
        assign_many([m, m], [np.array([1]), np.array([2])])
    with pytest.raises(ConfigError, match="threads must be an int >= 1, got 0"):
        assign_many([m], [np.array([1])], threads=0)


def _tables(seed: int):
    out = []
    for k, spec in enumerate([DynamicSpec(seed=1), DynamicSpec(eviction="lfu", seed=2), DynamicSpec(ttl=2, seed=3)]):
        torch.manual_seed(seed + k)
        cfg = EmbeddingBagConfig(name=f"t{k}", num_embeddings=50, embedding_dim=4, feature_names=[f"f{k}"],
                                 optimizer="adagrad", dynamic=spec)
        out.append(cfg.dynamic.build(cfg))
    return out


def test_map_ids_many_equals_map_ids_in_turn_with_refreshed_rows():
    threaded, in_turn = _tables(0), _tables(0)
    for table in threaded + in_turn:  # non-zero optimizer state, so the zeroing of recycled rows shows
        table.row_table.fused.state[table.config.name].sum.fill_(1.0)
    batches = _zipf_batches(2, steps=6, size=400, universe=300)
    for step, batch in enumerate(batches):
        per_table = [torch.from_numpy(batch), torch.from_numpy(batch[::2].copy()), torch.from_numpy(batch[:50 + step])]
        got = map_ids_many(threaded, per_table, [f"f{k}" for k in range(3)], threads=2)
        for k, (table, ids) in enumerate(zip(in_turn, per_table)):
            assert torch.equal(got[k], table.map_ids(ids, f"f{k}"))
    for a, b in zip(threaded, in_turn):
        assert a.step == b.step == len(batches)
        assert torch.equal(a.rows_weight(), b.rows_weight())  # recycled rows got the same fresh values
        state = a.row_table.fused.state[a.config.name].sum
        assert torch.equal(state, b.row_table.fused.state[b.config.name].sum)
        assert 0 < int((state[:, 0] == 0).sum()) < 50  # recycled rows were zeroed, the others kept
        assert a.export()[0].tolist() == b.export()[0].tolist()
    assert any(a.id_map.meta[:, 3].max() > 0 for a in threaded)  # rows were recycled along the way


def test_lookup_rows_pools_rows_mapped_by_map_ids_many():
    a, b = _tables(5), _tables(5)
    ids = [torch.tensor([7, 8, 7, 9]), torch.tensor([1, 2, 3, 4]), torch.tensor([5, 5, 6, 6])]
    offsets = torch.tensor([0, 1, 4])
    rows = map_ids_many(a, ids, ["f0", "f1", "f2"])
    for k in range(3):
        assert torch.equal(a[k].lookup_rows(rows[k], offsets), b[k].lookup(ids[k], offsets, feature=f"f{k}"))
    with pytest.raises(ShapeMismatchError, match="offsets must be"):
        a[0].lookup_rows(rows[0], torch.tensor([0, 3]))


def test_collection_maps_its_dynamic_tables_together_as_each_table_alone_would() -> None:
    from recembed.sparse import KeyedJaggedTensor
    from recembed.tables import EmbeddingBagCollection

    def build() -> EmbeddingBagCollection:
        torch.manual_seed(0)
        configs = [EmbeddingBagConfig(name=f"t{k}", num_embeddings=6, embedding_dim=3, feature_names=[f"f{k}"],
                                      dynamic=DynamicSpec(), optimizer="adagrad", lr=0.1)
                   for k in range(2)]
        return EmbeddingBagCollection(configs)

    together, alone = build(), build()
    rng = np.random.default_rng(3)
    for _ in range(5):  # capacity 6 against 20 distinct ids: rows are evicted and recycled
        lists = {f"f{k}": [rng.integers(0, 20, size=rng.integers(0, 4)).tolist() for _ in range(4)] for k in range(2)}
        kjt = KeyedJaggedTensor.from_lists(lists)
        out = together(kjt).values()
        ref = torch.cat([alone.embedding_bags[f"t{k}"].lookup(kjt[f"f{k}"].values(), kjt[f"f{k}"].offsets(),
                                                               feature=f"f{k}") for k in range(2)], dim=1)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        out.square().sum().backward()
        ref.square().sum().backward()
    for k in range(2):
        torch.testing.assert_close(together.embedding_bags[f"t{k}"].rows_weight(),
                                   alone.embedding_bags[f"t{k}"].rows_weight(), rtol=0, atol=0)
