"""Configuration errors around compressed tables name the table, the value and what is allowed."""

from __future__ import annotations

import pytest
import torch

from recembed.compress import BloomSpec, HashedSpec, QRSpec
from recembed.errors import ConfigError
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig, EmbeddingConfig

from .builders import bags, one_table


def test_a_feature_served_by_a_compressed_and_a_plain_table_is_rejected_by_name():
    tables = [
        EmbeddingBagConfig(name="t_item_small", num_embeddings=100, embedding_dim=4, feature_names=["item"],
                           compression=BloomSpec(0.1, 2)),
        EmbeddingBagConfig(name="t_item", num_embeddings=100, embedding_dim=4, feature_names=["item", "seller"]),
    ]
    with pytest.raises(ConfigError, match="feature 'item' is served by both table 't_item_small' and table 't_item'"):
        EmbeddingBagCollection(tables)


def test_one_spec_object_may_serve_several_tables():
    spec = QRSpec(num_collisions=4)
    ebc = EmbeddingBagCollection([
        EmbeddingBagConfig(name=n, num_embeddings=20, embedding_dim=3, feature_names=[n], compression=spec)
        for n in ("a", "b")])
    assert ebc.embedding_bags["a"] is not ebc.embedding_bags["b"]
    assert ebc.embedding_bags["a"].sub_table_weight("quotient") is not ebc.embedding_bags["b"].sub_table_weight(
        "quotient")


@pytest.mark.parametrize("fields, message", [
    ({"init": torch.zeros(20, 3)}, "a pretrained init tensor holds one row per id"),
    ({"max_norm": 1.0}, "max_norm and scale_grad_by_freq act on one row per id"),
    ({"num_shards": 2}, "num_shards=2; compressed tables are not sharded yet"),
])
def test_one_row_per_id_options_are_rejected(fields, message):
    with pytest.raises(ConfigError, match=message):
        one_table(HashedSpec(num_buckets=5), num_embeddings=20, dim=3, **fields)


def test_unpooled_configs_cannot_build_compressed_tables():
    cfg = EmbeddingConfig(name="seq", num_embeddings=20, embedding_dim=3)
    with pytest.raises(ConfigError, match="compressed tables serve pooled lookups"):
        BloomSpec(0.5, 2).build(cfg)


def test_max_pooling_with_weights_is_rejected_like_plain_tables():
    ebc = one_table(QRSpec(num_collisions=4), num_embeddings=20, dim=3, pooling="max")
    with pytest.raises(ConfigError, match="table 't': per-sample weights need SUM or MEAN pooling, not MAX"):
        ebc(bags([[1, 2]], [[1.0, 2.0]]))


def test_ids_outside_the_table_are_reported_with_feature_and_range():
    ebc = one_table(BloomSpec(0.5, 2), num_embeddings=20, dim=3)
    with pytest.raises(IndexError, match=r"feature 'f' \(table 't'\): id 20 out of range; allowed \[0, 20\)"):
        ebc(bags([[20]]))


def test_callable_initialisers_fill_every_sub_table():
    ebc = one_table(QRSpec(num_collisions=4, operation="add"), num_embeddings=20, dim=3,
                    init=lambda w: torch.nn.init.constant_(w, 0.25))
    table = ebc.embedding_bags["t"]
    assert torch.all(table.sub_table_weight("quotient") == 0.25)
    assert torch.all(table.sub_table_weight("remainder") == 0.25)
