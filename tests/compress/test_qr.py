"""Quotient-remainder tables: mult, add and concat re-computed from the sub-tables; sizing and errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from recembed.compress import QREmbeddingTable, QRSpec, qr_collisions_for_ratio
from recembed.errors import ConfigError

from .builders import bags, one_table, pool


def by_hand(table: QREmbeddingTable, i: int) -> torch.Tensor:
    q_w, r_w = table.sub_table_weight("quotient").detach(), table.sub_table_weight("remainder").detach()
    m = table.num_collisions
    q, r = q_w[i // m], r_w[i % m]
    return {"mult": q * r, "add": q + r, "concat": torch.cat([q, r])}[table.operation]


@pytest.mark.parametrize("operation", ["mult", "add", "concat"])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_every_operation_and_pooling_matches_the_sub_tables(operation, mode):
    ebc = one_table(QRSpec(num_collisions=4, operation=operation), num_embeddings=30, dim=6, pooling=mode)
    table = ebc.embedding_bags["t"]
    torch.nn.init.normal_(table.sub_table_weight("quotient").data)  # mult starts at ones; make it informative
    lists = [[0, 5, 29], [13], [], [13, 13]]
    weights = None if mode == "max" else [[1.0, -2.0, 0.5], [3.0], [], [1.0, 1.0]]
    out = ebc(bags(lists, weights)).values()
    want = torch.stack([pool([by_hand(table, i) for i in bag], mode, 6, None if weights is None else weights[b])
                        for b, bag in enumerate(lists)])
    assert_close(out, want)


def test_shapes_of_the_two_tables():
    table = one_table(QRSpec(num_collisions=7), num_embeddings=50, dim=4).embedding_bags["t"]
    assert table.sub_table_weight("quotient").shape == (math.ceil(50 / 7), 4)
    assert table.sub_table_weight("remainder").shape == (7, 4)
    assert table.num_parameters() == (8 + 7) * 4


def test_concat_with_odd_dim_gives_the_quotient_half_the_extra_column():
    table = one_table(QRSpec(num_collisions=3, operation="concat"), num_embeddings=12, dim=5).embedding_bags["t"]
    assert table.split_dims == (3, 2)
    assert table.sub_table_weight("quotient").shape[1] == 3 and table.sub_table_weight("remainder").shape[1] == 2
    assert table.id_vectors(torch.tensor([7])).shape == (1, 5)


def test_every_id_keeps_a_distinct_vector():
    table = one_table(QRSpec(num_collisions=5, operation="add"), num_embeddings=60, dim=3).embedding_bags["t"]
    vectors = table.id_vectors(torch.arange(60)).detach()
    assert torch.unique(vectors, dim=0).shape[0] == 60
    q, r = table.quotient_remainder(torch.arange(60))
    assert torch.unique(q * 5 + r).numel() == 60  # (q, r) pairs are complementary: no two ids share both


def test_mult_starts_as_the_remainder_row():
    table = one_table(QRSpec(num_collisions=4), num_embeddings=20, dim=3).embedding_bags["t"]
    r_w = table.sub_table_weight("remainder").detach()
    assert_close(table.id_vectors(torch.tensor([9])).detach()[0], r_w[9 % 4])


def test_ratio_picks_the_smallest_collision_count_that_fits():
    assert qr_collisions_for_ratio(1000, 0.25) == 5  # 200 + 5 rows <= 250 (m = 4 gives 254)
    assert qr_collisions_for_ratio(100_000, 0.1) == 11
    for n, ratio in [(1000, 0.25), (100_000, 0.1), (100_000, 0.01), (4, 1.0)]:
        m = qr_collisions_for_ratio(n, ratio)
        assert math.ceil(n / m) + m <= ratio * n
        assert m == 1 or math.ceil(n / (m - 1)) + (m - 1) > ratio * n
    table = one_table(QRSpec(compression_ratio=0.25), num_embeddings=1000, dim=2).embedding_bags["t"]
    assert table.num_collisions == 5


def test_a_ratio_below_two_square_roots_is_rejected_with_the_reachable_size():
    with pytest.raises(ConfigError, match=r"need at least 283 rows \(ratio 0\.01415\)"):
        qr_collisions_for_ratio(20_000, 0.01, "t_big")
    with pytest.raises(ConfigError, match="table 't'"):
        one_table(QRSpec(compression_ratio=0.05), num_embeddings=100)


def test_spec_errors():
    with pytest.raises(ConfigError, match="exactly one of num_collisions and compression_ratio"):
        QRSpec()
    with pytest.raises(ConfigError, match="exactly one of num_collisions and compression_ratio"):
        QRSpec(num_collisions=4, compression_ratio=0.5)
    with pytest.raises(ConfigError, match="operation='div' is not one of mult, add, concat"):
        QRSpec(num_collisions=4, operation="div")
    with pytest.raises(ConfigError, match=r"compression_ratio must be a number in \(0, 1\]"):
        QRSpec(compression_ratio=2.0)
    with pytest.raises(ConfigError, match="num_collisions must be an int >= 1"):
        QRSpec(num_collisions=0)
    with pytest.raises(ConfigError, match="embedding_dim must be >= 2"):
        one_table(QRSpec(num_collisions=2, operation="concat"), num_embeddings=10, dim=1)
    with pytest.raises(ConfigError, match="num_collisions=11 exceeds the table's 10 ids"):
        one_table(QRSpec(num_collisions=11), num_embeddings=10)
