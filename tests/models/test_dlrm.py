import pytest
import torch

from recembed.errors import ConfigError, ShapeMismatchError, UnknownKeyError
from recembed.models import DLRM, dense_parameters
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagConfig


def tables(dim: int = 4) -> list[EmbeddingBagConfig]:
    return [
        EmbeddingBagConfig(name="t_ad", num_embeddings=10, embedding_dim=dim, feature_names=["ad"]),
        # one table serving two features: F = 3 features from 2 tables
        EmbeddingBagConfig(name="t_geo", num_embeddings=6, embedding_dim=dim, feature_names=["city", "home_city"],
                           pooling="mean"),
    ]


def sparse_batch() -> KeyedJaggedTensor:
    return KeyedJaggedTensor.from_lists(
        {"ad": [[1], [2, 9]], "city": [[0, 5], [3]], "home_city": [[], [4]]}
    )


def test_forward_equals_brute_force_interaction():
    torch.manual_seed(0)
    model = DLRM(3, tables(), bottom_mlp=[5, 4], top_mlp=[6, 1], embedding_optimizer=None)
    dense = torch.randn(2, 3)
    logits = model(dense, sparse_batch())
    assert logits.shape == (2,)
    ad = model.embeddings.embedding_bags["t_ad"].weight
    geo = model.embeddings.embedding_bags["t_geo"].weight
    pooled = [
        [ad[1], geo[[0, 5]].mean(0), torch.zeros(4)],  # an empty bag pools to zeros
        [ad[2] + ad[9], geo[3], geo[4]],
    ]
    for b in range(2):
        z = model.bottom_mlp(dense[b : b + 1])[0]
        assert bool((z >= 0).all())  # the bottom MLP ends with its activation
        vectors = [z] + pooled[b]
        dots = [vectors[i] @ vectors[j] for i in range(4) for j in range(i + 1, 4)]
        top_input = torch.cat([z, torch.stack(dots)])
        assert top_input.shape == (4 + 6,)
        assert torch.allclose(model.top_mlp(top_input.unsqueeze(0))[0, 0], logits[b], atol=1e-5)


def test_interaction_sum_adds_the_scaled_sum_of_the_pair_dots_to_the_logit():
    torch.manual_seed(0)
    plain = DLRM(3, tables(), bottom_mlp=[5, 4], top_mlp=[6, 1], embedding_optimizer=None)
    torch.manual_seed(0)
    summed = DLRM(3, tables(), bottom_mlp=[5, 4], top_mlp=[6, 1], embedding_optimizer=None, interaction_sum=True)
    dense, sparse = torch.randn(2, 3), sparse_batch()
    z = summed.bottom_mlp(dense)
    pooled = summed.embeddings(sparse).values().view(2, 3, 4)
    vectors = torch.cat([z.unsqueeze(1), pooled], dim=1)  # (B, 4, d)
    gram = vectors @ vectors.transpose(1, 2)
    pair_sum = (gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(1)) / 2
    with torch.no_grad():
        summed.interaction_scale.fill_(0.5)
    torch.testing.assert_close(summed(dense, sparse), plain(dense, sparse) + 0.5 * pair_sum, rtol=1e-5, atol=1e-5)
    summed(dense, sparse).sum().backward()
    assert summed.interaction_scale.grad is not None and float(summed.interaction_scale.grad.abs()) > 0
    assert any(p is summed.interaction_scale for p in dense_parameters(summed))
    assert plain.interaction_scale is None and "interaction_scale" not in plain.state_dict()


def test_config_errors_name_the_table():
    with pytest.raises(ConfigError, match=r"table 't_geo' has embedding_dim=8.*bottom_mlp\[-1\]=4"):
        DLRM(3, [tables(4)[0], tables(8)[1]], bottom_mlp=[5, 4], embedding_optimizer=None)
    with pytest.raises(ConfigError, match="top_mlp must end with 1"):
        DLRM(3, tables(), bottom_mlp=[4], top_mlp=[8, 2], embedding_optimizer=None)
    with pytest.raises(ConfigError, match="dense_in_features"):
        DLRM(0, tables(), bottom_mlp=[4], embedding_optimizer=None)


def test_input_errors():
    model = DLRM(3, tables(), bottom_mlp=[4], top_mlp=[1], embedding_optimizer=None)
    with pytest.raises(ShapeMismatchError, match=r"shape \(2, 5\), expected \(batch, 3\)"):
        model(torch.zeros(2, 5), sparse_batch())
    with pytest.raises(ShapeMismatchError, match="3 rows but the sparse batch has stride 2"):
        model(torch.zeros(3, 3), sparse_batch())
    with pytest.raises(UnknownKeyError, match=r"DLRM: feature\(s\) \['home_city'\] missing"):
        model(torch.zeros(1, 3), KeyedJaggedTensor.from_lists({"ad": [[1]], "city": [[2]]}))


def test_fused_tables_are_not_dense_parameters(embedding_optimizer):
    model = DLRM(3, tables(), bottom_mlp=[4], top_mlp=[1], embedding_optimizer=embedding_optimizer)
    table_weights = {id(t.weight) for t in model.embeddings.embedding_bags.values()}
    in_dense = [id(p) in table_weights for p in dense_parameters(model)]
    assert sum(in_dense) == (0 if embedding_optimizer else 2)
    assert len(in_dense) - sum(in_dense) == 4  # bottom + top Linear weights and biases


def test_learns_a_click_task_with_a_cross(embedding_optimizer, click_task, train_click_model):
    torch.manual_seed(0)
    model = DLRM(click_task.num_dense, click_task.tables((8, 8)), bottom_mlp=[16, 8], top_mlp=[16, 1],
                 embedding_optimizer=embedding_optimizer, embedding_lr=0.1)
    auc = train_click_model(model, click_task)
    assert auc > 0.85  # dense features alone: 0.58; the true model: 0.96 (the ad x site cross is needed)
