import numpy as np
import pytest
import torch

from recembed.data.batch_layout import cut_into_batches
from recembed.data.batching import iter_batches
from recembed.data.row_block import RowBlock


def _block(n, seed=0, multi_hot=True, timestamps=True):
    """Rows with one single-hot feature, optionally a 0..3-hot one, and 2 dense columns."""
    rng = np.random.default_rng(seed)
    sparse = {"ad": (np.ones(n, np.int64), rng.integers(0, 50, n))}
    if multi_hot:
        lengths = rng.integers(0, 4, n)
        sparse["tags"] = (lengths, rng.integers(0, 9, int(lengths.sum())))
    sparse["site"] = (np.ones(n, np.int64), rng.integers(0, 7, n))
    return RowBlock(
        labels=rng.random(n).astype(np.float32),
        dense=rng.random((n, 2)).astype(np.float32),
        sparse=sparse,
        timestamps=np.arange(n, dtype=np.int64) * 10 if timestamps else None,
    )


def _reference(block, rows, batch_size):
    """Plain-Python expectation: per batch, per feature, the id lists of its rows."""
    out = []
    for start in range(0, len(rows), batch_size):
        part = rows[start:start + batch_size]
        features = {}
        for name, (lengths, values) in block.sparse.items():
            offsets = np.concatenate(([0], np.cumsum(lengths)))
            features[name] = [values[offsets[r]:offsets[r + 1]].tolist() for r in part]
        out.append((part, features))
    return out


@pytest.mark.parametrize("multi_hot", [True, False])
@pytest.mark.parametrize("n,batch_size", [(10, 4), (12, 4), (3, 8), (1, 1)])
def test_batches_match_a_row_by_row_reference(multi_hot, n, batch_size):
    block = _block(40, seed=n, multi_hot=multi_hot)
    rows = np.random.default_rng(1).integers(0, 40, n)  # any order, with repeats
    batches = cut_into_batches(block, batch_size, rows)
    expected = _reference(block, rows, batch_size)
    assert len(batches) == len(expected)
    for batch, (part, features) in zip(batches, expected):
        assert batch.sparse.keys() == list(block.sparse)
        assert batch.sparse.stride() == len(part)
        np.testing.assert_array_equal(batch.labels.numpy(), block.labels[part])
        np.testing.assert_array_equal(batch.dense.numpy(), block.dense[part])
        np.testing.assert_array_equal(batch.timestamps.numpy(), block.timestamps[part])
        for name, id_lists in features.items():
            assert [list(map(int, row)) for row in batch.sparse[name].to_dense()] == id_lists
        sizes = [sum(len(ids) for ids in features[name]) for name in block.sparse]
        assert batch.sparse.length_per_key() == sizes
        assert batch.sparse.lengths().tolist() == [len(ids) for name in block.sparse for ids in features[name]]


def test_no_rows_give_one_empty_batch():
    (batch,) = cut_into_batches(_block(5), 4, np.zeros(0, np.int64))
    assert len(batch) == 0 and batch.sparse.values().numel() == 0 and batch.dense.shape == (0, 2)


def test_block_without_sparse_features_or_timestamps():
    block = RowBlock(labels=np.arange(5, dtype=np.float32), dense=np.ones((5, 1), np.float32), sparse={})
    batches = cut_into_batches(block, 2)
    assert [b.labels.tolist() for b in batches] == [[0.0, 1.0], [2.0, 3.0], [4.0]]
    assert all(b.sparse.keys() == [] and b.timestamps is None for b in batches)


def test_batches_do_not_share_memory_with_the_block():
    block = _block(6, multi_hot=False)
    before = block.dense.copy(), block.sparse["ad"][1].copy()
    for batch in cut_into_batches(block, 4):
        batch.dense.zero_()
        batch.sparse.values().zero_()
    np.testing.assert_array_equal(block.dense, before[0])
    np.testing.assert_array_equal(block.sparse["ad"][1], before[1])


def test_single_hot_is_detected_per_feature():
    block = _block(20, multi_hot=True)
    assert block.single_hot("ad") and block.single_hot("site")
    assert not block.single_hot("tags")


def test_shuffled_stream_spanning_several_chunks(monkeypatch):
    import recembed.data.batching as batching

    monkeypatch.setattr(batching, "CHUNK_ROWS", 8)  # 1 batch, then chunks of 2 batches of 4
    block = _block(30, seed=3)
    order = np.random.default_rng(5).permutation(30)
    got = list(iter_batches([block], 4, rng=np.random.default_rng(5)))
    expected = _reference(block, order, 4)
    assert [len(b) for b in got] == [4] * 7 + [2]
    for batch, (part, features) in zip(got[:-1], expected[:-1]):
        np.testing.assert_array_equal(batch.labels.numpy(), block.labels[part])
        assert [list(map(int, r)) for r in batch.sparse["tags"].to_dense()] == features["tags"]
    # The leftover rows are shuffled once more on their own (as the stream's last buffer).
    assert sorted(got[-1].labels.tolist()) == sorted(block.labels[order[28:]].tolist())
    dropped = list(iter_batches([block], 4, rng=np.random.default_rng(5), drop_last=True))
    assert [len(b) for b in dropped] == [4] * 7
    assert torch.equal(dropped[6].labels, got[6].labels)
