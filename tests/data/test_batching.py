import numpy as np

from recembed.data.batching import iter_batches
from recembed.data.row_block import RowBlock, take_jagged


def _block(start, n):
    ids = np.arange(start, start + n)
    lengths = ids % 3  # 0, 1 or 2 tags per row
    tags = np.concatenate([np.full(k, i) for i, k in zip(ids, lengths)]) if n else np.zeros(0, np.int64)
    return RowBlock(
        labels=ids.astype(np.float32),
        dense=ids[:, None].astype(np.float32),
        sparse={"id": (np.ones(n, np.int64), ids.astype(np.int64)), "tags": (lengths.astype(np.int64), tags.astype(np.int64))},
        timestamps=ids.astype(np.int64),
    )


def test_take_jagged():
    lengths, values = take_jagged(np.array([2, 0, 3]), np.array([1, 2, 3, 4, 5]), np.array([2, 1, 0, 2]))
    assert lengths.tolist() == [3, 0, 2, 3] and values.tolist() == [3, 4, 5, 1, 2, 3, 4, 5]


def test_ordered_batches_across_blocks(collect):
    blocks = [_block(0, 5), _block(5, 0), _block(5, 8)]
    batches = list(iter_batches(blocks, 4))
    assert [len(b) for b in batches] == [4, 4, 4, 1]
    got = collect(batches)
    assert got["labels"].tolist() == list(range(13))
    assert got["sparse"]["tags"] == [[i] * (i % 3) for i in range(13)]
    assert [len(b) for b in iter_batches(blocks, 4, drop_last=True)] == [4, 4, 4]


def test_shuffle_keeps_rows_whole(collect):
    blocks = [_block(0, 30), _block(30, 30)]
    got = collect(iter_batches(blocks, 7, rng=np.random.default_rng(0), shuffle_buffer=20))
    order = got["labels"].astype(int)
    assert sorted(order.tolist()) == list(range(60)) and order.tolist() != list(range(60))
    # Every field of a row moved together.
    assert got["dense"][:, 0].astype(int).tolist() == order.tolist()
    assert got["timestamps"].tolist() == order.tolist()
    assert got["sparse"]["id"] == [[i] for i in order]
    assert got["sparse"]["tags"] == [[i] * (i % 3) for i in order]
