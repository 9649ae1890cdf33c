"""Example tests for KeyedTensor."""

import pytest
import torch

from recembed.errors import JaggedStructureError, ShapeMismatchError, UnknownKeyError
from recembed.sparse import KeyedTensor


def make_kt() -> KeyedTensor:
    values = torch.arange(10, dtype=torch.float32).view(2, 5)  # user: cols 0-1, item: cols 2-4
    return KeyedTensor(["user", "item"], [2, 3], values)


def test_accessors():
    kt = make_kt()
    assert kt.keys() == ["user", "item"]
    assert kt.length_per_key() == [2, 3]
    assert kt.offset_per_key() == [0, 2, 5]
    assert kt.key_dim() == 1
    assert kt.values().shape == (2, 5)


def test_getitem_and_to_dict_are_views():
    kt = make_kt()
    assert kt["user"].tolist() == [[0.0, 1.0], [5.0, 6.0]]
    assert kt["item"].tolist() == [[2.0, 3.0, 4.0], [7.0, 8.0, 9.0]]
    blocks = kt.to_dict()
    assert list(blocks) == ["user", "item"]
    assert torch.equal(blocks["item"], kt["item"])
    blocks["item"][0, 0] = 100.0  # writes through: no copy was made
    assert kt.values()[0, 2].item() == 100.0


def test_unknown_key():
    with pytest.raises(UnknownKeyError, match=r"'ad'.*\['user', 'item'\]"):
        make_kt()["ad"]


def test_from_tensor_list():
    kt = KeyedTensor.from_tensor_list(["a", "b"], [torch.ones(3, 2), torch.zeros(3, 1)])
    assert kt.length_per_key() == [2, 1]
    assert kt.values().tolist() == [[1.0, 1.0, 0.0]] * 3
    rows = KeyedTensor.from_tensor_list(["a", "b"], [torch.ones(1, 4), torch.zeros(2, 4)], key_dim=0)
    assert rows.key_dim() == 0 and rows.values().shape == (3, 4)
    assert rows["b"].shape == (2, 4)


def test_from_tensor_list_errors():
    with pytest.raises(ShapeMismatchError, match="key 'b' has shape \\(2, 1\\)"):
        KeyedTensor.from_tensor_list(["a", "b"], [torch.ones(3, 2), torch.zeros(2, 1)])
    with pytest.raises(ShapeMismatchError, match="2 keys but 1 tensors"):
        KeyedTensor.from_tensor_list(["a", "b"], [torch.ones(3, 2)])
    with pytest.raises(ShapeMismatchError, match="at least one"):
        KeyedTensor.from_tensor_list([], [])
    with pytest.raises(ShapeMismatchError, match="key_dim 2"):
        KeyedTensor.from_tensor_list(["a"], [torch.ones(3, 2)], key_dim=2)


def test_constructor_errors():
    with pytest.raises(ShapeMismatchError, match="size 5 along key_dim 1 but length_per_key sums to 4"):
        KeyedTensor(["a", "b"], [2, 2], torch.zeros(2, 5))
    with pytest.raises(ShapeMismatchError, match="2 keys but 1 entries"):
        KeyedTensor(["a", "b"], [5], torch.zeros(2, 5))
    with pytest.raises(JaggedStructureError, match="duplicate key 'a'"):
        KeyedTensor(["a", "a"], [2, 3], torch.zeros(2, 5))
    with pytest.raises(ShapeMismatchError, match="negative length -1"):
        KeyedTensor(["a", "b"], [6, -1], torch.zeros(2, 5))
    with pytest.raises(ShapeMismatchError, match="key_dim 3"):
        KeyedTensor(["a"], [5], torch.zeros(2, 5), key_dim=3)


def test_negative_key_dim_is_normalised():
    assert KeyedTensor(["a"], [5], torch.zeros(2, 5), key_dim=-1).key_dim() == 1


def test_regroup_across_keyed_tensors():
    a = make_kt()
    b = KeyedTensor(["ad"], [1], torch.tensor([[-1.0], [-2.0]]))
    ad_user, item, nothing = KeyedTensor.regroup([a, b], [["ad", "user"], ["item"], []])
    assert ad_user.tolist() == [[-1.0, 0.0, 1.0], [-2.0, 5.0, 6.0]]
    assert item.tolist() == [[2.0, 3.0, 4.0], [7.0, 8.0, 9.0]]
    assert nothing.shape == (2, 0)


def test_regroup_errors():
    a = make_kt()
    with pytest.raises(UnknownKeyError, match="'ad'"):
        KeyedTensor.regroup([a], [["ad"]])
    with pytest.raises(JaggedStructureError, match="'user' is in KeyedTensor 0 and KeyedTensor 1"):
        KeyedTensor.regroup([a, a], [["user"]])
    other_batch = KeyedTensor(["x"], [1], torch.zeros(3, 1))
    with pytest.raises(ShapeMismatchError, match="KeyedTensor 1 has values of shape \\(3, 1\\)"):
        KeyedTensor.regroup([a, other_batch], [["x"]])
    with pytest.raises(ShapeMismatchError, match="at least one"):
        KeyedTensor.regroup([], [])


def test_to_and_repr():
    kt = make_kt()
    moved = kt.to("cpu")
    assert torch.equal(moved.values(), kt.values()) and moved.keys() == kt.keys()
    assert repr(kt) == (
        'KeyedTensor(keys=["user", "item"], length_per_key=[2, 3], key_dim=1, '
        "values=Tensor(shape=(2, 5), dtype=torch.float32))"
    )


def test_empty_batch():
    kt = KeyedTensor.from_tensor_list(["a", "b"], [torch.zeros(0, 2), torch.zeros(0, 3)])
    assert kt.values().shape == (0, 5)
    assert KeyedTensor.regroup([kt], [["b", "a"]])[0].shape == (0, 5)
