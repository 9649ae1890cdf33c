"""Table configs: every field is checked on construction with a ConfigError naming it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from recembed.errors import ConfigError
from recembed.tables import (
    DataType,
    EmbeddingBagCollection,
    EmbeddingBagConfig,
    EmbeddingCollection,
    EmbeddingConfig,
    OptimizerType,
    PoolingType,
)


def bag(**fields) -> EmbeddingBagConfig:
    base = {"name": "t_item", "num_embeddings": 10, "embedding_dim": 4}
    base.update(fields)
    return EmbeddingBagConfig(**base)


# (fields, text the message must contain: the field name and the bad value)
BAD_FIELDS = [
    ({"num_embeddings": 0}, ["num_embeddings", "0"]),
    ({"num_embeddings": -5}, ["num_embeddings", "-5"]),
    ({"num_embeddings": 10.0}, ["num_embeddings", "10.0"]),
    ({"num_embeddings": "10"}, ["num_embeddings", "'10'"]),
    ({"num_embeddings": True}, ["num_embeddings", "True"]),
    ({"embedding_dim": 0}, ["embedding_dim", "0"]),
    ({"embedding_dim": 2.5}, ["embedding_dim", "2.5"]),
    ({"embedding_dim": None}, ["embedding_dim", "None"]),
    ({"name": ""}, ["name", "''"]),
    ({"name": 3}, ["name", "3"]),
    ({"feature_names": "user"}, ["feature_names", "'user'"]),
    ({"feature_names": ["user", ""]}, ["feature name", "''"]),
    ({"feature_names": ["user", "user"]}, ["feature_names", "duplicates", "user"]),
    ({"pooling": "avg"}, ["pooling", "'avg'", "SUM", "MEAN", "MAX"]),
    ({"pooling": 3}, ["pooling", "3"]),
    ({"pooling": PoolingType.NONE}, ["pooling", "NONE"]),
    ({"init": "gaussian"}, ["init", "'gaussian'", "normal"]),
    ({"init": 5}, ["init", "5"]),
    ({"init": torch.zeros(9, 4)}, ["init", "(9, 4)", "(10, 4)"]),
    ({"init": torch.zeros(10, 4, dtype=torch.int64)}, ["init", "floating"]),
    ({"init": torch.full((10, 4), float("nan"))}, ["init", "finite"]),
    ({"init_range": (1.0, -1.0)}, ["init_range", "1.0", "-1.0"]),
    ({"init_range": (0.0,)}, ["init_range", "(0.0,)"]),
    ({"init_range": 0.5}, ["init_range", "0.5"]),
    ({"padding_idx": 10}, ["padding_idx", "10", "[-10, 10)"]),
    ({"padding_idx": -11}, ["padding_idx", "-11"]),
    ({"padding_idx": 1.0}, ["padding_idx", "1.0"]),
    ({"max_norm": 0.0}, ["max_norm", "0"]),
    ({"max_norm": -1.0}, ["max_norm", "-1"]),
    ({"max_norm": float("inf")}, ["max_norm", "inf"]),
    ({"norm_type": 0}, ["norm_type", "0"]),
    ({"sparse": 1}, ["sparse", "1"]),
    ({"scale_grad_by_freq": "yes"}, ["scale_grad_by_freq", "'yes'"]),
    ({"enable_grad": None}, ["enable_grad", "None"]),
    ({"optimizer": "adamw"}, ["optimizer", "'adamw'", "ADAGRAD"]),
    ({"lr": -0.1}, ["lr", "-0.1"]),
    ({"lr": float("nan")}, ["lr", "nan"]),
    ({"lr": "0.1"}, ["lr", "'0.1'"]),
    ({"weight_decay": -1e-4}, ["weight_decay", "-0.0001"]),
    ({"eps": 0.0}, ["eps", "0"]),
    ({"eps": -1e-8}, ["eps", "-1e-08"]),
    ({"betas": (1.0, 0.999)}, ["betas", "(1.0, 0.999)", "[0, 1)"]),
    ({"betas": (0.9, -0.1)}, ["betas", "-0.1"]),
    ({"betas": (0.9,)}, ["betas", "(0.9,)"]),
    ({"betas": 0.9}, ["betas", "0.9"]),
    ({"dtype": "float64"}, ["dtype", "'float64'", "FP32", "FP16", "BF16"]),
    ({"dtype": torch.float64}, ["dtype", "torch.float64"]),
    ({"dtype": torch.int8}, ["dtype", "torch.int8"]),
    ({"hash_size": 11}, ["hash_size", "11", "num_embeddings=10"]),
    ({"hash_size": 0}, ["hash_size", "0"]),
    ({"hash_seed": 1.5}, ["hash_seed", "1.5"]),
    ({"num_shards": 0}, ["num_shards", "0"]),
    ({"table_size": 0}, ["table_size", "0"]),
    ({"num_shards": 2, "table_size": 4}, ["table_size=4", "num_shards=2", "alias"]),
    ({"optimizer": "adagrad", "enable_grad": False}, ["optimizer=ADAGRAD", "enable_grad"]),
    ({"optimizer": "sgd", "sparse": True}, ["sparse", "SGD"]),
    ({"optimizer": "sgd", "max_norm": 1.0}, ["max_norm", "SGD"]),
    ({"optimizer": "sgd", "scale_grad_by_freq": True}, ["scale_grad_by_freq", "SGD"]),
    ({"sparse": True, "scale_grad_by_freq": True}, ["scale_grad_by_freq", "sparse"]),
    ({"pooling": "max", "sparse": True}, ["sparse", "MAX"]),
    ({"pooling": "max", "scale_grad_by_freq": True}, ["scale_grad_by_freq", "MAX"]),
]


@pytest.mark.parametrize("fields, must_mention", BAD_FIELDS, ids=[str(f) for f, _ in BAD_FIELDS])
def test_bad_field_raises_config_error_naming_field_and_value(fields, must_mention):
    with pytest.raises(ConfigError) as info:
        bag(**fields)
    message = str(info.value)
    for text in must_mention:
        assert text in message, f"{text!r} not in {message!r}"
    if "name" not in fields:
        assert "t_item" in message  # every table-level error says which table
    assert isinstance(info.value, ValueError)  # `except ValueError` keeps working


def test_unpooled_config_rejects_a_pooling():
    with pytest.raises(ConfigError, match="pooling=SUM"):
        EmbeddingConfig(name="t", num_embeddings=3, embedding_dim=2, pooling="sum")
    assert EmbeddingConfig(name="t", num_embeddings=3, embedding_dim=2).pooling is PoolingType.NONE


def test_good_values_are_normalised():
    cfg = bag(
        pooling="MEAN", optimizer="Rowwise_Adagrad", dtype="bf16", padding_idx=-1,
        feature_names=("a", "b"), lr=1, betas=[0.5, 0.25], init_range=(-1, 2),
    )
    assert cfg.pooling is PoolingType.MEAN
    assert cfg.optimizer is OptimizerType.ROWWISE_ADAGRAD
    assert cfg.dtype is DataType.BF16 and cfg.torch_dtype is torch.bfloat16
    assert cfg.padding_idx == 9
    assert cfg.feature_names == ["a", "b"]
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.betas == (0.5, 0.25)
    assert cfg.init_range == (-1.0, 2.0)


@pytest.mark.parametrize("dtype, expected", [
    ("float32", torch.float32), ("fp16", torch.float16), ("FLOAT16", torch.float16),
    (torch.bfloat16, torch.bfloat16), (DataType.FP16, torch.float16), (torch.float32, torch.float32),
])
def test_dtype_accepts_strings_enums_and_torch_dtypes(dtype, expected):
    assert bag(dtype=dtype).torch_dtype is expected


@pytest.mark.parametrize("pooling, expected", [
    ("sum", PoolingType.SUM), ("MEAN", PoolingType.MEAN), ("max", PoolingType.MAX), (PoolingType.MAX, PoolingType.MAX),
])
def test_pooling_accepts_names_and_enum(pooling, expected):
    assert bag(pooling=pooling).pooling is expected


def test_feature_names_default_to_the_table_name():
    assert bag().feature_names == ["t_item"]


def test_numpy_integers_are_accepted_as_sizes():
    cfg = bag(num_embeddings=np.int64(10), embedding_dim=np.int32(3), padding_idx=np.int64(2), hash_size=np.int64(5))
    assert (cfg.num_embeddings, cfg.embedding_dim, cfg.padding_idx, cfg.hash_size) == (10, 3, 2, 5)
    assert all(type(v) is int for v in (cfg.num_embeddings, cfg.embedding_dim, cfg.padding_idx, cfg.hash_size))


def test_hash_size_equal_to_num_embeddings_is_allowed():
    assert bag(hash_size=10).hash_size == 10


@pytest.mark.parametrize("fields, shards", [
    ({}, 1), ({"num_shards": 3}, 3), ({"table_size": 3}, 3), ({"table_size": 3, "num_shards": 3}, 3),
])
def test_table_size_is_an_alias_of_num_shards(fields, shards):
    cfg = bag(**fields)
    assert cfg.num_shards == shards
    assert cfg.table_size is None
    # Re-validating a normalised config (dataclasses.replace) keeps the value.
    assert dataclasses.replace(cfg, lr=0.5).num_shards == shards


def test_enable_grad_false_without_optimizer_is_fine():
    cfg = bag(enable_grad=False)
    assert cfg.enable_grad is False and cfg.optimizer is None


def test_callable_init_is_accepted():
    cfg = bag(init=torch.nn.init.ones_)
    assert cfg.init is torch.nn.init.ones_


def _pair(name: str, features: list[str], kind=EmbeddingBagConfig):
    return kind(name=name, num_embeddings=5, embedding_dim=2, feature_names=features)


@pytest.mark.parametrize("collection, kind", [(EmbeddingBagCollection, EmbeddingBagConfig), (EmbeddingCollection, EmbeddingConfig)])
def test_collection_rejects_duplicate_table_names(collection, kind):
    with pytest.raises(ConfigError, match="two tables are named 't_a'"):
        collection([_pair("t_a", ["x"], kind), _pair("t_a", ["y"], kind)])


@pytest.mark.parametrize("collection, kind", [(EmbeddingBagCollection, EmbeddingBagConfig), (EmbeddingCollection, EmbeddingConfig)])
def test_collection_rejects_a_feature_served_by_two_tables(collection, kind):
    with pytest.raises(ConfigError) as info:
        collection([_pair("t_a", ["x", "shared"], kind), _pair("t_b", ["shared"], kind)])
    message = str(info.value)
    assert "'shared'" in message and "'t_a'" in message and "'t_b'" in message


@pytest.mark.parametrize("tables", [[], "t", None])
def test_collection_needs_a_list_of_configs(tables):
    with pytest.raises(ConfigError, match="non-empty list"):
        EmbeddingBagCollection(tables)


def test_collection_rejects_the_wrong_config_kind():
    with pytest.raises(ConfigError, match="EmbeddingBagConfig.*EmbeddingConfig"):
        EmbeddingBagCollection([_pair("t", ["x"], EmbeddingConfig)])
    with pytest.raises(ConfigError, match="EmbeddingConfig.*EmbeddingBagConfig"):
        EmbeddingCollection([_pair("t", ["x"], EmbeddingBagConfig)])
