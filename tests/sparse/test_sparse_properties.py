"""Property-based tests of the sparse types over random shapes.

Batches of size 0 and empty bags are part of every strategy.
"""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recembed.sparse import JaggedTensor, KeyedJaggedTensor, KeyedTensor

FAST = settings(max_examples=50, deadline=None)
KEY_POOL = ["user", "item", "ad", "query", "shop", "brand"]

ids = st.integers(min_value=-5, max_value=1000)
weight_values = st.floats(min_value=-4, max_value=4, allow_nan=False, width=32)


def rows_of(element, num_rows):
    return st.lists(st.lists(element, max_size=4), min_size=num_rows, max_size=num_rows)


@st.composite
def jagged_rows(draw, with_weights=None):
    """(rows of ids, rows of weights or None), 0-5 rows of 0-4 ids each."""
    num_rows = draw(st.integers(0, 5))
    rows = draw(rows_of(ids, num_rows))
    weighted = draw(st.booleans()) if with_weights is None else with_weights
    if not weighted:
        return rows, None
    weights = [draw(st.lists(weight_values, min_size=len(r), max_size=len(r))) for r in rows]
    return rows, weights


@st.composite
def kjt_lists(draw):
    """(mapping, weights or None): 0-5 keys sharing a stride of 0-4 rows."""
    keys = draw(st.lists(st.sampled_from(KEY_POOL), max_size=5, unique=True))
    stride = draw(st.integers(0, 4))
    mapping = {key: draw(rows_of(ids, stride)) for key in keys}
    if not draw(st.booleans()):
        return mapping, None
    weights = {
        key: [draw(st.lists(weight_values, min_size=len(r), max_size=len(r))) for r in rows]
        for key, rows in mapping.items()
    }
    return mapping, weights


@st.composite
def kjts(draw):
    mapping, weights = draw(kjt_lists())
    return KeyedJaggedTensor.from_lists(mapping, weights=weights)


@st.composite
def segment_sizes(draw, total):
    """Non-negative sizes summing to ``total``, zeros allowed anywhere."""
    cuts = sorted(draw(st.lists(st.integers(0, total), max_size=4)))
    bounds = [0] + cuts + [total]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:])]


# ------------------------------------------------------------------ JaggedTensor
@FAST
@given(jagged_rows())
def test_from_dense_to_dense_round_trip(data):
    rows, weights = data
    jt = JaggedTensor.from_dense(rows, weights=weights)
    assert [row.tolist() for row in jt.to_dense()] == rows
    assert len(jt) == len(rows)
    if weights is None:
        assert jt.to_dense_weights() is None
    else:
        expected = [torch.tensor(w, dtype=torch.float32).tolist() for w in weights]
        assert [w.tolist() for w in jt.to_dense_weights()] == expected


@FAST
@given(jagged_rows(with_weights=False))
def test_lengths_offsets_round_trip(data):
    rows, _ = data
    jt = JaggedTensor.from_dense(rows)
    from_offsets = JaggedTensor(jt.values(), offsets=jt.offsets())
    assert from_offsets.lengths().tolist() == [len(r) for r in rows]
    assert from_offsets.offsets().tolist()[0] == 0
    assert from_offsets.offsets().tolist()[-1] == sum(len(r) for r in rows)
    assert JaggedTensor(jt.values(), lengths=from_offsets.lengths()).offsets().tolist() == jt.offsets().tolist()


@FAST
@given(jagged_rows(with_weights=False), st.one_of(st.none(), st.integers(0, 6)), st.integers(-3, 3))
def test_to_padded_dense_matches_to_dense(data, desired_length, padding_value):
    rows, _ = data
    jt = JaggedTensor.from_dense(rows)
    padded = jt.to_padded_dense(desired_length=desired_length, padding_value=padding_value)
    width = desired_length if desired_length is not None else max((len(r) for r in rows), default=0)
    assert tuple(padded.shape) == (len(rows), width)
    for padded_row, row in zip(padded.tolist(), rows):
        kept = row[:width]
        assert padded_row == kept + [padding_value] * (width - len(kept))


# ------------------------------------------------------------- KeyedJaggedTensor
@FAST
@given(kjt_lists())
def test_from_lists_layout(data):
    mapping, _ = data
    kjt = KeyedJaggedTensor.from_lists(mapping)
    assert kjt.keys() == list(mapping)
    assert kjt.lengths().tolist() == [len(row) for rows in mapping.values() for row in rows]
    assert kjt.values().tolist() == [i for rows in mapping.values() for row in rows for i in row]
    assert kjt.length_per_key() == [sum(len(r) for r in rows) for rows in mapping.values()]
    assert kjt.offset_per_key()[0] == 0 and len(kjt.offset_per_key()) == len(mapping) + 1
    for key, rows in mapping.items():
        assert [row.tolist() for row in kjt[key].to_dense()] == rows


@FAST
@given(kjts())
def test_to_dict_from_jt_dict_round_trip(kjt):
    rebuilt = KeyedJaggedTensor.from_jt_dict(kjt.to_dict())
    assert list(kjt.to_dict()) == kjt.keys()
    if kjt.keys():
        assert rebuilt.equals(kjt)
    else:  # with no keys there is nothing to carry the stride
        assert rebuilt.keys() == [] and rebuilt.values().numel() == 0


@FAST
@given(kjts())
def test_kjt_lengths_offsets_round_trip(kjt):
    by_offsets = KeyedJaggedTensor(kjt.keys(), kjt.values(), offsets=kjt.offsets(), weights=kjt.weights_or_none(), stride=kjt.stride())
    assert by_offsets.equals(kjt)
    assert by_offsets.offset_per_key() == kjt.offset_per_key()


@FAST
@given(st.data())
def test_split_then_concat_is_identity(data):
    kjt = data.draw(kjts())
    sizes = data.draw(segment_sizes(len(kjt.keys())))
    parts = kjt.split(sizes)
    assert [len(p.keys()) for p in parts] == sizes
    assert all(p.stride() == kjt.stride() for p in parts)
    assert KeyedJaggedTensor.concat(parts).equals(kjt)


@FAST
@given(st.data())
def test_permute_then_inverse_is_identity(data):
    kjt = data.draw(kjts())
    order = data.draw(st.permutations(range(len(kjt.keys()))))
    inverse = [0] * len(order)
    for position, index in enumerate(order):
        inverse[index] = position
    permuted = kjt.permute(order)
    assert permuted.keys() == [kjt.keys()[i] for i in order]
    assert permuted.permute(inverse).equals(kjt)


@FAST
@given(st.data())
def test_permute_with_repeats_copies_each_key(data):
    kjt = data.draw(kjts())
    if not kjt.keys():
        return
    order = data.draw(st.lists(st.integers(0, len(kjt.keys()) - 1), max_size=6))
    permuted = kjt.permute(order)
    pieces = permuted.split([1] * len(order))
    for index, piece in zip(order, pieces):
        assert piece[kjt.keys()[index]].equals(kjt[kjt.keys()[index]])


# ------------------------------------------------------------------- KeyedTensor
@FAST
@given(st.data())
def test_regroup_matches_to_dict(data):
    batch = data.draw(st.integers(0, 3))
    keys = data.draw(st.lists(st.sampled_from(KEY_POOL), min_size=1, max_size=6, unique=True))
    split_at = data.draw(st.integers(1, len(keys)))
    dims = {key: data.draw(st.integers(0, 3)) for key in keys}
    generator = torch.Generator().manual_seed(data.draw(st.integers(0, 1000)))
    blocks = {key: torch.randn(batch, dims[key], generator=generator) for key in keys}
    inputs = [
        KeyedTensor.from_tensor_list(part, [blocks[k] for k in part])
        for part in (keys[:split_at], keys[split_at:])
        if part
    ]
    for kt in inputs:
        assert kt.values().shape == (batch, sum(kt.length_per_key()))
        for key, block in kt.to_dict().items():
            assert torch.equal(block, blocks[key])
    groups = data.draw(st.lists(st.lists(st.sampled_from(keys), max_size=4), max_size=3))
    for group, result in zip(groups, KeyedTensor.regroup(inputs, groups)):
        expected = torch.cat([blocks[k] for k in group], dim=1) if group else torch.zeros(batch, 0)
        assert torch.equal(result, expected)
