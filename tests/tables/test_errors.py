"""Bad input to tables and collections raises recembed errors that say what and where."""

from __future__ import annotations

import pytest
import torch

from recembed.errors import (
    ConfigError,
    IdOutOfRangeError,
    InvalidDtypeError,
    InvalidIdError,
    JaggedStructureError,
    RecembedError,
    ShapeMismatchError,
    UnknownKeyError,
)
from recembed.sparse import KeyedJaggedTensor
from recembed.sparse.hashing import hash_ids
from recembed.tables import (
    Embedding,
    EmbeddingBag,
    EmbeddingBagCollection,
    EmbeddingBagConfig,
    EmbeddingCollection,
    EmbeddingConfig,
)


def _ebc(pooling="sum", **fields) -> EmbeddingBagCollection:
    return EmbeddingBagCollection([
        EmbeddingBagConfig(name="t_product", num_embeddings=10, embedding_dim=3, feature_names=["product"],
                           pooling=pooling, **fields),
        EmbeddingBagConfig(name="t_user", num_embeddings=6, embedding_dim=2, feature_names=["user"], pooling=pooling),
    ])


def _ec() -> EmbeddingCollection:
    return EmbeddingCollection([
        EmbeddingConfig(name="t_words", num_embeddings=8, embedding_dim=2, feature_names=["words"]),
    ])


def _message(info: pytest.ExceptionInfo) -> str:
    assert isinstance(info.value, RecembedError)
    return str(info.value)


def test_out_of_range_id_names_feature_table_id_and_range():
    with pytest.raises(IdOutOfRangeError) as info:
        _ebc()(KeyedJaggedTensor.from_lists({"product": [[1], [2]], "user": [[0, 6], [1]]}))
    message = _message(info)
    for text in ("feature 'user'", "table 't_user'", "id 6", "[0, 6)"):
        assert text in message, message
    assert isinstance(info.value, IndexError)


def test_out_of_range_id_in_unpooled_collection_names_feature_and_table():
    with pytest.raises(IdOutOfRangeError) as info:
        _ec()(KeyedJaggedTensor.from_lists({"words": [[1, 100], []]}))
    message = _message(info)
    for text in ("feature 'words'", "table 't_words'", "id 100", "[0, 8)"):
        assert text in message, message


def test_out_of_range_id_in_single_table_names_table():
    with pytest.raises(IdOutOfRangeError, match=r"table 'embedding_bag'.*id 12.*\[0, 10\)"):
        EmbeddingBag(10, 2)(torch.tensor([[1, 12]]))
    with pytest.raises(IdOutOfRangeError, match=r"table 'embedding'.*id 10.*\[0, 10\)"):
        Embedding(10, 2)(torch.tensor([10]))


def test_negative_id_names_feature_table_and_id():
    with pytest.raises(InvalidIdError) as info:
        _ebc()(KeyedJaggedTensor.from_lists({"product": [[1, -4], [2]], "user": [[0], [1]]}))
    message = _message(info)
    for text in ("feature 'product'", "table 't_product'", "-4", "[0, 10)"):
        assert text in message, message
    with pytest.raises(InvalidIdError, match="negative id -1"):
        Embedding(10, 2)(torch.tensor([3, -1]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
def test_float_and_bool_ids_raise_invalid_dtype(dtype):
    ids = torch.tensor([1, 0], dtype=dtype)
    with pytest.raises(InvalidDtypeError, match=str(dtype)):
        Embedding(10, 2)(ids)
    with pytest.raises(InvalidDtypeError, match=str(dtype)):
        EmbeddingBag(10, 2)(ids, torch.tensor([0]))
    with pytest.raises(InvalidDtypeError):  # the KJT itself refuses float ids
        KeyedJaggedTensor(keys=["product"], values=ids, lengths=[2])


def test_unknown_feature_key_raises_unknown_key_error_naming_it():
    kjt = KeyedJaggedTensor.from_lists({"product": [[1], [2]], "user": [[0], [1]], "colour": [[3], []]})
    with pytest.raises(UnknownKeyError) as info:
        _ebc()(kjt)
    assert "unknown feature 'colour'" in _message(info)
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownKeyError, match="'colour'"):
        _ec()(KeyedJaggedTensor.from_lists({"words": [[1]], "colour": [[3]]}))


def test_missing_served_feature_names_feature_and_table():
    with pytest.raises(UnknownKeyError) as info:
        _ebc()(KeyedJaggedTensor.from_lists({"product": [[1], [2]]}))
    message = _message(info)
    assert "feature 'user'" in message and "table 't_user'" in message and "missing" in message


def test_per_sample_weights_with_max_pooling_are_refused():
    kjt = KeyedJaggedTensor.from_lists(
        {"product": [[1, 2], [3]], "user": [[0], [1]]},
        weights={"product": [[1.0, 0.5], [2.0]], "user": [[1.0], [1.0]]},
    )
    with pytest.raises(ConfigError, match="t_product.*per-sample weights.*MAX"):
        _ebc(pooling="max")(kjt)
    with pytest.raises(ConfigError, match="MAX"):
        EmbeddingBag(10, 2, mode="max")(torch.tensor([1, 2]), torch.tensor([0]), torch.tensor([1.0, 2.0]))


def test_collection_input_must_be_a_kjt():
    with pytest.raises(ConfigError, match="KeyedJaggedTensor.*dict"):
        _ebc()({"product": torch.tensor([1])})


@pytest.mark.parametrize(
    "call, text",
    [
        (lambda b: b(torch.tensor([1, 2]), torch.tensor([1])), "start at 0"),
        (lambda b: b(torch.tensor([1, 2, 3]), torch.tensor([0, 2, 1])), "non-decreasing"),
        (lambda b: b(torch.tensor([1, 2]), torch.tensor([0, 3])), "non-decreasing"),
        (lambda b: b(torch.tensor([1, 2])), "offsets are required"),
        (lambda b: b(torch.tensor([[1, 2]]), torch.tensor([0])), "offsets must be None"),
        (lambda b: b(torch.zeros(1, 1, 2, dtype=torch.int64)), "1-D .* or 2-D"),
        (lambda b: b(torch.tensor([1, 2]), torch.tensor([[0]])), "offsets must be 1-D"),
        (lambda b: b(torch.tensor([1, 2]), torch.tensor([0]), torch.ones(3)), r"per_sample_weights has shape \(3,\)"),
        (lambda b: b(torch.tensor([[1, 2]]), None, torch.ones(2)), r"per_sample_weights has shape \(2,\)"),
    ],
)
def test_malformed_bag_input_raises_jagged_structure_error(call, text):
    with pytest.raises(JaggedStructureError, match=text):
        call(EmbeddingBag(10, 2, mode="sum"))


def test_include_last_offset_must_end_at_len_input():
    bag = EmbeddingBag(10, 2, mode="sum", include_last_offset=True)
    with pytest.raises(JaggedStructureError, match="last offset must equal len"):
        bag(torch.tensor([1, 2, 3]), torch.tensor([0, 2]))
    with pytest.raises(JaggedStructureError, match="at least one offset"):
        bag(torch.tensor([], dtype=torch.int64), torch.tensor([], dtype=torch.int64))


def test_from_pretrained_needs_a_2d_tensor():
    with pytest.raises(ShapeMismatchError, match=r"\(12,\)"):
        Embedding.from_pretrained(torch.zeros(12))
    with pytest.raises(ShapeMismatchError, match=r"\(2, 3, 2\)"):
        EmbeddingBag.from_pretrained(torch.zeros(2, 3, 2))


def test_collection_from_pretrained_rejects_unknown_table_and_wrong_shape():
    cfgs = [EmbeddingBagConfig(name="t_a", num_embeddings=4, embedding_dim=2, feature_names=["a"])]
    with pytest.raises(UnknownKeyError, match="'t_b'"):
        EmbeddingBagCollection.from_pretrained(cfgs, {"t_b": torch.zeros(4, 2)})
    with pytest.raises(ConfigError, match=r"t_a.*\(4, 3\).*\(4, 2\)"):
        EmbeddingBagCollection.from_pretrained(cfgs, {"t_a": torch.zeros(4, 3)})


# ---------------------------------------------------------------- hashing tables


def _hashed_bag(**fields) -> EmbeddingBagCollection:
    return EmbeddingBagCollection([
        EmbeddingBagConfig(name="t_h", num_embeddings=16, embedding_dim=3, feature_names=["h"],
                           hash_size=13, hash_seed=4, **fields),
    ])


WILD_IDS = [[-1, 2**62, 5], [-(2**63), 2**63 - 1], [16, 1000]]


def test_hashed_table_accepts_any_int64_id_and_pools_the_hashed_rows():
    ebc = _hashed_bag()
    kjt = KeyedJaggedTensor.from_lists({"h": WILD_IDS})
    out = ebc(kjt).values()
    weight = ebc.embedding_bags["t_h"].weight.detach()
    for b, bag_ids in enumerate(WILD_IDS):
        rows = hash_ids(torch.tensor(bag_ids), 13, seed=4)
        assert bool((rows < 13).all())
        torch.testing.assert_close(out[b], weight[rows].sum(0))
    # Stable: the same ids pool to the same vectors on every call.
    torch.testing.assert_close(ebc(kjt).values(), out)


def test_hashed_single_table_is_stable_and_uses_seeded_hash():
    table = Embedding(20, 2, hash_size=20, hash_seed=9)
    ids = torch.tensor([-5, 0, 2**40, 19, 20])
    out = table(ids)
    torch.testing.assert_close(out, table.weight.detach()[hash_ids(ids, 20, seed=9)])
    torch.testing.assert_close(table(ids), out)


def test_hashed_table_still_rejects_float_ids():
    with pytest.raises(InvalidDtypeError):
        Embedding(20, 2, hash_size=20)(torch.tensor([1.0]))
