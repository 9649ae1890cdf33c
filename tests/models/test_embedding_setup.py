import pytest

from recembed.errors import ConfigError
from recembed.models import DLRM, DotProduct, dense_parameters, with_embedding_optimizer
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagConfig, OptimizerType


def configs() -> list[EmbeddingBagConfig]:
    return [
        EmbeddingBagConfig(name="plain", num_embeddings=5, embedding_dim=2),
        EmbeddingBagConfig(name="own", num_embeddings=5, embedding_dim=2, optimizer="sgd", lr=0.5),
        EmbeddingBagConfig(name="frozen", num_embeddings=5, embedding_dim=2, enable_grad=False),
    ]


def test_optimizer_goes_to_trainable_tables_without_their_own():
    original = configs()
    out = {c.name: c for c in with_embedding_optimizer(original, "ROWWISE_ADAGRAD", 0.2, "Test", weight_decay=0.01)}
    assert out["plain"].optimizer is OptimizerType.ROWWISE_ADAGRAD
    assert (out["plain"].lr, out["plain"].weight_decay) == (0.2, 0.01)
    assert out["own"].optimizer is OptimizerType.SGD and out["own"].lr == 0.5
    assert out["frozen"].optimizer is None and not out["frozen"].enable_grad
    assert original[0].optimizer is None  # the caller's configs are not modified
    unchanged = with_embedding_optimizer(original, None, 0.2, "Test")
    assert [c.optimizer for c in unchanged] == [None, OptimizerType.SGD, None]
    assert unchanged[0] is not original[0]


def test_plain_autograd_only_options_explain_the_way_out():
    sparse_table = [EmbeddingBagConfig(name="s", num_embeddings=5, embedding_dim=2, sparse=True)]
    with pytest.raises(ConfigError, match="table 's': sparse=True.*embedding_optimizer=None"):
        with_embedding_optimizer(sparse_table, "adagrad", 0.1, "DLRM")
    assert with_embedding_optimizer(sparse_table, None, 0.1, "DLRM")[0].sparse
    with pytest.raises(ConfigError, match="list of EmbeddingBagConfig"):
        with_embedding_optimizer(sparse_table[0], None, 0.1, "DLRM")


def test_dense_parameters_leave_out_frozen_tables():
    model = DLRM(2, [EmbeddingBagConfig(name="t", num_embeddings=4, embedding_dim=3, enable_grad=False)],
                 bottom_mlp=[3], top_mlp=[1], embedding_optimizer=None)
    table = model.embeddings.embedding_bags["t"].weight
    assert all(p is not table for p in dense_parameters(model))
    assert len(dense_parameters(model)) == 4


def test_fused_tables_update_inside_backward(fused_optimizer):
    model = DotProduct(4, 3, 2, embedding_optimizer=fused_optimizer, embedding_lr=0.1)
    weight = model.factors.embedding_bags["user_factors"].weight
    assert not weight.requires_grad
    before = weight.detach().clone()
    kjt = KeyedJaggedTensor.from_lists({"user": [[1]], "item": [[2]]})
    (model(kjt) - 5.0).pow(2).sum().backward()  # no torch optimizer step
    after = model.factors.embedding_bags["user_factors"].weight.detach()
    changed = (after != before).any(dim=1)
    assert changed.tolist() == [False, True, False, False]  # only the looked-up row moved
