"""The hashing trick in the compression context: HashedSpec is the hash_size table, sized by a ratio."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from recembed.compress import HashedSpec
from recembed.errors import ConfigError, InvalidDtypeError
from recembed.sparse import KeyedJaggedTensor
from recembed.sparse.hashing import hash_ids
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig

from .builders import bags, one_table

IDS = [0, 1, 2, 99, 2**40 + 3, -7, 123456789012]


def test_same_rows_as_a_plain_hash_size_table():
    spec_table = one_table(HashedSpec(num_buckets=16), num_embeddings=100, dim=4, hash_seed=5).embedding_bags["t"]
    plain = EmbeddingBagCollection([EmbeddingBagConfig(name="p", num_embeddings=16, embedding_dim=4,
                                                       feature_names=["f"], hash_size=16, hash_seed=5)])
    plain.embedding_bags["p"].weight.data.copy_(spec_table.sub_table_weight("hashed").detach())
    kjt = bags([[i] for i in IDS])  # any int64 id is accepted, as with hash_size
    assert spec_table.bucket_of(torch.tensor(IDS)).tolist() == hash_ids(torch.tensor(IDS), 16, 5).tolist()
    assert_close(one_table_out(spec_table, kjt), plain(kjt).values())


def one_table_out(table, kjt: KeyedJaggedTensor) -> torch.Tensor:
    jt = kjt["f"]
    return table.lookup(jt.values(), jt.offsets(), None, feature="f")


def test_ratio_sets_the_bucket_count_and_collisions_share_a_vector():
    table = one_table(HashedSpec(compression_ratio=0.1), num_embeddings=200, dim=3).embedding_bags["t"]
    assert table.num_buckets == 20 and table.num_parameters() == 60
    ids = torch.arange(200)
    buckets = table.bucket_of(ids)
    vectors = table.id_vectors(ids).detach()
    w = table.sub_table_weight("hashed").detach()
    assert_close(vectors, w[buckets])
    a, b = [int(i) for i in torch.nonzero(buckets == buckets[0]).flatten()[:2]]
    assert torch.equal(vectors[a], vectors[b])  # about 10 ids share each of the 20 rows


def test_padding_is_matched_by_raw_id_before_hashing():
    ebc = one_table(HashedSpec(num_buckets=8), num_embeddings=50, dim=2, padding_idx=3, pooling="mean")
    out = ebc(bags([[3, 10], [10], [3]])).values()
    assert_close(out[0], out[1])
    assert_close(out[2], torch.zeros(2))


def test_errors():
    with pytest.raises(ConfigError, match="exactly one of compression_ratio and num_buckets"):
        HashedSpec()
    with pytest.raises(ConfigError, match=r"compression_ratio must be a number in \(0, 1\] .*got 0"):
        HashedSpec(compression_ratio=0)
    with pytest.raises(ConfigError, match="num_buckets=60 exceeds the table's 50 ids"):
        one_table(HashedSpec(num_buckets=60), num_embeddings=50)
    ebc = one_table(HashedSpec(num_buckets=8), num_embeddings=50)
    with pytest.raises(InvalidDtypeError, match="feature 'f' \\(table 't'\\): ids must be integers"):
        ebc.embedding_bags["t"].lookup(torch.tensor([1.0]), torch.tensor([0, 1]), feature="f")
