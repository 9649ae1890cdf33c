"""DynamicEmbeddingTable in both collections: training parity, recycling, state, export, admission."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from recembed.dynamic import DynamicEmbeddingTable, DynamicSpec
from recembed.dynamic.fresh import fresh_values
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import (
    EmbeddingBagCollection,
    EmbeddingBagConfig,
    EmbeddingCollection,
    EmbeddingConfig,
)

RAW_IDS = [2**62 + 5, -7, 0, 123456789012, -(2**61), 42, 99, 2**40, 17, -1]


def _bag_stream(seed: int, steps: int, batch: int = 4, vocab: list[int] = RAW_IDS):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        lengths = rng.integers(0, 4, size=batch)
        ids = [[vocab[i] for i in rng.integers(0, len(vocab), size=n)] for n in lengths]
        out.append(ids)
    return out


def _kjt(feature: str, bags) -> KeyedJaggedTensor:
    return KeyedJaggedTensor.from_lists({feature: bags})


def _targets(steps: int, batch: int, dim: int):
    g = torch.Generator().manual_seed(3)
    return [torch.randn(batch, dim, generator=g) for _ in range(steps)]


def _dynamic(ebc) -> DynamicEmbeddingTable:
    return ebc.embedding_bags["t"]


@pytest.mark.parametrize("optimizer, pooling", [("adagrad", "mean"), ("rowwise_adam", "sum"), ("sgd", "max")])
def test_bag_training_equals_a_plain_table_over_a_dense_remap(optimizer, pooling):
    capacity, dim, steps = 12, 6, 6
    fields = {"name": "t", "embedding_dim": dim, "feature_names": ["item"], "optimizer": optimizer, "lr": 0.05, "pooling": pooling}
    dyn = EmbeddingBagCollection([EmbeddingBagConfig(num_embeddings=capacity, dynamic=DynamicSpec(), **fields)])
    start = _dynamic(dyn).rows_weight().detach().clone()  # capacity rows and the zero default row
    # The plain table has the same zero padding row, so both go through the same pooling kernel.
    plain = EmbeddingBagCollection([EmbeddingBagConfig(num_embeddings=capacity + 1, init=start, padding_idx=capacity,
                                                       **fields)])
    dense: dict[int, int] = {}  # raw id -> order of first appearance
    for bags, target in zip(_bag_stream(0, steps), _targets(steps, 4, dim)):
        for bag in bags:
            for key in bag:
                dense.setdefault(key, len(dense))
        out_dyn = dyn(_kjt("item", bags)).values()
        out_plain = plain(_kjt("item", [[dense[k] for k in bag] for bag in bags])).values()
        assert_close(out_dyn, out_plain, rtol=0, atol=0)
        (out_dyn * target).sum().backward()
        (out_plain * target).sum().backward()
    assert len(dense) == len(RAW_IDS)
    assert_close(_dynamic(dyn).rows_weight().detach(), plain.embedding_bags["t"].weight.detach(), rtol=0, atol=0)
    ids, vectors = _dynamic(dyn).export()
    assert sorted(ids.tolist()) == ids.tolist() == sorted(RAW_IDS)
    assert_close(vectors, plain.embedding_bags["t"].weight.detach()[[dense[k] for k in ids.tolist()]])


def test_sequence_training_equals_a_plain_table_over_a_dense_remap():
    capacity, dim, steps = 10, 5, 5
    fields = {"name": "t", "embedding_dim": dim, "feature_names": ["seq"], "optimizer": "adam", "lr": 0.1}
    dyn = EmbeddingCollection([EmbeddingConfig(num_embeddings=capacity, dynamic=DynamicSpec(), **fields)])
    start = dyn.embeddings["t"].rows_weight().detach()[:capacity].clone()
    plain = EmbeddingCollection([EmbeddingConfig(num_embeddings=capacity, init=start, **fields)])
    dense: dict[int, int] = {}
    g = torch.Generator().manual_seed(1)
    for bags in _bag_stream(2, steps):
        flat = [k for bag in bags for k in bag]
        for key in flat:
            dense.setdefault(key, len(dense))
        out_dyn = dyn(_kjt("seq", bags))["seq"].values()
        out_plain = plain(_kjt("seq", [[dense[k] for k in bag] for bag in bags]))["seq"].values()
        assert out_dyn.shape == (len(flat), dim)
        assert_close(out_dyn, out_plain, rtol=0, atol=0)
        target = torch.randn(len(flat), dim, generator=g)
        (out_dyn * target).sum().backward()
        (out_plain * target).sum().backward()
    assert_close(dyn.embeddings["t"].rows_weight().detach()[:capacity], plain.embeddings["t"].weight.detach(),
                 rtol=0, atol=0)


def test_an_id_seen_again_after_eviction_gets_a_fresh_row_and_zeroed_state():
    dim, capacity = 4, 2
    cfg = EmbeddingBagConfig(name="t", num_embeddings=capacity, embedding_dim=dim, feature_names=["item"],
                             optimizer="adagrad", lr=0.5, dynamic=DynamicSpec(eviction="lru", seed=11))
    ebc = EmbeddingBagCollection([cfg])
    table = _dynamic(ebc)
    state = ebc.embedding_bags["t"].row_table.fused.state["t"]
    for bags in ([[100], [200]], [[200], [200]]):  # id 100 seen at step 1 only; 200 at steps 1 and 2
        ebc(_kjt("item", bags)).values().sum().backward()
    assert float(state.sum[0].abs().sum()) > 0  # row 0 (id 100) has optimizer state
    trained_200 = table.rows_weight().detach()[1].clone()
    out = ebc(_kjt("item", [[300], [200]])).values()  # full: LRU evicts id 100 from row 0
    bound = math.sqrt(1.0 / capacity)
    # Fresh values of row 0 after its first release (generation 1), from the table's seed.
    fresh = torch.from_numpy(fresh_values("uniform", (-bound, bound), dim, np.array([0, 1]), np.array([1, 1]), 11))
    assert_close(out[0], fresh[0], rtol=0, atol=0)  # id 300 reads fresh initial values
    assert float(state.sum[0].abs().sum()) == 0.0  # ... and zeroed optimizer state
    assert_close(out[1], trained_200)  # id 200 keeps its row
    out.sum().backward()
    out = ebc(_kjt("item", [[100], [300]])).values()  # id 100 again: evicts 200 (row 1), fresh too
    assert_close(out[0], fresh[1], rtol=0, atol=0)
    assert float(state.sum[1].abs().sum()) == 0.0
    assert table.export()[0].tolist() == [100, 300]


def test_recycled_rows_of_a_float16_table_get_the_same_fresh_values():
    cfg = EmbeddingBagConfig(name="t", num_embeddings=1, embedding_dim=6, feature_names=["item"], dtype="float16",
                             optimizer="adagrad", dynamic=DynamicSpec(seed=4))
    ebc = EmbeddingBagCollection([cfg])
    ebc(_kjt("item", [[5]])).values().sum().backward()
    out = ebc(_kjt("item", [[6]])).values()  # row 0 passes from id 5 to id 6
    bound = math.sqrt(1.0)
    want = fresh_values("uniform", (-bound, bound), 6, np.array([0]), np.array([1]), 4)[0]
    assert_close(out[0], torch.from_numpy(want).half().float(), rtol=0, atol=0)
    assert float(_dynamic(ebc).row_table.fused.state["t"].sum[0].abs().sum()) == 0.0


def _stream_model(seed: int, spec: DynamicSpec, optimizer: str = "rowwise_adagrad") -> EmbeddingBagCollection:
    torch.manual_seed(seed)
    cfgs = [
        EmbeddingBagConfig(name="t", num_embeddings=5, embedding_dim=3, feature_names=["item", "item2"],
                           optimizer=optimizer, lr=0.2, dynamic=spec),
        EmbeddingBagConfig(name="plain", num_embeddings=4, embedding_dim=2, feature_names=["u"], optimizer="sgd"),
    ]
    return EmbeddingBagCollection(cfgs)


def _stream_batches(seed: int, steps: int):
    rng = np.random.default_rng(seed)
    vocab = rng.integers(-(2**40), 2**40, size=16).tolist()
    batches = []
    for _ in range(steps):
        pick = lambda: [[vocab[i] for i in rng.integers(0, 16, size=rng.integers(0, 4))] for _ in range(3)]
        batches.append(KeyedJaggedTensor.from_lists({"item2": pick(), "item": pick(),
                                                     "u": [[int(v)] for v in rng.integers(0, 4, size=3)]}))
    return batches


@pytest.mark.parametrize("spec", [
    DynamicSpec(eviction="lfu", ttl=3, min_count=2),
    DynamicSpec(eviction="lru", min_count=2, counter="count_min", sketch_width=32, default_row="trained"),
])
def test_save_and_load_mid_stream_continues_identically(spec):
    batches = _stream_batches(5, 16)
    a = _stream_model(0, spec)
    for kjt in batches[:8]:
        (a(kjt).values() ** 2).sum().backward()
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = _stream_model(1, spec)  # other initial values: everything must come from the file
    b.load_state_dict(torch.load(buffer, weights_only=True))
    assert b.embedding_bags["t"].step == a.embedding_bags["t"].step == 8
    recycled_any = False
    for kjt in batches[8:]:
        before = a.embedding_bags["t"].export()[0].tolist()
        out_a, out_b = a(kjt).values(), b(kjt).values()
        assert_close(out_a, out_b, rtol=0, atol=0)
        (out_a ** 2).sum().backward()
        (out_b ** 2).sum().backward()
        recycled_any |= bool(set(before) - set(a.embedding_bags["t"].export()[0].tolist()))
    assert recycled_any  # the continuation evicted or expired rows, so the map state mattered
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_a_state_saved_with_the_old_lru_queue_loads_and_continues_identically():
    # Versions before the victim pool saved an LRU queue: its order is the rows' stamp order,
    # which meta holds, so the entry is accepted and ignored.
    spec = DynamicSpec(eviction="lru", ttl=4)
    batches = _stream_batches(6, 16)
    a = _stream_model(0, spec)
    for kjt in batches[:8]:
        (a(kjt).values() ** 2).sum().backward()
    state = a.state_dict()
    meta = state["embedding_bags.t.id_map.meta"].numpy()
    live = np.flatnonzero(meta[:, 1] >= 0)
    order = live[np.argsort(meta[live, 4])]
    state["embedding_bags.t.id_map.lru_queue"] = torch.from_numpy(np.stack([order, meta[order, 4]], axis=1))
    b = _stream_model(1, spec)
    b.load_state_dict(state)  # strict: the legacy key is not reported as unexpected
    for kjt in batches[8:]:
        out_a, out_b = a(kjt).values(), b(kjt).values()
        assert_close(out_a, out_b, rtol=0, atol=0)
        (out_a ** 2).sum().backward()
        (out_b ** 2).sum().backward()
    assert a.embedding_bags["t"].export()[0].tolist() == b.embedding_bags["t"].export()[0].tolist()


def test_export_and_load_export_round_trip():
    cfg = EmbeddingBagConfig(name="t", num_embeddings=6, embedding_dim=4, feature_names=["item"],
                             optimizer="adagrad", dynamic=DynamicSpec(eviction="lfu"))
    src = EmbeddingBagCollection([cfg])
    for bags in _bag_stream(7, 4):
        src(_kjt("item", bags)).values().sum().backward()
    ids, vectors = _dynamic(src).export()
    assert ids.numel() == 6 and vectors.shape == (6, 4)
    dst = EmbeddingBagCollection([cfg])
    _dynamic(dst).load_export(ids, vectors)
    ids2, vectors2 = _dynamic(dst).export()
    assert torch.equal(ids, ids2) and torch.equal(vectors, vectors2)
    src.eval()
    dst.eval()
    probe = _kjt("item", [[int(ids[0]), int(ids[3])], [int(ids[5])], [123]])  # 123 is unknown: default row
    assert_close(src(probe).values(), dst(probe).values(), rtol=0, atol=0)
    assert float(dst.embedding_bags["t"].row_table.fused.state["t"].sum.abs().sum()) == 0.0


def test_eval_mode_reads_without_changing_the_map():
    cfg = EmbeddingBagConfig(name="t", num_embeddings=3, embedding_dim=2, feature_names=["item"],
                             dynamic=DynamicSpec())
    ebc = EmbeddingBagCollection([cfg])
    ebc(_kjt("item", [[1, 2]]))
    ebc.eval()
    with torch.no_grad():
        out = ebc(_kjt("item", [[1], [5], [6], [7]])).values()
    table = _dynamic(ebc)
    assert table.step == 1 and table.export()[0].tolist() == [1, 2]
    assert torch.equal(out[1:], torch.zeros(3, 2))  # unknown ids: the zero default row
    assert_close(out[0], table.rows_weight().detach()[0])


@pytest.mark.parametrize("default_row", ["zero", "trained"])
def test_ids_below_min_count_read_the_default_row(default_row):
    cfg = EmbeddingBagConfig(name="t", num_embeddings=4, embedding_dim=3, feature_names=["item"], pooling="mean",
                             optimizer="sgd", lr=1.0, dynamic=DynamicSpec(min_count=2, default_row=default_row))
    ebc = EmbeddingBagCollection([cfg])
    table = _dynamic(ebc)
    default_before = table.rows_weight().detach()[4].clone()
    out = ebc(_kjt("item", [[8], [9, 8]])).values()  # 8 reaches 2 occurrences in this batch; 9 does not
    row8 = table.rows_weight().detach()[0]
    if default_row == "zero":
        assert torch.equal(default_before, torch.zeros(3))
        assert_close(out[1], row8)  # the unadmitted id is left out of the mean
    else:
        assert_close(out[1], (row8 + default_before) / 2)
    out.sum().backward()
    default_after = table.rows_weight().detach()[4]
    assert torch.equal(default_after, default_before) == (default_row == "zero")  # trained only when asked
    assert table.export()[0].tolist() == [8]


def test_clock_advances_once_per_forward_whatever_the_key_order():
    cfg = EmbeddingBagConfig(name="t", num_embeddings=8, embedding_dim=2, feature_names=["a", "b"],
                             dynamic=DynamicSpec(ttl=1))
    ebc = EmbeddingBagCollection([cfg])
    for _ in range(3):
        ebc(KeyedJaggedTensor.from_lists({"b": [[1]], "a": [[2]]}))
    assert _dynamic(ebc).step == 3
    assert _dynamic(ebc).export()[0].tolist() == [1, 2]


def test_string_ids_are_hashed_with_the_documented_hash():
    from recembed.sparse.hashing import hash_strings

    cfg = EmbeddingConfig(name="t", num_embeddings=4, embedding_dim=2, feature_names=["tag"],
                          dynamic=DynamicSpec(id_type="str"))
    table = cfg.dynamic.build(cfg)
    a = table.lookup_sequence(["red", "blue", "red"])
    assert_close(a[0], a[2]) and not torch.equal(a[0], a[1])
    assert table.export()[0].tolist() == sorted(hash_strings(["red", "blue"]).tolist())
    same = table.lookup_sequence(hash_strings(["blue"]))  # pre-hashed ids reach the same row
    assert_close(same[0], a[1])
