"""Every compressed table inside EmbeddingBagCollection: fused and autograd training, state_dict round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from recembed.compress import (
    BloomSpec,
    CompressedTable,
    HashedSpec,
    MixedDimSpec,
    QRSpec,
    ROBESpec,
)
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig

SPECS = {
    "hashed": HashedSpec(compression_ratio=0.5),
    "bloom": BloomSpec(compression_ratio=0.5, num_hashes=2),
    "qr-mult": QRSpec(num_collisions=4, operation="mult"),
    "qr-add": QRSpec(num_collisions=4, operation="add"),
    "qr-concat": QRSpec(num_collisions=4, operation="concat"),
    "mixed-dim": MixedDimSpec(block_sizes=(4, 12, 24), block_dims=(8, 4, 2)),
    "robe": ROBESpec(compression_ratio=0.5, chunk_size=4),
}


def collection(spec, **fields) -> EmbeddingBagCollection:
    torch.manual_seed(0)
    return EmbeddingBagCollection([
        EmbeddingBagConfig(name="t_item", num_embeddings=40, embedding_dim=8, feature_names=["item", "item2"],
                           compression=spec, **fields),
        EmbeddingBagConfig(name="t_user", num_embeddings=10, embedding_dim=8, feature_names=["user"], **fields),
    ])


def batch(seed: int = 0, weighted: bool = False) -> tuple[KeyedJaggedTensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    b = 16
    lengths = np.concatenate([rng.integers(0, 4, b), rng.integers(1, 3, b), np.ones(b, np.int64)])
    values = np.concatenate([rng.integers(0, 40, int(lengths[: 2 * b].sum())), rng.integers(0, 10, b)])
    weights = torch.from_numpy(rng.uniform(0.5, 1.5, values.size).astype(np.float32)) if weighted else None
    kjt = KeyedJaggedTensor(["item", "item2", "user"], torch.from_numpy(values), lengths=torch.from_numpy(lengths),
                            weights=weights)
    return kjt, torch.from_numpy(rng.normal(size=b).astype(np.float32))


def target_loss(ebc, kjt, target) -> torch.Tensor:
    out = ebc(kjt).values()
    return ((out.sum(1) - target) ** 2).mean()


@torch.no_grad()
def loss_value(ebc, kjt, target) -> float:
    return float(target_loss(ebc, kjt, target))  # no graph, so no fused update


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("pooling", ["sum", "mean", "max"])
def test_fused_optimizer_updates_rows_inside_backward_and_the_loss_falls(name, pooling):
    ebc = collection(SPECS[name], optimizer="rowwise_adagrad", lr=0.1, pooling=pooling)
    table = ebc.embedding_bags["t_item"]
    assert isinstance(table, CompressedTable)
    sub = [n for n in table.sub_tables.embedding_bags]
    kjt, target = batch(weighted=pooling != "max")
    dense = [p for p in ebc.parameters() if p.requires_grad]  # mixed-dim projections only
    opt = torch.optim.SGD(dense, lr=0.05) if dense else None
    first = loss_value(ebc, kjt, target)
    before = [table.sub_table_weight(n).detach().clone() for n in sub]
    loss = target_loss(ebc, kjt, target)
    loss.backward()  # the fused update happens here; no optimizer step for the tables
    assert any(not torch.equal(b, table.sub_table_weight(n).detach()) for b, n in zip(before, sub))
    assert all(table.sub_table_weight(n).grad is None for n in sub)
    for _ in range(30):
        if opt:
            opt.step()
            opt.zero_grad()
        target_loss(ebc, kjt, target).backward()
    assert loss_value(ebc, kjt, target) < 0.5 * first


@pytest.mark.parametrize("name", SPECS)
def test_plain_autograd_training_through_a_torch_optimizer(name):
    ebc = collection(SPECS[name])
    kjt, target = batch(1)
    opt = torch.optim.Adam(ebc.parameters(), lr=0.05)
    first = loss_value(ebc, kjt, target)
    for _ in range(40):
        opt.zero_grad()
        target_loss(ebc, kjt, target).backward()
        opt.step()
    assert loss_value(ebc, kjt, target) < 0.5 * first


@pytest.mark.parametrize("name", SPECS)
def test_state_dict_round_trip_keeps_outputs_and_optimizer_state(name):
    trained = collection(SPECS[name], optimizer="adam", lr=0.05)
    kjt, target = batch(2)
    for _ in range(3):
        target_loss(trained, kjt, target).backward()
    state = trained.state_dict()
    assert any(".sub_tables.fused.state." in k for k in state)  # the fused state travels too
    fresh = collection(SPECS[name], optimizer="adam", lr=0.05)
    assert not torch.equal(fresh(kjt).values(), trained(kjt).values())
    fresh.load_state_dict(state)
    assert_close(fresh(kjt).values(), trained(kjt).values())
    # One more identical step on each keeps them equal: weights and optimizer state both came across.
    target_loss(trained, kjt, target).backward()
    target_loss(fresh, kjt, target).backward()
    assert_close(fresh(kjt).values(), trained(kjt).values())


def test_lr_scheduler_sees_the_sub_tables_fused_optimizer():
    ebc = collection(SPECS["qr-add"], optimizer="sgd", lr=0.1)
    opt = ebc.embedding_bags["t_item"].fused_optimizer()
    assert opt is not None and [g["lr"] for g in opt.param_groups] == [0.1, 0.1]


def test_shared_table_serves_two_features_and_hashing_composes():
    ebc = EmbeddingBagCollection([EmbeddingBagConfig(
        name="t", num_embeddings=64, embedding_dim=4, feature_names=["a", "b"], hash_size=64,
        compression=QRSpec(num_collisions=8, operation="add"))])
    kjt = KeyedJaggedTensor.from_lists({"a": [[2**40], [-3]], "b": [[2**40], [5]]})
    out = ebc(kjt).to_dict()
    assert_close(out["a"][0], out["b"][0])  # same raw id, same table -> same vector
