import numpy as np
import pytest

from recembed.data import Interactions, leave_last_out_split, make_implicit_dataset, random_split
from recembed.errors import ConfigError, ShapeMismatchError, UnknownKeyError


def _data():
    # user 10: t=5, 9, 9 (tie: the later row wins); user 20: one event; user 30: t=3, 1
    return Interactions.from_raw_ids(
        user_ids=[10, 20, 10, 30, 10, 30],
        item_ids=[1, 2, 3, 1, 2, 4],
        ratings=[5, 4, 3, 2, 1, 5],
        timestamps=[5, 7, 9, 3, 9, 1],
    )


def test_from_raw_ids_and_batches(collect):
    data = _data()
    assert data.num_rows == {"user": 3, "item": 4}
    assert data.user_rows.tolist() == [0, 1, 0, 2, 0, 2]
    got = collect(data.to_batches(batch_size=4))
    assert got["sparse"]["user"] == [[0], [1], [0], [2], [0], [2]]
    assert got["sparse"]["item"] == [[0], [1], [2], [0], [1], [3]]
    assert got["labels"].tolist() == [5, 4, 3, 2, 1, 5]
    assert got["timestamps"].tolist() == [5, 7, 9, 3, 9, 1]
    assert got["dense"].shape == (6, 0)
    stream = data.to_batches(batch_size=4, drop_last=True)
    assert len(stream) == 1 and [len(b) for b in stream] == [4]
    assert len(data.to_batches(batch_size=4)) == 2


def test_shuffled_batches_are_deterministic_per_seed_and_epoch(collect):
    data = make_implicit_dataset(num_users=20, num_items=30, interactions_per_user=5, seed=0).interactions
    a = data.to_batches(batch_size=16, shuffle=True, seed=1)
    b = data.to_batches(batch_size=16, shuffle=True, seed=1)
    first_a, first_b = collect(a)["timestamps"], collect(b)["timestamps"]
    np.testing.assert_array_equal(first_a, first_b)
    assert sorted(first_a.tolist()) == sorted(data.timestamps.tolist())
    assert not np.array_equal(first_a, data.timestamps)
    assert not np.array_equal(collect(a)["timestamps"], first_a)  # epoch 2: new order


def test_lookup_and_validation():
    data = _data()
    with pytest.raises(UnknownKeyError, match="raw user id 99"):
        data.user_row(99)
    with pytest.raises(ShapeMismatchError, match=r"user_rows must lie in \[0, 1\)"):
        Interactions(np.array([0, 1]), np.array([0, 0]), np.ones(2), None, np.array([7]), np.array([1]))
    with pytest.raises(ShapeMismatchError, match="every column"):
        Interactions(np.array([0]), np.array([0, 0]), np.ones(2), None, np.array([7]), np.array([1]))


def test_random_split_is_a_seeded_partition():
    data = make_implicit_dataset(num_users=50, num_items=40, interactions_per_user=6, seed=2).interactions
    train, test = random_split(data, test_fraction=0.25, seed=4)
    assert len(test) == round(0.25 * len(data)) and len(train) + len(test) == len(data)
    key = lambda d: set(zip(d.user_rows.tolist(), d.item_rows.tolist()))
    assert key(train) | key(test) == key(data) and not key(train) & key(test)
    again = random_split(data, test_fraction=0.25, seed=4)[1]
    assert key(again) == key(test)
    assert key(random_split(data, test_fraction=0.25, seed=5)[1]) != key(test)
    assert train.user_ids is data.user_ids  # shared id maps
    with pytest.raises(ConfigError, match="test_fraction"):
        random_split(data, test_fraction=1.0)


def test_leave_last_out_picks_each_users_latest_event():
    train, test = leave_last_out_split(_data())
    # user 10 -> the t=9 event later in the table (item 2); user 30 -> t=3 (item 1);
    # user 20 has one event and stays in train.
    assert sorted(zip(test.user_ids[test.user_rows].tolist(), test.item_ids[test.item_rows].tolist())) == [(10, 2), (30, 1)]
    assert len(train) == 4 and 20 in train.user_ids[train.user_rows].tolist()
    _, test_all = leave_last_out_split(_data(), min_interactions=1)
    assert len(test_all) == 3


def test_leave_last_out_on_generated_data():
    data = make_implicit_dataset(num_users=30, num_items=50, interactions_per_user=6, seed=1).interactions
    train, test = leave_last_out_split(data)
    assert len(test) == data.num_users and sorted(test.user_rows.tolist()) == list(range(30))
    latest = np.full(data.num_users, -1)
    np.maximum.at(latest, data.user_rows, data.timestamps)
    np.testing.assert_array_equal(test.timestamps, latest[test.user_rows])
    # Every training event of a user is no later than that user's test event.
    assert (train.timestamps <= latest[train.user_rows]).all()
    with pytest.raises(ConfigError, match="timestamps"):
        leave_last_out_split(Interactions.from_raw_ids([1], [1]))
