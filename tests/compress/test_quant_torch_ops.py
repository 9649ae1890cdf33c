"""Quantised lookups through torch's operators (int4 and float16 SUM/MEAN keys): their layouts, the facts relied
on, parity with the numba kernel. (int8 keys never go to torch: tests/compress/test_quant_kernels.py.)"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from recembed.compress import quant_torch_ops, quantize, quantize_rows
from recembed.compress.quant_layout import (
    BYTES,
    BYTES16,
    NIBBLES,
    code_format,
    pack_rows,
    row_layout,
    unpack_rows,
)
from recembed.compress.quant_torch_ops import torch_op_available
from recembed.errors import IdOutOfRangeError, InvalidIdError
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig

needs_ops = pytest.mark.skipif(not (torch_op_available(BYTES) and torch_op_available(NIBBLES)),
                               reason="this torch build has no quantized embedding-bag operators")


def weights(rows: int = 40, dim: int = 7, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(rows, dim)) * rng.uniform(0.01, 5, size=(rows, 1))).astype(np.float32)


@pytest.mark.parametrize("dtype,scale_dtype", [("int8", "float16"), ("int8", "float32"), ("int4", "float16"),
                                               ("int4", "float32"), ("float16", "float16")])
@pytest.mark.parametrize("dim", [6, 7])
def test_rows_pack_and_unpack_losslessly(dtype, scale_dtype, dim):
    q = quantize_rows(weights(dim=dim), dtype, scale_dtype)
    block = pack_rows(q, scale_dtype)
    assert block.shape == (40, row_layout(dim, dtype, scale_dtype)[0])
    back = unpack_rows(block, dim, dtype, scale_dtype)
    assert np.array_equal(back.codes, q.codes) and np.array_equal(back.scale_bias, q.scale_bias)


def test_row_strides():
    # int8 / float16 scales: D codes padded to 2 bytes + 4; the byte layout pads D to 4, + 8.
    assert [row_layout(d, "int8", "float16") for d in (32, 7, 64)] == [(36, 32), (12, 8), (68, 64)]
    assert [row_layout(d, "int8", "float32") for d in (32, 7)] == [(40, 32), (16, 8)]
    assert [row_layout(d, "int4", "float16") for d in (32, 7, 3)] == [(20, 16), (8, 4), (6, 2)]
    assert row_layout(32, "float16", "float16") == (64, 64)
    assert [code_format("int8", s) for s in ("float16", "float32")] == [BYTES16, BYTES]
    assert 32 * 4 / row_layout(32, "int8", "float16")[0] >= 3.5  # the size target the default layout exists for


@needs_ops
@pytest.mark.parametrize("dim", [8, 7])
def test_fbgemm_reads_our_rows_as_we_do(dim):
    w = weights(dim=dim)
    byte_rows = quantize_rows(w, "int8", "float32")
    unpacked = torch.ops.quantized.embedding_bag_byte_unpack(torch.from_numpy(pack_rows(byte_rows, "float32")))
    assert_close(unpacked[:, :dim], torch.from_numpy(byte_rows.dequantize()), rtol=1e-6, atol=1e-6)
    nibble_rows = quantize_rows(w, "int4", "float16")
    unpacked = torch.ops.quantized.embedding_bag_4bit_unpack(torch.from_numpy(pack_rows(nibble_rows, "float16")))
    assert_close(unpacked[:, :dim], torch.from_numpy(nibble_rows.dequantize()), rtol=1e-6, atol=1e-6)


@needs_ops
def test_the_operator_facts_this_path_relies_on():
    """If a torch upgrade changes one of these, quant_torch_ops must change with it."""
    packed = torch.ops.quantized.embedding_bag_4bit_prepack(torch.from_numpy(weights(dim=8)))
    op = torch.ops.quantized.embedding_bag_4bit_rowwise_offsets
    ids, offsets = torch.tensor([1, 2, 3, 4]), torch.tensor([0, 3, 4])
    summed = op(packed, ids, offsets, mode=0, include_last_offset=True)
    assert torch.equal(op(packed, ids, offsets, mode=1, include_last_offset=True), summed)  # MEAN is not applied
    shifted = op(packed, torch.tensor([9, 9, 2, 3, 4]), torch.tensor([2, 3, 5]), include_last_offset=True)
    assert not torch.equal(shifted[0], op(packed, torch.tensor([2]), torch.tensor([0, 1]), include_last_offset=True)[0])


def collection(dim: int = 7, padding: bool = False) -> EmbeddingBagCollection:
    torch.manual_seed(0)
    return EmbeddingBagCollection([
        EmbeddingBagConfig(name="t_x", num_embeddings=30, embedding_dim=dim, feature_names=["x", "y"], pooling="mean",
                           padding_idx=2 if padding else None),
        EmbeddingBagConfig(name="t_z", num_embeddings=20, embedding_dim=dim, feature_names=["z"], pooling="sum"),
        EmbeddingBagConfig(name="t_w", num_embeddings=25, embedding_dim=dim, feature_names=["w"], pooling="max"),
    ])


def batch(order: list[str], weighted: bool = False) -> KeyedJaggedTensor:
    rng = np.random.default_rng(1)
    limits = {"x": 30, "y": 30, "z": 20, "w": 25}
    lengths = rng.integers(0, 4, size=(len(order), 5))
    values = [rng.integers(0, limits[k], size=int(lengths[i].sum())) for i, k in enumerate(order)]
    ids = torch.from_numpy(np.concatenate(values))
    w = torch.from_numpy(rng.uniform(-1, 2, size=len(ids)).astype(np.float32)) if weighted else None
    return KeyedJaggedTensor(order, ids, lengths=torch.from_numpy(lengths.reshape(-1)), weights=w)


@needs_ops
@pytest.mark.parametrize("dtype,scale_dtype", [("int4", "float16"), ("float16", "float16")])
@pytest.mark.parametrize("dim", [8, 7])
@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("order", [["x", "y", "z", "w"], ["w", "z", "x", "y"]])
def test_operator_path_matches_the_numba_kernel(dtype, scale_dtype, dim, padding, order):
    small = quantize(collection(dim, padding), dtype, scale_dtype)
    kjt = batch(order)
    fast = small(kjt).values()
    small.use_torch_ops = False
    reference = small(kjt).values()
    rtol = 2**-11 if dtype == "float16" else 1e-5  # torch.embedding_bag rounds float16 results once
    assert_close(fast, reference, rtol=rtol, atol=1e-5)


@needs_ops
def test_weighted_bags_match_the_numba_kernel():
    small = quantize(EmbeddingBagCollection(collection().embedding_bag_configs()[:2]), "int4")
    kjt = batch(["x", "y", "z"], weighted=True)
    fast = small(kjt).values()
    small.use_torch_ops = False
    assert_close(fast, small(kjt).values(), rtol=1e-5, atol=1e-5)


@needs_ops
def test_sum_and_mean_keys_go_to_the_operator_in_one_call(monkeypatch):
    calls = []
    real = quant_torch_ops.pool_with_torch_ops

    def spy(fmt, weight, dim, ids, *rest, **kw):
        calls.append((fmt, tuple(weight.shape), len(ids)))
        return real(fmt, weight, dim, ids, *rest, **kw)

    monkeypatch.setattr("recembed.compress.quantized_collection.pool_with_torch_ops", spy)
    kjt = batch(["x", "y", "z", "w"])
    quantize(collection(8), "int4")(kjt)
    # x, y, z through one 4-bit call over all 75 stacked rows (4 + 4 bytes each); w (MAX) through numba.
    wanted = sum(len(kjt[k].values()) for k in ("x", "y", "z"))
    assert calls == [(NIBBLES, (75, 8), wanted)]
    for scale_dtype in ("float16", "float32"):  # int8 keys all go to the numba kernel
        quantize(collection(8), "int8", scale_dtype)(kjt)
    assert len(calls) == 1


def test_without_the_operators_the_numba_kernel_serves_every_key(monkeypatch):
    small = quantize(collection(8), "int4")
    kjt = batch(["x", "y", "z", "w"])
    small.use_torch_ops = False
    reference = small(kjt).values()
    monkeypatch.setattr(quant_torch_ops, "torch_op_available", lambda fmt: False)
    fresh = quantize(collection(8), "int4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(fresh(kjt).values(), reference)


@pytest.mark.parametrize("bad_id", [30, -1])
@pytest.mark.parametrize("dtype", ["int8", "int4"])
def test_ids_outside_a_table_are_caught_before_the_operator_reads_them(bad_id, dtype):
    small = quantize(collection(8), dtype)  # int4: x, y, z stacked in one operator call; x's row 30 is z's row 0
    kjt = KeyedJaggedTensor.from_lists({"x": [[1], [bad_id]], "y": [[2], []], "z": [[3], [4]], "w": [[5], [6]]})
    with pytest.raises((IdOutOfRangeError, InvalidIdError), match=rf"feature 'x' \(table 't_x'\).*{bad_id}"):
        small(kjt)
