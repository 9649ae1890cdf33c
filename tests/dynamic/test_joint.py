"""Dynamic tables pooled in one fused call: the same rows, state and checkpoints as one table at a time."""

from __future__ import annotations

import numpy as np
import torch

from recembed.dynamic import DynamicSpec
from recembed.dynamic.joint import JointRows, joint_lookup
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig


def _build(optimizer="adam", pooling="sum") -> EmbeddingBagCollection:
    torch.manual_seed(0)
    configs = [EmbeddingBagConfig(name=f"t{k}", num_embeddings=6, embedding_dim=3 + k, feature_names=[f"f{k}"],
                                  pooling=pooling, dynamic=DynamicSpec(), optimizer=optimizer, lr=0.1)
               for k in range(3)]
    return EmbeddingBagCollection(configs)


def _batch(rng) -> KeyedJaggedTensor:
    return KeyedJaggedTensor.from_lists(
        {f"f{k}": [rng.integers(0, 15, size=rng.integers(0, 4)).tolist() for _ in range(4)] for k in range(3)})


def _one_by_one(collection: EmbeddingBagCollection, kjt: KeyedJaggedTensor) -> torch.Tensor:
    tables = [collection.embedding_bags[f"t{k}"] for k in range(3)]
    return torch.cat([t.lookup(kjt[f"f{k}"].values(), kjt[f"f{k}"].offsets(), feature=f"f{k}")
                      for k, t in enumerate(tables)], dim=1)


def test_joint_steps_match_one_table_at_a_time_in_state_dict_too():
    together, alone = _build(), _build()
    rng = np.random.default_rng(5)
    for _ in range(6):  # capacity 6 against 15 ids: rows are recycled, their Adam state zeroed
        kjt = _batch(rng)
        out, ref = together(kjt).values(), _one_by_one(alone, kjt)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        (out * torch.arange(out.shape[1])).sum().backward()
        (ref * torch.arange(ref.shape[1])).sum().backward()
    mine, theirs = together.state_dict(), alone.state_dict()
    assert mine.keys() == theirs.keys()
    assert any(".fused.state." in k for k in mine)  # the inner groups' optimizer state is what is saved
    for key in mine:
        torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=0, msg=key)


def test_joint_group_shares_the_inner_tensors():
    collection = _build("rowwise_adagrad")
    collection(_batch(np.random.default_rng(0))).values().sum().backward()
    joint = collection.embedding_bags["t0"].__dict__["_joint_rows"][1]
    assert isinstance(joint, JointRows)
    for k in range(3):
        table = collection.embedding_bags[f"t{k}"]
        assert joint.group.state[f"t{k}"] is table.row_table.fused.state[f"t{k}"]
        assert joint.group._tables[f"t{k}"].weight.data_ptr() == table.rows_weight().data_ptr()


def test_mixing_joint_and_direct_lookups_stays_correct():
    together, alone = _build("adagrad", pooling="mean"), _build("adagrad", pooling="mean")
    rng = np.random.default_rng(9)
    for step in range(6):
        kjt = _batch(rng)
        direct = step % 3 == 1  # every third step goes through each table's own collection
        out = _one_by_one(together, kjt) if direct else together(kjt).values()
        ref = _one_by_one(alone, kjt)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        out.square().sum().backward()
        ref.square().sum().backward()
    for k in range(3):
        torch.testing.assert_close(together.embedding_bags[f"t{k}"].rows_weight(),
                                   alone.embedding_bags[f"t{k}"].rows_weight(), rtol=0, atol=0)


def test_tables_without_a_fused_optimizer_are_looked_up_one_by_one():
    collection = _build(optimizer=None)
    kjt = _batch(np.random.default_rng(1))
    out = collection(kjt).values()
    assert out.shape == (4, 3 + 4 + 5)
    tables = [collection.embedding_bags[f"t{k}"] for k in range(3)]
    empty = [torch.zeros(0, dtype=torch.int64)] * 3
    assert joint_lookup(tables, empty, [torch.zeros(1, dtype=torch.int64)] * 3, [None] * 3) is None
    assert "_joint_rows" not in tables[0].__dict__
