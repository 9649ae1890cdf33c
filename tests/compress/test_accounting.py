"""Table sizes: parameters and bytes per table, for plain, compressed and nested collections."""

from __future__ import annotations

import numpy as np
import torch

from recembed.compress import (
    BloomSpec,
    MixedDimSpec,
    QRSpec,
    compressed_num_bytes,
    compressed_num_parameters,
    find_collections,
    table_sizes,
)
from recembed.models import DLRM
from recembed.tables import EmbeddingBagConfig


def model() -> DLRM:
    torch.manual_seed(0)
    cfgs = [
        EmbeddingBagConfig(name="t_plain", num_embeddings=10, embedding_dim=8, feature_names=["a"]),
        EmbeddingBagConfig(name="t_bloom", num_embeddings=1000, embedding_dim=8, feature_names=["b"],
                           compression=BloomSpec(0.1, 2)),
        EmbeddingBagConfig(name="t_qr", num_embeddings=1000, embedding_dim=8, feature_names=["c"],
                           compression=QRSpec(num_collisions=10)),
        EmbeddingBagConfig(name="t_mixed", num_embeddings=100, embedding_dim=8, feature_names=["d"], dtype="float16",
                           compression=MixedDimSpec(block_sizes=(10, 90), block_dims=(8, 2), counts=np.arange(100))),
    ]
    return DLRM(2, cfgs, bottom_mlp=[8], top_mlp=[4, 1])


def test_every_table_is_reported_once_with_its_kind_and_bytes():
    m = model()
    assert [p for p, _ in find_collections(m)] == ["embeddings"]  # sub-table collections are not listed
    sizes = {s.table: s for s in table_sizes(m)}
    assert {n: s.kind for n, s in sizes.items()} == {"t_plain": "plain", "t_bloom": "bloom", "t_qr": "qr",
                                                     "t_mixed": "mixed_dim"}
    assert sizes["t_plain"].num_bytes == 10 * 8 * 4
    assert sizes["t_bloom"].num_parameters == 100 * 8 and sizes["t_bloom"].num_bytes == 100 * 8 * 4
    assert sizes["t_qr"].num_parameters == (100 + 10) * 8
    assert sizes["t_bloom"].compression == 10.0 and sizes["t_bloom"].collection == "embeddings"
    # float16 block tables, a float32 projection (2 -> 8) and the int32 rank map of 100 ids.
    assert sizes["t_mixed"].num_bytes == (10 * 8 + 90 * 2) * 2 + 2 * 8 * 4 + 100 * 4
    assert sizes["t_mixed"].plain_num_bytes == 100 * 8 * 4
    assert compressed_num_bytes(m) == sum(s.num_bytes for s in sizes.values())
    assert compressed_num_parameters(m) == 80 + 800 + 880 + (10 * 8 + 90 * 2 + 16)
