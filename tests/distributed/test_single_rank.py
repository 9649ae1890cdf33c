"""Sharding in a world of one process (gloo, in the test process): every sharding type, the
errors shard() raises, per-sample weights, and checkpoint round trips -- fast, no spawning."""

from __future__ import annotations

import datetime
import json

import distributed_workers as w
import pytest
import torch
import torch.distributed as dist

from recembed.distributed import (
    ShardedEmbeddingBagCollection,
    ShardingSpec,
    load_sharded,
    load_unsharded,
    save_sharded,
    shard,
    shard_model,
    unshard,
    unsharded_copy,
)
from recembed.errors import CheckpointError, ConfigError, UnknownKeyError
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import (
    EmbeddingBagCollection,
    EmbeddingBagConfig,
)


@pytest.fixture(scope="module", autouse=True)
def world_of_one(tmp_path_factory):
    if dist.is_initialized():
        pytest.skip("a process group already exists in this process")
    store = tmp_path_factory.mktemp("store") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=30))
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("plan_name", ["a", "b"])
def test_every_type_on_one_rank_trains_like_the_plain_model(plan_name):
    ref = w.reference("sum")
    model = shard(w.make_model(), w.plans(1)[plan_name], loss_reduction="sum")
    assert isinstance(model.embeddings, ShardedEmbeddingBagCollection)
    preds = w.train(model, w.STEPS, "sum")
    for got, want in zip(preds, ref["preds"]):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    state = unshard(model).state_dict()
    for key, value in ref["state"].items():
        torch.testing.assert_close(state[key], value, atol=1e-6, rtol=1e-6, msg=key)


def _weighted_tables():
    return [EmbeddingBagConfig(name="s", num_embeddings=10, embedding_dim=3, feature_names=["a"], optimizer="sgd"),
            EmbeddingBagConfig(name="m", num_embeddings=10, embedding_dim=2, feature_names=["b"], pooling="mean",
                               padding_idx=9, optimizer="adagrad")]


def test_per_sample_weights_follow_the_ids():
    kjt = KeyedJaggedTensor.from_lists({"a": [[1, 2], [], [3]], "b": [[4, 9, 5], [9], []]},
                                       weights={"a": [[0.5, 2.0], [], [1.5]], "b": [[1.0, 3.0, 0.25], [2.0], []]})
    torch.manual_seed(0)
    plain = EmbeddingBagCollection(_weighted_tables())
    torch.manual_seed(0)
    sharded = shard(EmbeddingBagCollection(_weighted_tables()),
                    {"s": ShardingSpec("table_wise", (0,)), "m": ShardingSpec("row_wise", (0,))}, loss_reduction="sum")
    want, got = plain(kjt).values(), sharded(kjt).values()
    torch.testing.assert_close(got, want)
    want.sum().backward()
    got.sum().backward()
    after = unshard(sharded).state_dict()
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(after[key], value, msg=key)


def test_shard_refuses_bad_plans_and_models():
    specs = w.plans(1)["a"]
    with pytest.raises(ConfigError, match=r"no entry for table\(s\) \['t_plain'\]"):
        shard(w.make_model(), {k: v for k, v in specs.items() if k != "t_plain"})
    with pytest.raises(UnknownKeyError, match=r"names table\(s\) \['t_other'\]"):
        shard(w.make_model(), {**specs, "t_other": ShardingSpec("table_wise", (0,))})
    with pytest.raises(ConfigError, match="column_wise sharding would split the per-row statistics"):
        shard(w.make_model(), {**specs, "t_rw": ShardingSpec("column_wise", (0,))})
    with pytest.raises(ConfigError, match="MAX pooling cannot use"):
        shard(w.make_model(), {**specs, "t_cw": ShardingSpec("row_wise", (0,))})
    with pytest.raises(ConfigError, match="has no EmbeddingBagCollection"):
        shard(torch.nn.Linear(2, 2), specs)
    model = shard(w.make_model(), specs)
    with pytest.raises(ConfigError, match="already sharded"):
        shard(model, specs)
    with pytest.raises(UnknownKeyError, match="feature 'f_tw_b' .* is missing from the batch"):
        model.embeddings(KeyedJaggedTensor.from_lists({"f_tw_a": [[1]]}))


def test_unsharded_copy_leaves_the_model_sharded():
    model = shard(w.make_model(), w.plans(1)["a"], loss_reduction="sum")
    w.train(model, 1, "sum")
    copy = unsharded_copy(model)
    assert isinstance(model.embeddings, ShardedEmbeddingBagCollection)
    assert isinstance(copy.embeddings, EmbeddingBagCollection)
    features, weighted, _ = w.global_batch(5, 6)
    with torch.no_grad():
        torch.testing.assert_close(copy(features, weighted), model(features, weighted))
    copy.head.weight.data.add_(1.0)  # a real copy: the sharded model's dense part is untouched
    assert not torch.equal(copy.head.weight, model.head.weight)
    w.train(model, 1, "sum")  # the sharded model still trains (its gradient hooks are intact)


def test_shard_model_plans_when_no_plan_is_given():
    model, plan = shard_model(w.make_model(), batch_size=4, per_rank_memory_bytes=1 << 20)
    assert sorted(plan.specs) == sorted(w.TABLES)
    assert isinstance(model.embeddings, ShardedEmbeddingBagCollection)
    assert "t_tw" in plan.table()


def test_checkpoint_round_trip_and_refusals(tmp_path):
    model = shard(w.make_model(), w.plans(1)["a"], loss_reduction="sum")
    w.train(model, 2, "sum")
    save_sharded(tmp_path / "ckpt", model, extra={"step": 2, "note": "two steps"})
    want = {k: v.clone() for k, v in w.make_model(seed=7).state_dict().items()}  # only for the key set
    state = load_unsharded(tmp_path / "ckpt")
    assert set(state) == set(want)
    other = shard(w.make_model(seed=7), w.plans(1)["b"], loss_reduction="sum")
    assert load_sharded(tmp_path / "ckpt", other) == {"step": 2, "note": "two steps"}
    got = unshard(other).state_dict()
    for key, value in state.items():
        assert torch.equal(got[key], value), key
    alone = load_unsharded(tmp_path / "ckpt", collection="embeddings")
    plain = EmbeddingBagCollection(w.table_configs())
    plain.load_state_dict(alone)  # strict: every key of a plain collection, nothing else
    sequence = w.make_model().sequence
    sequence.load_state_dict(load_unsharded(tmp_path / "ckpt", collection="sequence"))
    # Saving again to the same folder replaces the files and keeps it consistent.
    save_sharded(tmp_path / "ckpt", shard(w.make_model(seed=3), w.plans(1)["b"]))
    assert len([p for p in (tmp_path / "ckpt").iterdir() if p.suffix == ".pt"]) == 2  # one shard file + dense
    with pytest.raises(UnknownKeyError, match="no collection 'towers'"):
        load_unsharded(tmp_path / "ckpt", collection="towers")
    manifest = json.loads((tmp_path / "ckpt" / "manifest.json").read_text())
    manifest["collections"]["embeddings"]["tables"]["t_tw"]["num_embeddings"] = 14
    (tmp_path / "ckpt" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"table 'embeddings.t_tw'.*\(14, 4, 'adam', 'float32'\)"):
        load_sharded(tmp_path / "ckpt", shard(w.make_model(), w.plans(1)["a"]))
    with pytest.raises(CheckpointError, match="manifest.json does not exist"):
        load_unsharded(tmp_path / "nowhere")
