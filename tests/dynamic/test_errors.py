"""Dynamic-table errors: bad specs and configs, bad ids, bad exports and bad saved state."""

from __future__ import annotations

import pytest
import torch

from recembed.dynamic import DynamicSpec
from recembed.errors import (
    ConfigError,
    InvalidDtypeError,
    InvalidIdError,
    ShapeMismatchError,
)
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig


def _table(spec: DynamicSpec | None = None, **fields):
    fields = {"name": "t", "num_embeddings": 4, "embedding_dim": 2, "feature_names": ["item"], **fields}
    cfg = EmbeddingBagConfig(dynamic=spec or DynamicSpec(), **fields)
    return cfg.dynamic.build(cfg)


def test_capacity_zero_is_refused():
    with pytest.raises(ConfigError, match="num_embeddings must be >= 1, got 0"):
        EmbeddingBagConfig(name="t", num_embeddings=0, embedding_dim=2, dynamic=DynamicSpec())


@pytest.mark.parametrize("fields, message", [
    ({"min_count": 0}, "min_count must be >= 1, got 0"),
    ({"min_count": 1.5}, "min_count must be an int, got 1.5"),
    ({"ttl": 0}, r"ttl \(steps a row may go unseen\) must be >= 1, got 0"),
    ({"ttl": -3}, "must be >= 1, got -3"),
    ({"eviction": "fifo"}, "eviction='fifo' is not one of 'lru', 'lfu', 'none'"),
    ({"counter": "bloom"}, "counter='bloom' is not one of 'exact', 'count_min'"),
    ({"default_row": "mean"}, "default_row='mean' is not one of"),
    ({"id_type": "bytes"}, "id_type='bytes' is not one of 'int', 'str'"),
    ({"sketch_depth": 0}, "sketch_depth must be >= 1"),
])
def test_bad_spec_values_name_the_field_and_the_allowed_values(fields, message):
    with pytest.raises(ConfigError, match=message):
        DynamicSpec(**fields)


@pytest.mark.parametrize("fields, message", [
    ({"hash_size": 4}, "hash_size=4"),
    ({"init": torch.zeros(4, 2)}, "pretrained init tensor has no ids"),
    ({"num_shards": 2}, "num_shards=2"),
])
def test_config_options_a_dynamic_table_cannot_honour(fields, message):
    with pytest.raises(ConfigError, match=message):
        _table(**fields)


def test_padding_needs_the_zero_default_row():
    with pytest.raises(ConfigError, match="padding_idx needs default_row='zero'"):
        _table(DynamicSpec(default_row="trained"), padding_idx=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
def test_ids_of_a_float_or_bool_dtype(dtype):
    table = _table()
    with pytest.raises(InvalidDtypeError, match=f"feature 'item' \\(table 't'\\): ids must be integers, got dtype {dtype}"):
        table.lookup(torch.tensor([1, 0], dtype=dtype), torch.tensor([0, 2]), feature="item")


def test_int32_ids_are_accepted_as_int64():
    ebc = EmbeddingBagCollection([EmbeddingBagConfig(name="t", num_embeddings=4, embedding_dim=2,
                                                     feature_names=["item"], dynamic=DynamicSpec())])
    kjt = KeyedJaggedTensor(keys=["item"], values=torch.tensor([7, 9], dtype=torch.int32), lengths=torch.tensor([2]))
    ebc(kjt)
    assert ebc.embedding_bags["t"].export()[0].tolist() == [7, 9]


def test_a_string_id_in_an_int_only_table():
    table = _table()
    with pytest.raises(InvalidDtypeError, match="got the string id 'abc', but the table takes int64 ids; "
                                                r"build it with DynamicSpec\(id_type='str'\)"):
        table.lookup(["abc"], torch.tensor([0, 1]))


def test_mixed_strings_and_ints():
    table = _table(DynamicSpec(id_type="str"))
    with pytest.raises(InvalidDtypeError, match="ids mix strings and int"):
        table.lookup_sequence(["abc", 3])


def test_offsets_that_do_not_fit_the_ids_leave_the_map_untouched():
    table = _table()
    with pytest.raises(ShapeMismatchError, match="offsets must be"):
        table.lookup(torch.tensor([1, 2, 3]), torch.tensor([0, 2]))
    assert table.step == 0 and table.num_live() == 0


def test_load_export_checks():
    table = _table(padding_idx=1)
    with pytest.raises(ConfigError, match="got 5 ids but the table holds num_embeddings=4 rows"):
        table.load_export(torch.arange(5) + 10, torch.zeros(5, 2))
    with pytest.raises(ShapeMismatchError, match=r"must be \(2, 2\)"):
        table.load_export(torch.tensor([5, 6]), torch.zeros(2, 3))
    with pytest.raises(InvalidIdError, match="distinct"):
        table.load_export(torch.tensor([5, 5]), torch.zeros(2, 2))
    with pytest.raises(InvalidIdError, match="padding id 1"):
        table.load_export(torch.tensor([5, 1]), torch.zeros(2, 2))


def test_state_of_another_capacity_is_refused_with_a_clear_message():
    small, big = _table(), _table(num_embeddings=6)
    state = small.state_dict()
    with pytest.raises(RuntimeError, match=r"table 't' \(dynamic\): saved id_map.meta has shape \(4, 5\), expected \(6, 5\)"):
        big.load_state_dict({k: v for k, v in state.items() if not k.startswith("row_table.")}, strict=False)
    del state["id_map.step"]
    with pytest.raises(RuntimeError, match="Missing key.*id_map.step"):
        small.load_state_dict(state)
