import numpy as np
import pytest

from recembed.data import binary_auc, make_ctr_dataset, make_implicit_dataset, make_ratings_dataset
from recembed.errors import ConfigError


def test_binary_auc_matches_pair_counting():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.integers(0, 10, 200).astype(float)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert binary_auc(labels, scores) == pytest.approx(pairs)
    assert binary_auc([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2]) == 1.0
    assert np.isnan(binary_auc([1, 1], [0.1, 0.2]))


def test_ctr_teacher_is_a_useful_ceiling():
    data = make_ctr_dataset(20_000, num_sparse=8, num_dense=4, seed=0)
    assert 0.74 < data.teacher_auc < 0.88
    assert data.labels.mean() == pytest.approx(0.25, abs=0.02)
    p = data.teacher_probabilities
    assert p[data.labels == 1].mean() > p[data.labels == 0].mean() + 0.1
    # Shuffling the teacher's scores destroys the signal.
    assert abs(binary_auc(data.labels, np.random.default_rng(1).permutation(p)) - 0.5) < 0.03
    assert data.num_rows == {f"C{i + 1}": c for i, c in enumerate(data.cardinalities.values())}
    for name, (lengths, ids) in data.sparse.items():
        assert (lengths == 1).all() and 0 <= ids.min() and ids.max() < data.cardinalities[name]


def test_ctr_ids_follow_a_power_law_and_are_seeded():
    data = make_ctr_dataset(20_000, num_sparse=3, num_dense=1, cardinalities=1000, seed=4)
    counts = np.sort(np.bincount(data.sparse["C1"][1], minlength=1000))[::-1]
    assert counts[0] > 20 * counts[99] > 0  # head vs rank 100 under Zipf(1.05)
    again = make_ctr_dataset(20_000, num_sparse=3, num_dense=1, cardinalities=1000, seed=4)
    np.testing.assert_array_equal(again.labels, data.labels)
    np.testing.assert_array_equal(again.sparse["C2"][1], data.sparse["C2"][1])
    other = make_ctr_dataset(20_000, num_sparse=3, num_dense=1, cardinalities=1000, seed=5)
    assert not np.array_equal(other.labels, data.labels)


def test_ctr_multi_hot_and_dense(collect):
    data = make_ctr_dataset(2000, num_sparse=3, num_dense=2, multi_hot=(1,), seed=0)
    lengths = data.sparse["C2"][0]
    assert lengths.min() >= 1 and 2.5 < lengths.mean() < 3.5
    np.testing.assert_allclose(data.dense, np.log1p(np.maximum(data.dense_raw, 0)), rtol=1e-6)
    assert (data.dense_raw[:, 1] == -1).any()
    got = collect(data.to_batches(batch_size=512))
    assert [len(r) for r in got["sparse"]["C2"]] == lengths.tolist()
    train, test = data.split(0.25, seed=0)
    assert len(train) == 1500 and len(test) == 500 and 0.5 < test.teacher_auc < 1.0
    with pytest.raises(ConfigError, match="multi_hot"):
        make_ctr_dataset(100, num_sparse=2, multi_hot=(2,))


def test_ratings_follow_the_latent_model():
    data = make_ratings_dataset(num_users=200, num_items=100, num_ratings=5000, rank=4, noise=0.3, seed=0)
    r = data.interactions.ratings
    assert set(np.unique(r).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    pairs = set(zip(data.interactions.user_rows.tolist(), data.interactions.item_rows.tolist()))
    assert len(pairs) == 5000  # each pair rated once
    expected = data.expected_ratings(data.interactions.user_rows, data.interactions.item_rows)
    assert np.corrcoef(r, expected)[0, 1] > 0.85
    noisy = make_ratings_dataset(num_users=200, num_items=100, num_ratings=5000, rank=4, noise=3.0, seed=0)
    i = noisy.interactions
    assert np.corrcoef(i.ratings, noisy.expected_ratings(i.user_rows, i.item_rows))[0, 1] < 0.6
    raw = make_ratings_dataset(num_users=20, num_items=10, num_ratings=100, round_ratings=False, seed=1)
    assert (raw.interactions.ratings % 1 != 0).any() and raw.interactions.ratings.min() >= 1.0
    with pytest.raises(ConfigError, match="distinct pairs"):
        make_ratings_dataset(num_users=2, num_items=2, num_ratings=5)


def test_implicit_interactions_prefer_high_scores():
    data = make_implicit_dataset(num_users=100, num_items=200, interactions_per_user=10, temperature=0.3, seed=0)
    inter = data.interactions
    counts = np.bincount(inter.user_rows, minlength=100)
    assert counts.min() >= 2 and 8 < counts.mean() < 12
    assert len(set(zip(inter.user_rows.tolist(), inter.item_rows.tolist()))) == len(inter)
    scores = data.scores(np.arange(100))
    chosen = scores[inter.user_rows, inter.item_rows]
    assert chosen.mean() > scores.mean() + 1.0
    top = data.true_top_k(np.array([0, 1]), 5)
    assert top.shape == (2, 5)
    assert (np.diff(scores[0, top[0]]) <= 0).all() and scores[0, top[0, 0]] == scores[0].max()
    # Timestamps are distinct and increasing within each user.
    for u in range(5):
        t = inter.timestamps[inter.user_rows == u]
        assert len(np.unique(t)) == len(t)


def test_ctr_component_weights_select_the_teacher_parts():
    data = make_ctr_dataset(3000, num_sparse=3, num_dense=1, component_weights=(0.0, 0.0, 1.0), seed=2)
    order = np.argsort(data.dense[:, 0], kind="stable")
    steps = np.diff(data.teacher_probabilities[order])
    # Only the dense part is left: the probability is a monotone function of the one dense feature.
    assert (steps >= -1e-12).all() or (steps <= 1e-12).all()
    flat = make_ctr_dataset(3000, num_sparse=3, num_dense=1, head_size=None, seed=2)
    assert 0.7 < flat.teacher_auc < 0.9
