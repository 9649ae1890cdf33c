import pytest
import torch

from recembed.errors import ConfigError
from recembed.models import DeepFM, fm_second_order
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagConfig


def tables(dims=(4, 4)) -> list[EmbeddingBagConfig]:
    return [
        EmbeddingBagConfig(name="t_ad", num_embeddings=10, embedding_dim=dims[0], feature_names=["ad"]),
        EmbeddingBagConfig(name="t_site", num_embeddings=6, embedding_dim=dims[1], feature_names=["site"]),
    ]


def sparse_batch() -> KeyedJaggedTensor:
    return KeyedJaggedTensor.from_lists({"ad": [[1], [2, 9]], "site": [[0], [5]]})


def test_forward_equals_hand_computation():
    torch.manual_seed(0)
    model = DeepFM(2, tables(), deep_mlp=[8], embedding_optimizer=None)
    with torch.no_grad():  # first-order tables start at zero; make them count
        for table in model.first_order.embedding_bags.values():
            table.weight.normal_()
        model.bias.fill_(0.3)
    dense = torch.randn(2, 2)
    ad, site = (model.embeddings.embedding_bags[n].weight for n in ("t_ad", "t_site"))
    ad1, site1 = (model.first_order.embedding_bags[n].weight[:, 0] for n in ("t_ad_linear", "t_site_linear"))
    ad_rows, site_rows = [[1], [2, 9]], [[0], [5]]
    logits = model(dense, sparse_batch())
    for b in range(2):
        fields = [ad[ad_rows[b]].sum(0), site[site_rows[b]].sum(0), model.dense_field(dense[b])]
        second = sum(fields[i] @ fields[j] for i in range(3) for j in range(i + 1, 3))
        first = ad1[ad_rows[b]].sum() + site1[site_rows[b]].sum() + model.dense_linear(dense[b])[0]
        deep = model.deep_head(torch.relu(model.deep.layers[0](torch.cat(fields))))[0]
        assert torch.allclose(logits[b], 0.3 + first + second + deep, atol=1e-5)
    fields = model.fields(dense, sparse_batch())
    assert fields.shape == (2, 3, 4)
    assert torch.allclose(fm_second_order(fields)[0], sum(fields[0, i] @ fields[0, j] for i in range(3) for j in range(i + 1, 3)))


def test_first_order_tables_mirror_the_configs():
    model = DeepFM(0, tables(), deep_mlp=[], embedding_optimizer=None)
    linear = {c.name: c for c in model.first_order.embedding_bag_configs()}
    assert set(linear) == {"t_ad_linear", "t_site_linear"}
    assert linear["t_ad_linear"].embedding_dim == 1 and linear["t_ad_linear"].feature_names == ["ad"]
    assert float(model.first_order.embedding_bags["t_ad_linear"].weight.detach().abs().sum()) == 0.0
    assert model(None, sparse_batch()).shape == (2,)


def test_mismatched_dims_name_the_table():
    with pytest.raises(ConfigError, match=r"table 't_site' has embedding_dim=8 but table 't_ad' has 4"):
        DeepFM(2, tables((4, 8)), embedding_optimizer=None)


def test_learns_a_click_task_with_a_cross(embedding_optimizer, click_task, train_click_model):
    torch.manual_seed(0)
    model = DeepFM(click_task.num_dense, click_task.tables((8, 8)), deep_mlp=[16],
                   embedding_optimizer=embedding_optimizer, embedding_lr=0.1)
    assert train_click_model(model, click_task) > 0.85  # dense features alone: 0.58; the true model: 0.96
