import pytest
import torch

from recembed.errors import ConfigError, ShapeMismatchError
from recembed.models import DCNv2
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagConfig


def tables() -> list[EmbeddingBagConfig]:
    # different widths on purpose: the cross network works on the flat concatenation
    return [
        EmbeddingBagConfig(name="t_ad", num_embeddings=10, embedding_dim=7, feature_names=["ad"]),
        EmbeddingBagConfig(name="t_site", num_embeddings=6, embedding_dim=16, feature_names=["site"]),
    ]


def sparse_batch() -> KeyedJaggedTensor:
    return KeyedJaggedTensor.from_lists({"ad": [[1], [2, 9], []], "site": [[0], [5], [3, 3]]})


@pytest.mark.parametrize("structure", ["stacked", "parallel"])
@pytest.mark.parametrize("low_rank", [None, 4])
def test_forward_follows_the_cross_formula(structure, low_rank):
    torch.manual_seed(0)
    model = DCNv2(3, tables(), num_cross_layers=2, low_rank=low_rank, deep_mlp=[8], structure=structure,
                  embedding_optimizer=None)
    dense = torch.randn(3, 3)
    x0 = model.input_vector(dense, sparse_batch())
    assert x0.shape == (3, 3 + 7 + 16) and model.input_width == 26
    ad = model.embeddings.embedding_bags["t_ad"].weight
    site = model.embeddings.embedding_bags["t_site"].weight
    expected_x0 = torch.cat([dense, torch.stack([ad[1], ad[2] + ad[9], torch.zeros(7)]),
                             torch.stack([site[0], site[5], 2 * site[3]])], dim=1)
    assert torch.allclose(x0, expected_x0)
    x = x0
    for layer in range(2):
        x = x0 * (x @ model.cross.layer_weight(layer).T + model.cross.layer_bias(layer)) + x
    deep = torch.relu(model.deep.layers[0](x if structure == "stacked" else x0))
    hidden = deep if structure == "stacked" else torch.cat([x, deep], dim=1)
    expected = model.head(hidden).squeeze(1)
    assert torch.allclose(model(dense, sparse_batch()), expected, atol=1e-5)


def test_no_dense_features_and_no_deep_layers():
    model = DCNv2(0, tables(), num_cross_layers=1, deep_mlp=[], embedding_optimizer=None)
    assert model(None, sparse_batch()).shape == (3,)
    assert model.head.in_features == 23


def test_errors():
    with pytest.raises(ConfigError, match="structure='mixed'"):
        DCNv2(3, tables(), structure="mixed", embedding_optimizer=None)
    with pytest.raises(ConfigError, match="low_rank"):
        DCNv2(3, tables(), low_rank=0, embedding_optimizer=None)
    model = DCNv2(3, tables(), deep_mlp=[4], embedding_optimizer=None)
    with pytest.raises(ShapeMismatchError, match=r"dense features of shape \(3, 3\) are required"):
        model(None, sparse_batch())


@pytest.mark.parametrize("structure", ["stacked", "parallel"])
def test_learns_a_click_task_with_a_cross(embedding_optimizer, structure, click_task, train_click_model):
    torch.manual_seed(0)
    model = DCNv2(click_task.num_dense, click_task.tables((7, 16)), num_cross_layers=2, low_rank=8,
                  deep_mlp=[32, 16], structure=structure, embedding_optimizer=embedding_optimizer, embedding_lr=0.1)
    assert train_click_model(model, click_task) > 0.85  # dense features alone: 0.58; the true model: 0.96
