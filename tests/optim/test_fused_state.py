"""Fused tables' state: save/load, learning-rate schedules, weight views, low precision."""

from __future__ import annotations

import io

import pytest
import torch

import recembed as rec
from recembed.kernels.fused_torch import stochastic_round


def _collection(optimizer: str = "adam", dtype=torch.float32, dims=(5, 3)) -> rec.EmbeddingBagCollection:
    torch.manual_seed(0)
    return rec.EmbeddingBagCollection([
        rec.EmbeddingBagConfig(name=f"t{i}", num_embeddings=40, embedding_dim=d, feature_names=[f"f{i}"],
                               optimizer=optimizer, lr=0.05, init="normal", dtype=dtype)
        for i, d in enumerate(dims)
    ])


def _batch(step: int) -> rec.KeyedJaggedTensor:
    g = torch.Generator().manual_seed(step)
    return rec.KeyedJaggedTensor.from_lists(
        {f"f{i}": [torch.randint(0, 40, (3,), generator=g).tolist() for _ in range(4)] for i in range(2)}
    )


def _train(ebc: rec.EmbeddingBagCollection, steps: range) -> None:
    for step in steps:
        out = ebc(_batch(step)).values()
        (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()


@pytest.mark.parametrize("optimizer", ["adagrad", "rowwise_adagrad", "adam", "rowwise_adam", "lamb"])
def test_state_dict_round_trip_continues_identically(optimizer):
    straight = _collection(optimizer)
    _train(straight, range(6))

    first = _collection(optimizer)
    _train(first, range(3))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = _collection(optimizer)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert int(resumed.fused.state["t0"].step) == 3
    _train(resumed, range(3, 6))
    for name in ("t0", "t1"):
        torch.testing.assert_close(resumed.embedding_bags[name].weight, straight.embedding_bags[name].weight,
                                   rtol=0, atol=0)


def test_state_dict_names_state_by_table():
    keys = set(_collection("rowwise_adam").state_dict())
    assert {"fused.state.t0.exp_avg", "fused.state.t0.row_exp_avg_sq", "fused.state.t0.step",
            "fused.state.t0.lr", "embedding_bags.t0.weight"} <= keys


def test_lr_scheduler_drives_the_fused_learning_rate():
    ebc = _collection("sgd")
    optimizer = ebc.fused_optimizer()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.05]
    optimizer.step()  # a no-op (the update happens in backward), called as torch's schedulers expect
    scheduler.step()
    assert float(ebc.fused.state["t0"].lr) == pytest.approx(0.025)
    # The next backward uses the new rate: an SGD step moves a row by lr * grad.
    before = ebc.embedding_bags["t0"].weight.detach().clone()
    kjt = rec.KeyedJaggedTensor.from_lists({"f0": [[7]], "f1": [[1]]})
    ebc(kjt).values()[:, :5].sum().backward()
    moved = before[7] - ebc.embedding_bags["t0"].weight[7]
    torch.testing.assert_close(moved, torch.full((5,), 0.025))


def test_weights_are_views_of_shared_storage_and_user_writes_are_seen():
    ebc = _collection("sgd")
    kjt = rec.KeyedJaggedTensor.from_lists({"f0": [[2]], "f1": [[3]]})
    with torch.no_grad():
        ebc(kjt)  # binds the flat storage
        w0, w1 = ebc.embedding_bags["t0"].weight, ebc.embedding_bags["t1"].weight
        assert w0.untyped_storage().data_ptr() == w1.untyped_storage().data_ptr()
        w0[2] = 1.5  # an in-place write by the user is what the kernel reads
        assert torch.all(ebc(kjt).values()[0, :5] == 1.5)
        # Replacing the Parameter's data is noticed and re-bound, not silently ignored.
        ebc.embedding_bags["t1"].weight.data = torch.full((40, 3), 2.0)
        assert torch.all(ebc(kjt).values()[0, 5:] == 2.0)
    assert not w0.requires_grad  # fused tables are outside autograd: torch optimizers leave them alone


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_tables_track_float32_training(dtype):
    reference = _collection("rowwise_adagrad")
    low = _collection("rowwise_adagrad", dtype=dtype)
    with torch.no_grad():
        for name in ("t0", "t1"):
            low.embedding_bags[name].weight.copy_(reference.embedding_bags[name].weight)
    _train(reference, range(5))
    _train(low, range(5))
    assert low.embedding_bags["t0"].weight.dtype == dtype
    assert low(_batch(0)).values().dtype == torch.float32
    tol = 2e-2 if dtype == torch.float16 else 8e-2
    torch.testing.assert_close(low.embedding_bags["t0"].weight.float(), reference.embedding_bags["t0"].weight,
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_stochastic_rounding_is_unbiased(dtype):
    x = torch.full((200_000,), 1.0 + 2.0**-10 / 3)  # between two bf16/fp16 neighbours of 1.0
    rounded = stochastic_round(x, dtype, torch.Generator().manual_seed(0)).float()
    assert rounded.unique().numel() == 2  # only the two neighbours appear
    assert abs(rounded.mean().item() - x[0].item()) < 2e-5
    nearest = x.to(dtype).float()
    assert abs(nearest.mean().item() - x[0].item()) > abs(rounded.mean().item() - x[0].item())


def test_second_backward_through_the_same_graph_is_refused():
    ebc = _collection("sgd")
    loss = ebc(_batch(0)).values().sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="already updated"):
        loss.backward()


def test_no_grad_forward_does_not_update():
    ebc = _collection("sgd")
    before = ebc.embedding_bags["t0"].weight.detach().clone()
    with torch.no_grad():
        ebc(_batch(0))
    assert torch.equal(before, ebc.embedding_bags["t0"].weight)


def test_fused_tables_reject_bad_ids_with_the_feature_named():
    ebc = _collection("sgd")
    with pytest.raises(rec.errors.IdOutOfRangeError, match=r"feature 'f1' \(table 't1'\): id 40 out of range"):
        ebc(rec.KeyedJaggedTensor.from_lists({"f0": [[1]], "f1": [[40]]}))
    with pytest.raises(rec.errors.InvalidIdError, match="negative id -3"):
        ebc(rec.KeyedJaggedTensor.from_lists({"f0": [[-3]], "f1": [[1]]}))


def test_fused_hashed_table_accepts_any_int64_id():
    cfg = rec.EmbeddingBagConfig(name="h", num_embeddings=16, embedding_dim=4, feature_names=["f"], hash_size=16,
                                 optimizer="sgd", lr=0.1)
    plain = rec.EmbeddingBagConfig(name="h", num_embeddings=16, embedding_dim=4, feature_names=["f"], hash_size=16)
    fused, ref = rec.EmbeddingBagCollection([cfg]), rec.EmbeddingBagCollection([plain])
    with torch.no_grad():
        ref.embedding_bags["h"].weight.copy_(fused.embedding_bags["h"].weight)
    kjt = rec.KeyedJaggedTensor.from_lists({"f": [[2**40, -7], [123456789012]]})
    torch.testing.assert_close(fused(kjt).values(), ref(kjt).values())
