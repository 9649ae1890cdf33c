import math

import pytest
import torch

from recembed.errors import ConfigError, ShapeMismatchError, UnknownKeyError
from recembed.models import StreamingFrequencyEstimator, TwoTower, dense_parameters, in_batch_softmax_loss
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagConfig


def hand_loss(u, i, temperature, log_q, ids):
    total = 0.0
    batch = len(u)
    for b in range(batch):
        candidates = [j for j in range(batch) if j == b or ids is None or ids[j] != ids[b]]
        logits = {j: float(u[b] @ i[j]) / temperature - (0.0 if log_q is None else float(log_q[j])) for j in candidates}
        total += -(logits[b] - math.log(sum(math.exp(v) for v in logits.values())))
    return total / batch


@pytest.mark.parametrize("with_log_q", [False, True])
@pytest.mark.parametrize("with_ids", [False, True])
def test_in_batch_loss_equals_hand_computed_cross_entropy(with_log_q, with_ids):
    g = torch.Generator().manual_seed(0)
    u, i = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    log_q = torch.log(torch.tensor([0.5, 0.1, 0.5, 0.02])) if with_log_q else None
    ids = torch.tensor([5, 7, 5, 9]) if with_ids else None  # rows 0 and 2 share an item
    loss = in_batch_softmax_loss(u, i, temperature=0.5, item_log_q=log_q, item_ids=ids)
    assert float(loss) == pytest.approx(hand_loss(u, i, 0.5, log_q, ids), rel=1e-5)


def test_in_batch_loss_errors():
    with pytest.raises(ShapeMismatchError, match="item_log_q must be"):
        in_batch_softmax_loss(torch.zeros(3, 2), torch.zeros(3, 2), item_log_q=torch.zeros(2))
    with pytest.raises(ShapeMismatchError, match="both be"):
        in_batch_softmax_loss(torch.zeros(3, 2), torch.zeros(3, 4))


def make_model(embedding_optimizer=None, **kwargs) -> TwoTower:
    torch.manual_seed(0)
    user_tables = [EmbeddingBagConfig(name="t_user", num_embeddings=64, embedding_dim=8, feature_names=["user"])]
    item_tables = [
        EmbeddingBagConfig(name="t_item", num_embeddings=32, embedding_dim=8, feature_names=["item"]),
        EmbeddingBagConfig(name="t_tag", num_embeddings=8, embedding_dim=3, feature_names=["tags"], pooling="mean"),
    ]
    options = dict(tower_dims=[16, 8], temperature=0.1, item_id_feature="item", embedding_optimizer=embedding_optimizer)
    options.update(kwargs)
    return TwoTower(user_tables, item_tables, **options)


def item_batch(items: torch.Tensor) -> KeyedJaggedTensor:
    # tags: multi-hot -- the item's group and, for even items, a shared tag 0
    tags = [[int(i) % 8] + ([0] if int(i) % 2 == 0 else []) for i in items]
    return KeyedJaggedTensor.from_lists({"item": [[int(i)] for i in items], "tags": tags})


def user_batch(users: torch.Tensor) -> KeyedJaggedTensor:
    return KeyedJaggedTensor.from_lists({"user": [[int(u)] for u in users]})


def test_shapes_normalisation_and_forward_logits():
    model = make_model()
    users, items = user_batch(torch.tensor([1, 2, 3])), item_batch(torch.tensor([4, 5, 4]))
    u, i = model.user_embeddings(users), model.item_embeddings(items)
    assert u.shape == i.shape == (3, 8) and model.output_dim == 8
    assert torch.allclose(u.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(model(users, items), (u * i).sum(1) / 0.1, atol=1e-5)
    # loss() reads the item ids from item_id_feature to mask the duplicate item 4
    expected = in_batch_softmax_loss(u, i, 0.1, item_ids=torch.tensor([4, 5, 4]))
    assert torch.allclose(model.loss(users, items), expected)
    unnormalised = make_model(normalize=False).user_embeddings(users)
    assert not torch.allclose(unnormalised.norm(dim=1), torch.ones(3), atol=1e-3)


def test_config_and_input_errors():
    with pytest.raises(ConfigError, match=r"width 8 \(user\) and 11 \(item\)"):
        make_model(tower_dims=[])
    with pytest.raises(ConfigError, match="item_id_feature 'sku'"):
        make_model(item_id_feature="sku")
    with pytest.raises(ConfigError, match="temperature"):
        make_model(temperature=0.0)
    model = make_model()
    with pytest.raises(UnknownKeyError, match=r"item tower: feature\(s\) \['tags'\] missing"):
        model.item_embeddings(KeyedJaggedTensor.from_lists({"item": [[1]]}))
    with pytest.raises(ShapeMismatchError, match="user batch has 2 rows but item batch has 1"):
        model(user_batch(torch.tensor([1, 2])), item_batch(torch.tensor([3])))
    with pytest.raises(ShapeMismatchError, match="exactly one id per row"):
        model.loss(user_batch(torch.tensor([1])), KeyedJaggedTensor.from_lists({"item": [[1, 2]], "tags": [[1]]}))


STEPS = 60


def test_learns_group_preferences_with_log_q(embedding_optimizer):
    """Users and items fall in 8 groups; users interact with their group's items only."""
    model = make_model(embedding_optimizer, embedding_lr=0.1)
    estimator = StreamingFrequencyEstimator(num_buckets=256, alpha=0.05)
    opt = torch.optim.Adam(dense_parameters(model), lr=0.01)
    g = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        users = torch.randint(0, 64, (32,), generator=g)
        items = users % 8 + 8 * torch.randint(0, 4, (32,), generator=g)  # an item of the user's group
        log_q = estimator.update_and_log_q(items)
        loss = model.loss(user_batch(users), item_batch(items), item_log_q=log_q)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        scores = model.user_embeddings(user_batch(torch.arange(64))) @ model.item_embeddings(item_batch(torch.arange(32))).T
    top4 = scores.topk(4, dim=1).indices
    hit_rate = float((top4 % 8 == (torch.arange(64) % 8).unsqueeze(1)).float().mean())
    assert hit_rate > 0.8  # random ranking: 0.125
