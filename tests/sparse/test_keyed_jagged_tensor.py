"""Example tests for KeyedJaggedTensor: every method and every construction error."""

import pytest
import torch

from recembed.errors import InvalidDtypeError, JaggedStructureError, UnknownKeyError
from recembed.sparse import JaggedTensor, KeyedJaggedTensor

LISTS = {"product": [[1, 2, 1], [5]], "user": [[2, 3], [4, 1]]}


def make_kjt(weighted: bool = False) -> KeyedJaggedTensor:
    weights = None
    if weighted:
        weights = {"product": [[1.0, 0.5, 2.0], [1.0]], "user": [[0.25, 1.0], [3.0, 1.0]]}
    return KeyedJaggedTensor.from_lists(LISTS, weights=weights)


def test_from_lists_layout_is_key_major():
    kjt = make_kjt()
    assert kjt.keys() == ["product", "user"]
    assert kjt.lengths().tolist() == [3, 1, 2, 2]
    assert kjt.values().tolist() == [1, 2, 1, 5, 2, 3, 4, 1]
    assert kjt.offsets().tolist() == [0, 3, 4, 6, 8]
    assert kjt.stride() == 2
    assert kjt.values().dtype == torch.int64
    assert kjt.lengths().dtype == torch.int64


def test_constructor_with_lengths_and_offsets():
    kjt = KeyedJaggedTensor(["a", "b"], [1, 2, 3], lengths=[1, 0, 2, 0])
    assert kjt.stride() == 2
    assert kjt.offsets_or_none() is None
    assert kjt.offsets().tolist() == [0, 1, 1, 3, 3]
    by_offsets = KeyedJaggedTensor(["a", "b"], [1, 2, 3], offsets=[0, 1, 1, 3, 3])
    assert by_offsets.lengths_or_none() is None
    assert by_offsets.lengths().tolist() == [1, 0, 2, 0]
    assert by_offsets.equals(kjt)


def test_explicit_stride():
    kjt = KeyedJaggedTensor(["a"], [1, 2], lengths=[1, 1], stride=2)
    assert kjt.stride() == 2


def test_length_and_offset_per_key():
    kjt = make_kjt()
    assert kjt.length_per_key() == [4, 4]
    assert kjt.offset_per_key() == [0, 4, 8]
    kjt2 = KeyedJaggedTensor(["a", "b", "c"], [7], lengths=[0, 1, 0])
    assert kjt2.length_per_key() == [0, 1, 0]
    assert kjt2.offset_per_key() == [0, 0, 1, 1]


def test_weights_accessors():
    kjt = make_kjt(weighted=True)
    assert kjt.weights().tolist() == [1.0, 0.5, 2.0, 1.0, 0.25, 1.0, 3.0, 1.0]
    assert kjt.weights_or_none() is kjt.weights()
    assert make_kjt().weights_or_none() is None
    with pytest.raises(JaggedStructureError, match="no weights"):
        make_kjt().weights()


def test_getitem_returns_views():
    kjt = make_kjt(weighted=True)
    user = kjt["user"]
    assert isinstance(user, JaggedTensor)
    assert [row.tolist() for row in user.to_dense()] == [[2, 3], [4, 1]]
    assert user.weights().tolist() == [0.25, 1.0, 3.0, 1.0]
    assert user.values().data_ptr() == kjt.values()[4:].data_ptr()


def test_getitem_unknown_key_names_it_and_lists_keys():
    with pytest.raises(UnknownKeyError) as info:
        make_kjt()["item"]
    assert "'item'" in str(info.value)
    assert "['product', 'user']" in str(info.value)
    assert isinstance(info.value, KeyError)


def test_to_dict():
    result = make_kjt().to_dict()
    assert list(result) == ["product", "user"]
    assert [row.tolist() for row in result["product"].to_dense()] == [[1, 2, 1], [5]]
    assert [row.tolist() for row in result["user"].to_dense()] == [[2, 3], [4, 1]]


def test_from_jt_dict():
    kjt = KeyedJaggedTensor.from_jt_dict(
        {"product": JaggedTensor.from_dense([[1, 2, 1], [5]]), "user": JaggedTensor.from_dense([[2, 3], [4, 1]])}
    )
    assert kjt.equals(make_kjt())
    empty = KeyedJaggedTensor.from_jt_dict({})
    assert empty.keys() == [] and empty.stride() == 0


def test_from_jt_dict_errors():
    with pytest.raises(JaggedStructureError, match="stride mismatch.*2 rows.*1"):
        KeyedJaggedTensor.from_jt_dict(
            {"a": JaggedTensor.from_dense([[1], [2]]), "b": JaggedTensor.from_dense([[3]])}
        )
    with pytest.raises(JaggedStructureError, match="key 'b' has no weights"):
        KeyedJaggedTensor.from_jt_dict(
            {"a": JaggedTensor.from_dense([[1]], weights=[[1.0]]), "b": JaggedTensor.from_dense([[3]])}
        )


def test_from_lengths_sync_and_offsets_sync():
    by_lengths = KeyedJaggedTensor.from_lengths_sync(["a", "b"], [1, 2, 3], [1, 0, 2, 0])
    by_offsets = KeyedJaggedTensor.from_offsets_sync(["a", "b"], [1, 2, 3], [0, 1, 1, 3, 3])
    assert by_lengths.equals(by_offsets)
    assert by_lengths.offset_per_key() == [0, 1, 3]
    weighted = KeyedJaggedTensor.from_lengths_sync(["a"], [1, 2], [1, 1], weights=[0.5, 2.0], stride=2)
    assert weighted.weights().tolist() == [0.5, 2.0]


def test_from_lists_errors():
    with pytest.raises(JaggedStructureError, match="stride mismatch"):
        KeyedJaggedTensor.from_lists({"a": [[1], [2]], "b": [[3]]})
    with pytest.raises(UnknownKeyError, match="'c'"):
        KeyedJaggedTensor.from_lists({"a": [[1]]}, weights={"a": [[1.0]], "c": [[1.0]]})
    with pytest.raises(JaggedStructureError, match="missing for key 'b'"):
        KeyedJaggedTensor.from_lists({"a": [[1]], "b": [[2]]}, weights={"a": [[1.0]]})
    with pytest.raises(JaggedStructureError, match="key 'a'.*row 0 has 1 values but 2 weights"):
        KeyedJaggedTensor.from_lists({"a": [[1]]}, weights={"a": [[1.0, 2.0]]})
    with pytest.raises(InvalidDtypeError):
        KeyedJaggedTensor.from_lists({"a": [[1.5]]})


def test_split():
    kjt = KeyedJaggedTensor.from_lists({"a": [[1], []], "b": [[2, 3], [4]], "c": [[], [5]]})
    first, empty, rest = kjt.split([1, 0, 2])
    assert first.keys() == ["a"] and first.values().tolist() == [1] and first.lengths().tolist() == [1, 0]
    assert empty.keys() == [] and empty.stride() == 2 and empty.values().numel() == 0
    assert rest.keys() == ["b", "c"]
    assert rest.values().tolist() == [2, 3, 4, 5]
    assert rest.lengths().tolist() == [2, 1, 0, 1]
    assert rest.stride() == 2


def test_split_keeps_weights():
    parts = make_kjt(weighted=True).split([1, 1])
    assert parts[0].weights().tolist() == [1.0, 0.5, 2.0, 1.0]
    assert parts[1].weights().tolist() == [0.25, 1.0, 3.0, 1.0]


def test_split_rejects_bad_segments():
    with pytest.raises(JaggedStructureError, match=r"\[1\].*number of keys, 2"):
        make_kjt().split([1])
    with pytest.raises(JaggedStructureError, match=r"\[3, -1\]"):
        make_kjt().split([3, -1])


def test_concat():
    a = KeyedJaggedTensor.from_lists({"a": [[1], []]})
    b = KeyedJaggedTensor.from_lists({"b": [[2, 3], [4]]})
    joined = KeyedJaggedTensor.concat([a, b])
    assert joined.keys() == ["a", "b"]
    assert joined.values().tolist() == [1, 2, 3, 4]
    assert joined.lengths().tolist() == [1, 0, 2, 1]
    assert joined.stride() == 2


def test_concat_errors():
    a = KeyedJaggedTensor.from_lists({"a": [[1], []]})
    with pytest.raises(JaggedStructureError, match="stride mismatch.*stride 2.*stride 1"):
        KeyedJaggedTensor.concat([a, KeyedJaggedTensor.from_lists({"b": [[1]]})])
    with pytest.raises(JaggedStructureError, match="duplicate key 'a'"):
        KeyedJaggedTensor.concat([a, a])
    weighted = KeyedJaggedTensor.from_lists({"w": [[1], []]}, weights={"w": [[1.0], []]})
    with pytest.raises(JaggedStructureError, match="input 0 has no weights"):
        KeyedJaggedTensor.concat([a, weighted])
    with pytest.raises(JaggedStructureError, match="at least one"):
        KeyedJaggedTensor.concat([])


def test_permute():
    kjt = make_kjt(weighted=True)
    swapped = kjt.permute([1, 0])
    assert swapped.keys() == ["user", "product"]
    assert swapped.values().tolist() == [2, 3, 4, 1, 1, 2, 1, 5]
    assert swapped.lengths().tolist() == [2, 2, 3, 1]
    assert swapped.weights().tolist() == [0.25, 1.0, 3.0, 1.0, 1.0, 0.5, 2.0, 1.0]


def test_permute_with_repeats_and_drops():
    kjt = make_kjt()
    repeated = kjt.permute([1, 1])
    assert repeated.keys() == ["user", "user"]
    assert repeated.values().tolist() == [2, 3, 4, 1, 2, 3, 4, 1]
    assert repeated.lengths().tolist() == [2, 2, 2, 2]
    assert [row.tolist() for row in repeated["user"].to_dense()] == [[2, 3], [4, 1]]
    assert list(repeated.to_dict()) == ["user"]
    dropped = kjt.permute([])
    assert dropped.keys() == [] and dropped.stride() == 2 and dropped.values().numel() == 0


def test_permute_rejects_out_of_range_index():
    with pytest.raises(UnknownKeyError, match="index 2 is out of range for 2 keys"):
        make_kjt().permute([0, 2])


def test_to_keeps_content():
    kjt = make_kjt(weighted=True)
    assert kjt.to("cpu").equals(kjt)
    assert kjt.to(torch.device("cpu"), non_blocking=True).offset_per_key() == [0, 4, 8]


def test_pin_memory():
    kjt = make_kjt()
    if torch.cuda.is_available():  # pragma: no cover - CPU-only CI
        assert kjt.pin_memory().values().is_pinned()
    else:
        with pytest.raises(RuntimeError):  # torch refuses to pin without a GPU
            kjt.pin_memory()


def test_equals():
    assert make_kjt().equals(make_kjt())
    assert not make_kjt().equals(make_kjt(weighted=True))
    assert not make_kjt().equals(make_kjt().permute([1, 0]))
    int32_ids = torch.tensor([1, 2, 1, 5, 2, 3, 4, 1], dtype=torch.int32)
    assert not make_kjt().equals(KeyedJaggedTensor(["product", "user"], int32_ids, lengths=[3, 1, 2, 2]))
    # same flat data read as a different batch: two keys x stride 2 vs one key x stride 4
    assert not make_kjt().equals(KeyedJaggedTensor(["product"], make_kjt().values(), lengths=[3, 1, 2, 2]))
    assert not make_kjt().equals(None)


def test_repr():
    assert repr(make_kjt()) == 'KeyedJaggedTensor({"product": [[1, 2, 1], [5]], "user": [[2, 3], [4, 1]]})'
    assert repr(make_kjt(weighted=True)) == (
        'KeyedJaggedTensor({"product": [[1, 2, 1], [5]], "user": [[2, 3], [4, 1]]}, '
        'weights={"product": [[1, 0.5, 2], [1]], "user": [[0.25, 1], [3, 1]]})'
    )
    assert repr(KeyedJaggedTensor.from_lists({"a": []})) == 'KeyedJaggedTensor({"a": []})'
    assert repr(make_kjt().split([0, 2])[0]) == "KeyedJaggedTensor({}, stride=2)"


def test_empty_batch_everywhere():
    kjt = KeyedJaggedTensor.from_lists({"a": [], "b": []})
    assert kjt.stride() == 0
    assert kjt.lengths().tolist() == [] and kjt.offsets().tolist() == [0]
    assert kjt.length_per_key() == [0, 0] and kjt.offset_per_key() == [0, 0, 0]
    assert len(kjt["a"]) == 0 and kjt["a"].to_padded_dense().shape == (0, 0)
    assert [part.keys() for part in kjt.split([1, 1])] == [["a"], ["b"]]
    assert kjt.permute([1, 0]).keys() == ["b", "a"]
    assert KeyedJaggedTensor.concat(kjt.split([1, 1])).equals(kjt)
    assert KeyedJaggedTensor.from_jt_dict(kjt.to_dict()).equals(kjt)


def test_empty_bags():
    kjt = KeyedJaggedTensor.from_lists({"a": [[], []], "b": [[], [7]]})
    assert kjt.values().tolist() == [7]
    assert kjt.lengths().tolist() == [0, 0, 0, 1]
    assert kjt["a"].to_padded_dense().tolist() == [[], []]
    assert kjt["b"].to_padded_dense().tolist() == [[0], [7]]


def test_int32_ids_kept():
    kjt = KeyedJaggedTensor(["a"], torch.tensor([1, 2], dtype=torch.int32), lengths=[2])
    assert kjt.values().dtype == torch.int32
    assert kjt["a"].values().dtype == torch.int32


# ----------------------------------------------------------------- construction errors
def test_float_ids_rejected():
    with pytest.raises(InvalidDtypeError, match="float64"):
        KeyedJaggedTensor(["a"], torch.tensor([1.0], dtype=torch.float64), lengths=[1])


def test_stride_mismatch_with_explicit_stride_names_numbers():
    with pytest.raises(JaggedStructureError, match="stride mismatch: 3 lengths for 2 keys x stride 2 = 4"):
        KeyedJaggedTensor(["a", "b"], [1, 2, 3], lengths=[1, 1, 1], stride=2)


def test_stride_mismatch_when_inferred_names_numbers():
    with pytest.raises(JaggedStructureError, match="stride mismatch: 3 lengths is not divisible by 2 keys"):
        KeyedJaggedTensor(["a", "b"], [1, 2, 3], lengths=[1, 1, 1])
    with pytest.raises(JaggedStructureError, match="stride mismatch: 1 lengths but no keys"):
        KeyedJaggedTensor([], [1], lengths=[1])


def test_negative_stride_rejected():
    with pytest.raises(JaggedStructureError, match="-1"):
        KeyedJaggedTensor([], [], lengths=[], stride=-1)


def test_duplicate_keys_rejected():
    with pytest.raises(JaggedStructureError, match="duplicate key 'a'"):
        KeyedJaggedTensor(["a", "a"], [1, 2], lengths=[1, 1])


def test_keys_as_single_string_rejected():
    with pytest.raises(JaggedStructureError, match=r"did you mean \['user'\]"):
        KeyedJaggedTensor("user", [1], lengths=[1])


def test_lengths_errors():
    with pytest.raises(JaggedStructureError, match="sum to 3 but values has 2"):
        KeyedJaggedTensor(["a"], [1, 2], lengths=[1, 2])
    with pytest.raises(JaggedStructureError, match="found -1"):
        KeyedJaggedTensor(["a"], [1, 2], lengths=[3, -1])
    with pytest.raises(JaggedStructureError, match="lengths or offsets"):
        KeyedJaggedTensor(["a"], [1, 2])


def test_offsets_errors():
    with pytest.raises(JaggedStructureError, match="start at 0, got 1"):
        KeyedJaggedTensor(["a"], [1, 2], offsets=[1, 2])
    with pytest.raises(JaggedStructureError, match="non-decreasing"):
        KeyedJaggedTensor(["a"], [1, 2], offsets=[0, 2, 1, 2])
    with pytest.raises(JaggedStructureError, match="end at 1 but values has 2"):
        KeyedJaggedTensor(["a"], [1, 2], offsets=[0, 1])


def test_weights_length_mismatch():
    with pytest.raises(JaggedStructureError, match="weights has 1 entries but values has 2"):
        KeyedJaggedTensor(["a"], [1, 2], lengths=[2], weights=[1.0])


def test_non_1d_inputs_rejected():
    with pytest.raises(JaggedStructureError, match="values must be 1-D"):
        KeyedJaggedTensor(["a"], [[1, 2]], lengths=[2])
    with pytest.raises(JaggedStructureError, match="lengths must be 1-D"):
        KeyedJaggedTensor(["a"], [1, 2], lengths=[[2]])
    with pytest.raises(JaggedStructureError, match="offsets must be 1-D"):
        KeyedJaggedTensor(["a"], [1, 2], offsets=[[0, 2]])
    with pytest.raises(JaggedStructureError, match="weights must be 1-D"):
        KeyedJaggedTensor(["a"], [1, 2], lengths=[2], weights=[[1.0, 1.0]])
