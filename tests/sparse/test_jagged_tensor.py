"""Example tests for JaggedTensor: every method and every construction error."""

import pytest
import torch

from recembed.errors import InvalidDtypeError, JaggedStructureError
from recembed.sparse import JaggedTensor


def test_offsets_derived_from_lengths():
    jt = JaggedTensor(values=torch.tensor([5, 7, 1]), lengths=torch.tensor([1, 2]))
    assert jt.offsets_or_none() is None  # derived lazily
    assert jt.offsets().tolist() == [0, 1, 3]
    assert jt.offsets().dtype == torch.int64
    assert jt.offsets_or_none() is not None


def test_lengths_derived_from_offsets():
    jt = JaggedTensor(values=[5, 7, 1], offsets=[0, 1, 3])
    assert jt.lengths_or_none() is None
    assert jt.lengths().tolist() == [1, 2]
    assert jt.lengths().dtype == torch.int64


def test_values_dtype_kept_or_widened():
    assert JaggedTensor(torch.tensor([1, 2], dtype=torch.int32), lengths=[2]).values().dtype == torch.int32
    assert JaggedTensor(torch.tensor([1, 2], dtype=torch.int64), lengths=[2]).values().dtype == torch.int64
    assert JaggedTensor(torch.tensor([1, 2], dtype=torch.int16), lengths=[2]).values().dtype == torch.int64
    assert JaggedTensor([1, 2], lengths=[2]).values().dtype == torch.int64
    assert JaggedTensor([], lengths=[]).values().dtype == torch.int64


def test_lengths_converted_to_int64():
    jt = JaggedTensor([1, 2], lengths=torch.tensor([2], dtype=torch.int32))
    assert jt.lengths().dtype == torch.int64


def test_negative_ids_are_accepted():
    assert JaggedTensor([-1, 3], lengths=[2]).values().tolist() == [-1, 3]


def test_weights_accessors():
    jt = JaggedTensor([5, 7, 1], lengths=[1, 2], weights=[0.5, 1.0, 2.0])
    assert jt.weights().tolist() == [0.5, 1.0, 2.0]
    assert jt.weights_or_none() is jt.weights()
    plain = JaggedTensor([5, 7, 1], lengths=[1, 2])
    assert plain.weights_or_none() is None
    with pytest.raises(JaggedStructureError, match="no weights"):
        plain.weights()


def test_integer_weights_become_float():
    jt = JaggedTensor([5], lengths=[1], weights=[2])
    assert jt.weights().dtype == torch.get_default_dtype()


def test_len_and_batch_size():
    jt = JaggedTensor([5, 7, 1], lengths=[1, 0, 2])
    assert len(jt) == 3
    assert jt.batch_size() == 3
    assert len(JaggedTensor([], offsets=[0])) == 0


def test_to_dense_and_weights():
    jt = JaggedTensor([5, 7, 1], lengths=[1, 0, 2], weights=[0.5, 1.0, 2.0])
    assert [row.tolist() for row in jt.to_dense()] == [[5], [], [7, 1]]
    assert [row.tolist() for row in jt.to_dense_weights()] == [[0.5], [], [1.0, 2.0]]
    assert JaggedTensor([5], lengths=[1]).to_dense_weights() is None


def test_to_padded_dense():
    jt = JaggedTensor([5, 7, 1, 9], lengths=[1, 0, 3])
    assert jt.to_padded_dense().tolist() == [[5, 0, 0], [0, 0, 0], [7, 1, 9]]
    assert jt.to_padded_dense(desired_length=4, padding_value=-1).tolist() == [
        [5, -1, -1, -1],
        [-1, -1, -1, -1],
        [7, 1, 9, -1],
    ]
    # shorter than the longest row: truncated
    assert jt.to_padded_dense(desired_length=2).tolist() == [[5, 0], [0, 0], [7, 1]]
    assert jt.to_padded_dense(desired_length=0).shape == (3, 0)
    assert jt.to_padded_dense().dtype == jt.values().dtype


def test_to_padded_dense_weights():
    jt = JaggedTensor([5, 7, 1], lengths=[1, 2], weights=[0.5, 1.0, 2.0])
    assert jt.to_padded_dense_weights().tolist() == [[0.5, 0.0], [1.0, 2.0]]
    assert JaggedTensor([5], lengths=[1]).to_padded_dense_weights() is None


def test_to_padded_dense_empty_batch_and_bags():
    assert JaggedTensor([], lengths=[]).to_padded_dense().shape == (0, 0)
    assert JaggedTensor([], lengths=[0, 0]).to_padded_dense().tolist() == [[], []]
    assert JaggedTensor([], lengths=[0, 0]).to_padded_dense(2).tolist() == [[0, 0], [0, 0]]


def test_to_padded_dense_rejects_negative_length():
    with pytest.raises(JaggedStructureError, match="-1"):
        JaggedTensor([5], lengths=[1]).to_padded_dense(desired_length=-1)


def test_from_dense_lists_and_tensors():
    jt = JaggedTensor.from_dense([[5], [], [7, 1]])
    assert jt.lengths().tolist() == [1, 0, 2]
    assert jt.values().tolist() == [5, 7, 1]
    assert jt.values().dtype == torch.int64
    jt32 = JaggedTensor.from_dense([torch.tensor([5], dtype=torch.int32), torch.tensor([], dtype=torch.int32)])
    assert jt32.values().dtype == torch.int32
    assert jt32.lengths().tolist() == [1, 0]
    assert len(JaggedTensor.from_dense([])) == 0


def test_from_dense_with_weights():
    jt = JaggedTensor.from_dense([[5], [7, 1]], weights=[[0.5], [1.0, 2.0]])
    assert jt.weights().tolist() == [0.5, 1.0, 2.0]
    with pytest.raises(JaggedStructureError, match="row 1 has 2 values but 1 weights"):
        JaggedTensor.from_dense([[5], [7, 1]], weights=[[0.5], [1.0]])
    with pytest.raises(JaggedStructureError, match="1 weight rows for 2 value rows"):
        JaggedTensor.from_dense([[5], [7, 1]], weights=[[0.5]])


def test_from_dense_rejects_2d_row():
    with pytest.raises(JaggedStructureError, match="row 0 must be 1-D"):
        JaggedTensor.from_dense([[[1, 2]]])


def test_to_and_pin_memory_keep_content():
    jt = JaggedTensor([5, 7, 1], lengths=[1, 2], weights=[0.5, 1.0, 2.0])
    moved = jt.to("cpu")
    assert moved.equals(jt)
    assert moved.to(torch.device("cpu"), non_blocking=True).equals(jt)
    if torch.cuda.is_available():  # pragma: no cover - CPU-only CI
        assert jt.pin_memory().values().is_pinned()
    else:
        with pytest.raises(RuntimeError):  # torch itself refuses without a GPU
            jt.pin_memory()


def test_equals():
    a = JaggedTensor([5, 7, 1], lengths=[1, 2])
    assert a.equals(JaggedTensor([5, 7, 1], offsets=[0, 1, 3]))
    assert not a.equals(JaggedTensor([5, 7, 1], lengths=[2, 1]))
    assert not a.equals(JaggedTensor([5, 7, 2], lengths=[1, 2]))
    assert not a.equals(JaggedTensor([5, 7, 1], lengths=[1, 2], weights=[1.0, 1.0, 1.0]))
    assert not a.equals(JaggedTensor(torch.tensor([5, 7, 1], dtype=torch.int32), lengths=[1, 2]))
    assert not a.equals("not a jagged tensor")


def test_repr():
    assert repr(JaggedTensor([5, 7, 1], lengths=[1, 2])) == "JaggedTensor([[5], [7, 1]])"
    assert (
        repr(JaggedTensor([5, 7, 1], lengths=[1, 2], weights=[0.5, 1.0, 2.0]))
        == "JaggedTensor([[5], [7, 1]], weights=[[0.5], [1, 2]])"
    )
    assert repr(JaggedTensor([], lengths=[0])) == "JaggedTensor([[]])"
    assert repr(JaggedTensor([], lengths=[])) == "JaggedTensor([])"


def test_repr_truncates_large_batches():
    text = repr(JaggedTensor(list(range(30)), lengths=[30] + [0] * 24))
    assert "... (10 more)" in text
    assert "... (5 more rows)" in text


# ----------------------------------------------------------------- construction errors
def test_float_ids_rejected():
    with pytest.raises(InvalidDtypeError, match="float32"):
        JaggedTensor(torch.tensor([1.0, 2.0]), lengths=[2])
    with pytest.raises(InvalidDtypeError, match="bool"):
        JaggedTensor(torch.tensor([True]), lengths=[1])


def test_float_lengths_rejected():
    with pytest.raises(InvalidDtypeError, match="lengths"):
        JaggedTensor([1, 2], lengths=torch.tensor([2.0]))


def test_missing_lengths_and_offsets():
    with pytest.raises(JaggedStructureError, match="lengths or offsets"):
        JaggedTensor([1, 2])


def test_negative_length():
    with pytest.raises(JaggedStructureError, match="-1"):
        JaggedTensor([1], lengths=[2, -1])


def test_lengths_sum_mismatch_names_both_numbers():
    with pytest.raises(JaggedStructureError, match="sum to 4 but values has 3"):
        JaggedTensor([1, 2, 3], lengths=[1, 3])


def test_offsets_must_start_at_zero():
    with pytest.raises(JaggedStructureError, match="start at 0, got 1"):
        JaggedTensor([1, 2, 3], offsets=[1, 3])


def test_offsets_must_be_monotonic():
    with pytest.raises(JaggedStructureError, match=r"offsets\[2\] = 1 < offsets\[1\] = 2"):
        JaggedTensor([1, 2, 3], offsets=[0, 2, 1, 3])


def test_offsets_must_end_at_num_values():
    with pytest.raises(JaggedStructureError, match="end at 2 but values has 3"):
        JaggedTensor([1, 2, 3], offsets=[0, 1, 2])


def test_offsets_must_not_be_empty():
    with pytest.raises(JaggedStructureError, match="at least one entry"):
        JaggedTensor([], offsets=[])


def test_lengths_and_offsets_must_agree():
    with pytest.raises(JaggedStructureError, match="different rows"):
        JaggedTensor([1, 2, 3], lengths=[2, 1], offsets=[0, 1, 3])
    with pytest.raises(JaggedStructureError, match="3 offsets for 1 lengths"):
        JaggedTensor([1, 2, 3], lengths=[3], offsets=[0, 1, 3])


def test_weights_length_mismatch():
    with pytest.raises(JaggedStructureError, match="weights has 2 entries but values has 3"):
        JaggedTensor([1, 2, 3], lengths=[3], weights=[1.0, 2.0])


@pytest.mark.parametrize("argument", ["values", "lengths", "offsets", "weights"])
def test_non_1d_inputs_rejected(argument):
    kwargs = {"values": [1, 2], "lengths": [2]}
    if argument == "offsets":
        kwargs = {"values": [1, 2], "offsets": [[0, 2]]}
    elif argument == "weights":
        kwargs["weights"] = [[1.0, 2.0]]
    elif argument == "values":
        kwargs["values"] = [[1, 2]]
    else:
        kwargs["lengths"] = [[2]]
    with pytest.raises(JaggedStructureError, match=f"{argument} must be 1-D, got shape \\(1, "):
        JaggedTensor(**kwargs)
