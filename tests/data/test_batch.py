import pytest
import torch

from recembed.data import Batch
from recembed.errors import InvalidDtypeError, ShapeMismatchError
from recembed.sparse import KeyedJaggedTensor


def _batch(**overrides):
    parts = dict(
        sparse=KeyedJaggedTensor.from_lists({"user": [[3], [7]], "tags": [[1, 2], []]}),
        dense=torch.tensor([[0.5], [1.5]]),
        labels=torch.tensor([1.0, 0.0]),
        timestamps=torch.tensor([10, 20]),
    )
    parts.update(overrides)
    return Batch(**parts)


def test_len_and_fields():
    b = _batch()
    assert len(b) == 2
    assert b.sparse["tags"].lengths().tolist() == [2, 0]
    assert b.dense.shape == (2, 1)


def test_to_device_copies_every_tensor():
    b = _batch(extra={"weight": torch.tensor([1.0, 2.0])})
    moved = b.to("cpu")
    assert moved.sparse.values().tolist() == [3, 7, 1, 2]
    assert moved.timestamps.tolist() == [10, 20]
    assert moved.extra["weight"].tolist() == [1.0, 2.0]


def test_pin_memory_without_accelerator_returns_same_batch():
    b = _batch()
    if torch.cuda.is_available():  # pragma: no cover - depends on the machine
        assert b.pin_memory().dense.is_pinned()
    else:
        assert b.pin_memory() is b


@pytest.mark.parametrize(
    "overrides, error",
    [
        (dict(labels=torch.tensor([[1.0, 0.0]])), ShapeMismatchError),
        (dict(labels=torch.tensor([1, 0])), InvalidDtypeError),
        (dict(dense=torch.zeros(3, 1)), ShapeMismatchError),
        (dict(dense=torch.zeros(2, 1, dtype=torch.int64)), InvalidDtypeError),
        (dict(labels=torch.tensor([1.0, 0.0, 1.0]), dense=torch.zeros(3, 0)), ShapeMismatchError),
        (dict(timestamps=torch.tensor([1, 2, 3])), ShapeMismatchError),
        (dict(extra={"w": torch.zeros(5)}), ShapeMismatchError),
    ],
)
def test_inconsistent_shapes_are_rejected(overrides, error):
    with pytest.raises(error):
        _batch(**overrides)
