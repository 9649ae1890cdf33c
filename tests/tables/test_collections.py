"""EmbeddingBagCollection / EmbeddingCollection: shapes, exact pooled values, state, training."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from recembed.sparse import JaggedTensor, KeyedJaggedTensor, KeyedTensor
from recembed.tables import (
    EmbeddingBagCollection,
    EmbeddingBagConfig,
    EmbeddingCollection,
    EmbeddingConfig,
)

EXAMPLE = {"product": [[1, 2, 1], [5]], "user": [[2, 3], [4, 1]]}


def _two_tables(dim_p=64, dim_u=64, **fields) -> list[EmbeddingBagConfig]:
    return [
        EmbeddingBagConfig(name="t_product", num_embeddings=10, embedding_dim=dim_p, feature_names=["product"], **fields),
        EmbeddingBagConfig(name="t_user", num_embeddings=10, embedding_dim=dim_u, feature_names=["user"], **fields),
    ]


def _w(ebc: EmbeddingBagCollection, table: str) -> torch.Tensor:
    return ebc.embedding_bags[table].weight.detach()


def test_readme_example_shapes_and_hand_computed_sums():
    torch.manual_seed(0)
    ebc = EmbeddingBagCollection(_two_tables())
    kt = ebc(KeyedJaggedTensor.from_lists(EXAMPLE))
    assert isinstance(kt, KeyedTensor)
    assert kt.keys() == ["product", "user"]
    assert kt.values().shape == (2, 128)
    parts = kt.to_dict()
    assert list(parts) == ["product", "user"]
    assert all(v.shape == (2, 64) for v in parts.values())
    p, u = _w(ebc, "t_product"), _w(ebc, "t_user")
    assert_close(parts["product"], torch.stack([p[1] + p[2] + p[1], p[5]]))
    assert_close(parts["user"], torch.stack([u[2] + u[3], u[4] + u[1]]))
    assert_close(kt.values(), torch.cat([parts["product"], parts["user"]], dim=1))


def test_output_follows_config_order_whatever_the_batch_key_order():
    ebc = EmbeddingBagCollection(_two_tables(dim_p=3, dim_u=2))
    reordered = KeyedJaggedTensor.from_lists({"user": EXAMPLE["user"], "product": EXAMPLE["product"]})
    kt = ebc(reordered)
    assert kt.keys() == ["product", "user"] and kt.length_per_key() == [3, 2]
    assert_close(kt.values(), ebc(KeyedJaggedTensor.from_lists(EXAMPLE)).values())


def test_several_features_share_one_table():
    cfg = EmbeddingBagConfig(name="t_words", num_embeddings=10, embedding_dim=4, feature_names=["query", "title"])
    ebc = EmbeddingBagCollection([cfg])
    assert list(ebc.embedding_bags) == ["t_words"]
    kt = ebc(KeyedJaggedTensor.from_lists({"query": [[1, 2], [3]], "title": [[3], [1, 1, 9]]}))
    assert kt.keys() == ["query", "title"] and kt.values().shape == (2, 8)
    w = _w(ebc, "t_words")
    assert_close(kt["query"], torch.stack([w[1] + w[2], w[3]]))
    assert_close(kt["title"], torch.stack([w[3], 2 * w[1] + w[9]]))
    # One table, one gradient accumulating both features' uses.
    kt.values().sum().backward()
    grad = ebc.embedding_bags["t_words"].weight.grad
    expected_counts = torch.zeros(10)
    for i, c in {1: 3, 2: 1, 3: 2, 9: 1}.items():
        expected_counts[i] = c
    assert_close(grad, expected_counts[:, None].expand(10, 4))


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_kjt_weights_are_per_sample_weights(pooling):
    ebc = EmbeddingBagCollection(_two_tables(dim_p=3, dim_u=2, pooling=pooling))
    kjt = KeyedJaggedTensor.from_lists(
        EXAMPLE, weights={"product": [[0.5, 2.0, 1.0], [3.0]], "user": [[1.0, -1.0], [0.25, 4.0]]}
    )
    kt = ebc(kjt)
    p, u = _w(ebc, "t_product"), _w(ebc, "t_user")
    product = torch.stack([0.5 * p[1] + 2.0 * p[2] + 1.0 * p[1], 3.0 * p[5]])
    user = torch.stack([u[2] - u[3], 0.25 * u[4] + 4.0 * u[1]])
    if pooling == "mean":  # weighted sum divided by the bag size
        product = product / torch.tensor([[3.0], [1.0]])
        user = user / 2
    assert_close(kt["product"], product)
    assert_close(kt["user"], user)


def test_mean_and_max_pooling_values():
    mean = EmbeddingBagCollection(_two_tables(dim_p=3, dim_u=2, pooling="mean"))
    kt = mean(KeyedJaggedTensor.from_lists(EXAMPLE))
    p = _w(mean, "t_product")
    assert_close(kt["product"], torch.stack([(2 * p[1] + p[2]) / 3, p[5]]))

    mx = EmbeddingBagCollection(_two_tables(dim_p=3, dim_u=2, pooling="max"))
    kt = mx(KeyedJaggedTensor.from_lists(EXAMPLE))
    p, u = _w(mx, "t_product"), _w(mx, "t_user")
    assert_close(kt["product"], torch.stack([torch.maximum(p[1], p[2]), p[5]]))
    assert_close(kt["user"], torch.stack([torch.maximum(u[2], u[3]), torch.maximum(u[4], u[1])]))


def test_empty_bags_pool_to_zeros_for_every_pooling():
    for pooling in ("sum", "mean", "max"):
        ebc = EmbeddingBagCollection(_two_tables(dim_p=3, dim_u=2, pooling=pooling))
        kt = ebc(KeyedJaggedTensor.from_lists({"product": [[], [4]], "user": [[1], []]}))
        assert torch.count_nonzero(kt["product"][0]) == 0 and torch.count_nonzero(kt["user"][1]) == 0
        assert_close(kt["product"][1], _w(ebc, "t_product")[4])


def test_empty_batch_and_int32_offsets_kjt():
    ebc = EmbeddingBagCollection(_two_tables(dim_p=3, dim_u=2))
    empty = KeyedJaggedTensor(keys=["product", "user"], values=torch.tensor([], dtype=torch.int64),
                              lengths=torch.tensor([], dtype=torch.int64), stride=0)
    assert ebc(empty).values().shape == (0, 5)
    kjt = KeyedJaggedTensor(keys=["product", "user"], values=torch.tensor([1, 2, 3], dtype=torch.int32),
                            offsets=torch.tensor([0, 1, 2, 2, 3]))
    p, u = _w(ebc, "t_product"), _w(ebc, "t_user")
    assert_close(ebc(kjt).values(), torch.stack([torch.cat([p[1], torch.zeros(2)]), torch.cat([p[2], u[3]])]))


def test_collection_describes_its_tables_and_features():
    cfgs = _two_tables(dim_p=3, dim_u=2)
    ebc = EmbeddingBagCollection(cfgs)
    assert ebc.feature_names() == ["product", "user"]
    assert [c.name for c in ebc.embedding_bag_configs()] == ["t_product", "t_user"]
    assert ebc.fused_optimizer() is None  # no fused table: a torch optimizer trains it


@pytest.mark.parametrize("dims", [(1, 3), (7, 1), (3, 7)])
def test_dims_that_are_not_multiples_of_four(dims):
    ebc = EmbeddingBagCollection(_two_tables(*dims))
    kt = ebc(KeyedJaggedTensor.from_lists(EXAMPLE))
    assert kt.values().shape == (2, sum(dims))
    assert kt.length_per_key() == list(dims)
    p, u = _w(ebc, "t_product"), _w(ebc, "t_user")
    assert_close(kt["product"], torch.stack([2 * p[1] + p[2], p[5]]))
    assert_close(kt["user"], torch.stack([u[2] + u[3], u[4] + u[1]]))


def test_padding_idx_is_left_out_of_bags():
    ebc = EmbeddingBagCollection(_two_tables(dim_p=3, dim_u=2, pooling="mean", padding_idx=0))
    kt = ebc(KeyedJaggedTensor.from_lists({"product": [[0, 4, 6], [0]], "user": [[0, 1], [2]]}))
    p = _w(ebc, "t_product")
    assert_close(kt["product"], torch.stack([(p[4] + p[6]) / 2, torch.zeros(3)]))


def test_low_precision_tables_give_float32_values():
    ebc = EmbeddingBagCollection(_two_tables(dim_p=3, dim_u=2, dtype="bfloat16"))
    assert ebc.embedding_bags["t_product"].weight.dtype == torch.bfloat16
    kt = ebc(KeyedJaggedTensor.from_lists(EXAMPLE))
    assert kt.values().dtype == torch.float32
    p = _w(ebc, "t_product").float()
    assert_close(kt["product"][1], p[5])


def test_state_dict_keys_are_stable_and_round_trip():
    torch.manual_seed(1)
    ebc = EmbeddingBagCollection(_two_tables(dim_p=3, dim_u=2))
    state = ebc.state_dict()
    assert list(state) == ["embedding_bags.t_product.weight", "embedding_bags.t_user.weight"]
    assert state["embedding_bags.t_product.weight"].shape == (10, 3)
    torch.manual_seed(2)
    fresh = EmbeddingBagCollection(_two_tables(dim_p=3, dim_u=2))
    kjt = KeyedJaggedTensor.from_lists(EXAMPLE)
    assert not torch.equal(fresh(kjt).values(), ebc(kjt).values())
    fresh.load_state_dict(state)
    assert torch.equal(fresh(kjt).values(), ebc(kjt).values())


@pytest.mark.parametrize("freeze", [True, False])
def test_from_pretrained(freeze):
    weights = {"t_product": torch.arange(30.0).reshape(10, 3), "t_user": torch.ones(10, 2)}
    ebc = EmbeddingBagCollection.from_pretrained(_two_tables(dim_p=3, dim_u=2), weights, freeze=freeze)
    for name, w in weights.items():
        table = ebc.embedding_bags[name]
        assert torch.equal(table.weight.detach(), w)
        assert table.weight.requires_grad is (not freeze)
        assert table.weight.data_ptr() != w.data_ptr()
    kt = ebc(KeyedJaggedTensor.from_lists(EXAMPLE))
    assert_close(kt["product"][1], weights["t_product"][5])
    assert kt.values().requires_grad is (not freeze)


def test_from_pretrained_only_some_tables():
    ebc = EmbeddingBagCollection.from_pretrained(_two_tables(dim_p=3, dim_u=2), {"t_user": torch.ones(10, 2)})
    assert ebc.embedding_bags["t_product"].weight.requires_grad
    assert not ebc.embedding_bags["t_user"].weight.requires_grad


def test_gradients_reach_the_weights_exactly():
    ebc = EmbeddingBagCollection(_two_tables(dim_p=3, dim_u=2))
    upstream = torch.arange(10.0).reshape(2, 5)
    (ebc(KeyedJaggedTensor.from_lists(EXAMPLE)).values() * upstream).sum().backward()
    grad_p = ebc.embedding_bags["t_product"].weight.grad
    expected = torch.zeros(10, 3)
    expected[1] = 2 * upstream[0, :3]
    expected[2] = upstream[0, :3]
    expected[5] = upstream[1, :3]
    assert_close(grad_p, expected)


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("make_optimizer", [
    lambda params: torch.optim.SGD(params, lr=2.0),
    lambda params: torch.optim.Adagrad(params, lr=0.5),
], ids=["sgd", "adagrad"])
def test_torch_optimizer_trains_the_collection(sparse, make_optimizer):
    torch.manual_seed(3)
    ebc = EmbeddingBagCollection(_two_tables(dim_p=3, dim_u=3, sparse=sparse))
    kjt = KeyedJaggedTensor.from_lists(EXAMPLE)
    target = torch.tensor([[1.0, -1.0, 0.5, 0.0, 2.0, -0.5], [0.0, 0.5, -1.0, 1.0, 1.0, 1.0]])
    optimizer = make_optimizer(ebc.parameters())
    untouched_before = _w(ebc, "t_product")[[0, 3, 9]].clone()
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = ((ebc(kjt).values() - target) ** 2).mean()
        loss.backward()
        if sparse:
            assert ebc.embedding_bags["t_product"].weight.grad.is_sparse
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.01 * losses[0]
    # Rows no bag used are not changed.
    assert torch.equal(_w(ebc, "t_product")[[0, 3, 9]], untouched_before)


# ------------------------------------------------------------------- unpooled



def _ec(**fields) -> EmbeddingCollection:
    return EmbeddingCollection([
        EmbeddingConfig(name="t_words", num_embeddings=10, embedding_dim=3, feature_names=["query", "title"], **fields),
        EmbeddingConfig(name="t_user", num_embeddings=5, embedding_dim=2, feature_names=["user"], **fields),
    ])


SEQ = {"query": [[1, 2, 1], [], [7]], "title": [[4], [4, 5], []], "user": [[0], [3], [2, 2]]}


def test_embedding_collection_builds_and_keys_state_by_table():
    ec = _ec()
    assert list(ec.state_dict()) == ["embeddings.t_words.weight", "embeddings.t_user.weight"]
    assert [c.name for c in ec.embedding_configs()] == ["t_words", "t_user"]


def test_embedding_collection_returns_rows_and_lengths():
    ec = _ec()
    out = ec(KeyedJaggedTensor.from_lists(SEQ))
    assert list(out) == ["query", "title", "user"]
    words, user = ec.embeddings["t_words"].weight.detach(), ec.embeddings["t_user"].weight.detach()
    for feature, table in (("query", words), ("title", words), ("user", user)):
        jt = out[feature]
        assert isinstance(jt, JaggedTensor)
        flat = [i for row in SEQ[feature] for i in row]
        assert jt.values().shape == (len(flat), table.shape[1])
        assert_close(jt.values(), table[flat])
        assert jt.lengths().tolist() == [len(row) for row in SEQ[feature]]


def test_embedding_collection_gradients_and_sgd():
    torch.manual_seed(4)
    ec = _ec()
    kjt = KeyedJaggedTensor.from_lists(SEQ)
    optimizer = torch.optim.SGD(ec.parameters(), lr=0.5)
    first = None
    for _ in range(30):
        optimizer.zero_grad()
        loss = sum(((jt.values() - 1.0) ** 2).mean() for jt in ec(kjt).values())
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.01 * first


@pytest.mark.parametrize("freeze", [True, False])
def test_embedding_collection_from_pretrained(freeze):
    cfgs = [EmbeddingConfig(name="t_user", num_embeddings=5, embedding_dim=2, feature_names=["user"])]
    pretrained = torch.arange(10.0).reshape(5, 2)
    ec = EmbeddingCollection.from_pretrained(cfgs, {"t_user": pretrained}, freeze=freeze)
    assert ec.embeddings["t_user"].weight.requires_grad is (not freeze)
    out = ec(KeyedJaggedTensor.from_lists({"user": [[4, 0], [1]]}))
    assert_close(out["user"].values(), pretrained[[4, 0, 1]])


def test_tables_may_be_named_like_moduledict_methods():
    tables = [EmbeddingBagConfig(name=n, num_embeddings=4, embedding_dim=2, feature_names=[f"f_{n}"], optimizer=o)
              for n, o in (("items", "sgd"), ("keys", None), ("values", "adam"))]
    ebc = EmbeddingBagCollection(tables)
    assert ebc.embedding_bags["items"].weight.shape == (4, 2)
    assert "embedding_bags.keys.weight" in ebc.state_dict() and "fused.state.values.exp_avg" in ebc.state_dict()
    kjt = KeyedJaggedTensor.from_lists({"f_items": [[1]], "f_keys": [[2]], "f_values": [[3]]})
    ebc(kjt).values().sum().backward()
