import pytest
import torch

from recembed.errors import ConfigError, IdOutOfRangeError, ShapeMismatchError, UnknownKeyError
from recembed.models import DotProduct, NegativeSampler, bpr_loss, dense_parameters, mse_loss, sampled_softmax_loss
from recembed.sparse import KeyedJaggedTensor


def pairs(users, items) -> KeyedJaggedTensor:
    users, items = torch.as_tensor(users), torch.as_tensor(items)
    return KeyedJaggedTensor(["user", "item"], torch.cat([users, items]), lengths=torch.ones(2 * len(users), dtype=torch.int64))


def model_with_biases(**kwargs) -> DotProduct:
    torch.manual_seed(0)
    model = DotProduct(6, 5, 3, global_mean=3.5, embedding_optimizer=None, **kwargs)
    with torch.no_grad():  # biases start at zero; make them visible to the tests
        model.biases.embedding_bags["user_bias"].weight.normal_()
        model.biases.embedding_bags["item_bias"].weight.normal_()
    return model


def test_score_equals_hand_computation():
    model = model_with_biases()
    users, items = [0, 5, 2], [4, 1, 1]
    P = model.factors.embedding_bags["user_factors"].weight
    Q = model.factors.embedding_bags["item_factors"].weight
    bu = model.biases.embedding_bags["user_bias"].weight[:, 0]
    bi = model.biases.embedding_bags["item_bias"].weight[:, 0]
    expected = torch.stack([P[u] @ Q[i] + bu[u] + bi[i] + 3.5 for u, i in zip(users, items, strict=True)])
    assert torch.allclose(model(pairs(users, items)), expected, atol=1e-6)


def test_bias_tables_start_at_zero_and_can_be_disabled():
    model = DotProduct(4, 3, 2, embedding_optimizer=None)
    assert float(model.biases.embedding_bags["user_bias"].weight.detach().abs().sum()) == 0.0
    no_bias = DotProduct(4, 3, 2, use_biases=False, global_mean=1.0, embedding_optimizer=None)
    P = no_bias.factors.embedding_bags["user_factors"].weight
    Q = no_bias.factors.embedding_bags["item_factors"].weight
    assert torch.allclose(no_bias(pairs([1], [2])), (P[1] @ Q[2] + 1.0).view(1))
    assert no_bias.biases is None


def test_score_items_matches_forward_and_folded_vectors():
    model = model_with_biases()
    with torch.no_grad():
        grid = model.score_items(torch.tensor([1, 3]))
        assert grid.shape == (2, 5)
        forward = model(pairs([1] * 5 + [3] * 5, list(range(5)) * 2)).view(2, 5)
        assert torch.allclose(grid, forward, atol=1e-6)
        subset = model.score_items(torch.tensor([3]), torch.tensor([4, 0]))
        assert torch.allclose(subset, grid[1:, [4, 0]])
        users, items = model.user_vectors(fold_bias=True), model.item_vectors(fold_bias=True)
        assert users.shape == (6, 5) and items.shape == (5, 5)
        assert torch.allclose(users @ items.T, model.score_items(torch.arange(6)), atol=1e-6)
        assert model.user_vectors().shape == (6, 3) and model.item_vectors().shape == (5, 3)


def test_extra_batch_keys_are_ignored_and_key_order_is_free():
    model = model_with_biases()
    base = model(pairs([2, 4], [0, 3]))
    shuffled = KeyedJaggedTensor.from_lists({"age": [[1], [2]], "item": [[0], [3]], "user": [[2], [4]]})
    assert torch.allclose(model(shuffled), base)


def test_input_and_config_errors():
    model = DotProduct(4, 3, 2, embedding_optimizer=None)
    with pytest.raises(UnknownKeyError, match=r"\['item'\] missing from the batch"):
        model(KeyedJaggedTensor.from_lists({"user": [[1]]}))
    with pytest.raises(IdOutOfRangeError, match="feature 'item'.*id 3 out of range"):
        model(pairs([1], [3]))
    with pytest.raises(IdOutOfRangeError, match=r"\[0, 4\)"):
        model.score_items(torch.tensor([4]))
    with pytest.raises(ShapeMismatchError, match="1-D"):
        model.score_items(torch.tensor([[1]]))
    with pytest.raises(ConfigError, match="both 'x'"):
        DotProduct(4, 3, 2, user_feature="x", item_feature="x", embedding_optimizer=None)
    with pytest.raises(ConfigError, match="set weight_decay on the torch optimizer"):
        DotProduct(4, 3, 2, embedding_optimizer=None, weight_decay=0.1)
    with pytest.raises(ConfigError, match="embedding_optimizer='adamax'"):
        DotProduct(4, 3, 2, embedding_optimizer="adamax")
    with pytest.raises(ConfigError, match="embedding_dim must be >= 1"):
        DotProduct(4, 3, 0, embedding_optimizer=None)


def test_fused_tables_leave_no_dense_parameters(embedding_optimizer):
    model = DotProduct(4, 3, 2, embedding_optimizer=embedding_optimizer)
    expected = 0 if embedding_optimizer else 4
    assert len(dense_parameters(model)) == expected


def test_learns_a_rank_two_rating_matrix(embedding_optimizer):
    g = torch.Generator().manual_seed(0)
    num_users, num_items = 30, 20
    truth = torch.randn(num_users, 2, generator=g) @ torch.randn(num_items, 2, generator=g).T + 3.0
    observed = torch.rand(num_users, num_items, generator=g) < 0.7
    users, items = observed.nonzero(as_tuple=True)
    ratings = truth[users, items]
    torch.manual_seed(0)
    model = DotProduct(num_users, num_items, 4, global_mean=float(ratings.mean()), init="normal",
                       embedding_optimizer=embedding_optimizer, embedding_lr=0.5)
    params = dense_parameters(model)
    opt = torch.optim.Adam(params, lr=0.1) if params else None
    for _ in range(30):
        for index in torch.randperm(len(users), generator=g).split(64):
            loss = mse_loss(model(pairs(users[index], items[index])), ratings[index])
            if opt is not None:
                opt.zero_grad()
            loss.backward()
            if opt is not None:
                opt.step()
    with torch.no_grad():
        predicted = model.score_items(torch.arange(num_users))
    train_rmse = float((predicted[observed] - truth[observed]).pow(2).mean().sqrt())
    held_out_rmse = float((predicted[~observed] - truth[~observed]).pow(2).mean().sqrt())
    baseline = float((truth[~observed] - ratings.mean()).pow(2).mean().sqrt())  # predict the mean: ~1.2
    assert train_rmse < 0.1
    assert held_out_rmse < 0.25 < baseline


@pytest.mark.parametrize("loss_name", ["bpr", "sampled_softmax"])
def test_learns_implicit_feedback_with_sampled_negatives(embedding_optimizer, loss_name):
    """Users and items in 4 groups; a user interacts with its group's items only."""
    torch.manual_seed(0)
    model = DotProduct(40, 20, 8, embedding_optimizer=embedding_optimizer, embedding_lr=0.1)
    params = dense_parameters(model)
    opt = torch.optim.Adam(params, lr=0.05) if params else None
    # popularity sampler: even items are 3x as frequent, so the log-Q correction matters
    sampler = NegativeSampler.from_counts(torch.tensor([3.0, 1.0] * 10), power=1.0, seed=0)
    g = torch.Generator().manual_seed(2)
    for _ in range(80):
        users = torch.randint(0, 40, (32,), generator=g)
        pos = users % 4 + 4 * torch.randint(0, 5, (32,), generator=g)
        neg, log_q_neg = sampler.sample(32, 4)
        pos_scores = model(pairs(users, pos))
        neg_scores = model(pairs(users.repeat_interleave(4), neg.reshape(-1))).view(32, 4)
        if loss_name == "bpr":
            loss = bpr_loss(pos_scores, neg_scores)
        else:
            loss = sampled_softmax_loss(pos_scores, neg_scores, sampler.log_q(pos), log_q_neg,
                                        neg_mask=neg % 4 == (users % 4).unsqueeze(1))
        if opt is not None:
            opt.zero_grad()
        loss.backward()
        if opt is not None:
            opt.step()
    with torch.no_grad():
        scores = model.score_items(torch.arange(40))
    same_group = (torch.arange(40) % 4).unsqueeze(1) == (torch.arange(20) % 4).unsqueeze(0)
    # fraction of (positive, negative) pairs ranked correctly, per user: an AUC
    correct = (scores.unsqueeze(2) > scores.unsqueeze(1)) & same_group.unsqueeze(2) & ~same_group.unsqueeze(1)
    auc = float(correct.sum()) / float((same_group.unsqueeze(2) & ~same_group.unsqueeze(1)).sum())
    assert auc > 0.9  # random: 0.5
