"""Quantised inference: error bounds, kernels against dequantised rows, models, warnings, files, sizes."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from recembed.compress import (
    QRSpec,
    QuantizedEmbeddingBagCollection,
    compressed_num_bytes,
    load_quantized,
    quantization_error,
    quantize,
    quantize_rows,
    save_quantized,
    table_sizes,
)
from recembed.errors import CheckpointError, ConfigError, IdOutOfRangeError
from recembed.models import DLRM
from recembed.sparse import KeyedJaggedTensor
from recembed.sparse.hashing import hash_ids
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig

from .builders import pool


def tables(**fields) -> list[EmbeddingBagConfig]:
    return [
        EmbeddingBagConfig(name="t_mean", num_embeddings=50, embedding_dim=7, feature_names=["a"], pooling="mean",
                           padding_idx=3, **fields),
        EmbeddingBagConfig(name="t_max", num_embeddings=30, embedding_dim=4, feature_names=["b", "c"], pooling="max",
                           **fields),
        EmbeddingBagConfig(name="t_hash", num_embeddings=16, embedding_dim=5, feature_names=["d"], hash_size=16,
                           **fields),
    ]


def collection(**fields) -> EmbeddingBagCollection:
    torch.manual_seed(0)
    ebc = EmbeddingBagCollection(tables(**fields))
    with torch.no_grad():
        ebc.embedding_bags["t_hash"].weight.mul_(torch.linspace(0.01, 30, 16).unsqueeze(1))  # very different scales
    return ebc


BATCH = KeyedJaggedTensor.from_lists({
    "c": [[29], [], [1, 2]],
    "a": [[3, 4, 49], [3], []],
    "d": [[2**40, -5], [7], [7, 7, 7]],
    "b": [[0, 1, 2], [5], [29]],
})


@pytest.mark.parametrize("dtype", ["int8", "int4"])
@pytest.mark.parametrize("scale_dtype", ["float16", "float32"])
def test_row_error_is_at_most_half_a_step(dtype, scale_dtype):
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(300, 9)) * rng.uniform(1e-3, 50, size=(300, 1))).astype(np.float32)
    w[0], w[1] = 0.3, 0.0  # constant rows
    q = quantize_rows(w, dtype, scale_dtype)
    assert q.codes.shape == (300, 9 if dtype == "int8" else 5)  # odd dim: one zero nibble of padding per row
    err = np.abs(q.dequantize() - w)
    half_step = q.steps()[:, None] / 2
    assert (err <= half_step + 1e-6 * np.abs(w)).all()
    assert err[:2].max() <= 1e-6


def test_float16_rows_and_overflow_errors():
    w = np.array([[1.0, -2.5, 1e-3]], dtype=np.float32)
    assert_close(torch.from_numpy(quantize_rows(w, "float16").dequantize()), torch.from_numpy(w), rtol=1e-3, atol=0)
    with pytest.raises(ConfigError, match="beyond ±65504 do not fit float16"):
        quantize_rows(np.array([[1e6]], dtype=np.float32), "float16")
    with pytest.raises(ConfigError, match="use scale_dtype='float32'"):
        quantize_rows(np.array([[-1e6, 1e6]], dtype=np.float32), "int8")
    assert quantize_rows(np.array([[-1e6, 1e6]], dtype=np.float32), "int8", "float32").codes.tolist() == [[0, 255]]


@pytest.mark.parametrize("dtype", ["int8", "int4", "float16"])
def test_pooled_forward_equals_pooling_the_dequantised_rows(dtype):
    ebc = collection()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fused state here, so no warning either
        small = quantize(ebc, dtype)
    assert isinstance(small, QuantizedEmbeddingBagCollection)
    out = small(BATCH)
    assert out.keys() == ["a", "b", "c", "d"] and out.values().shape == (3, 7 + 4 + 4 + 5)
    deq = {c.name: small.dequantize(c.name) for c in ebc.embedding_bag_configs()}
    parts = out.to_dict()
    # float16 SUM/MEAN keys pool through torch.embedding_bag, which rounds the result to float16 once.
    close = {"rtol": 2**-11, "atol": 1e-6} if dtype == "float16" else {}
    want_a = [pool([deq["t_mean"][i] for i in bag if i != 3], "mean", 7) for bag in [[3, 4, 49], [3], []]]
    assert_close(parts["a"], torch.stack(want_a), **close)
    want_b = [pool([deq["t_max"][i] for i in bag], "max", 4) for bag in [[0, 1, 2], [5], [29]]]
    assert_close(parts["b"], torch.stack(want_b))
    rows_d = dict(zip([2**40, -5, 7], hash_ids(torch.tensor([2**40, -5, 7]), 16, 0).tolist()))
    want_d = [pool([deq["t_hash"][rows_d[i]] for i in bag], "sum", 5) for bag in [[2**40, -5], [7], [7, 7, 7]]]
    assert_close(parts["d"], torch.stack(want_d), rtol=2**-11 if dtype == "float16" else 1e-5, atol=1e-4)
    # And close to the float32 collection, within the quantisation error.
    tol = {"int8": 0.05, "int4": 1.0, "float16": 0.02}[dtype]
    assert (out.values() - ebc(BATCH).values()).abs().max() < tol


def test_per_sample_weights_and_errors_at_lookup():
    ebc = collection()
    small = quantize(ebc, "int8")
    weighted = KeyedJaggedTensor(["a"], torch.tensor([1, 3, 2]), lengths=torch.tensor([2, 1]),
                                 weights=torch.tensor([2.0, 5.0, -1.0]))
    only_a = quantize(EmbeddingBagCollection([tables()[0]]), "int8")
    deq = only_a.dequantize("t_mean")
    assert_close(only_a(weighted).values(), torch.stack([2.0 * deq[1], -1.0 * deq[2]]))
    with pytest.raises(ConfigError, match="per-sample weights need SUM or MEAN pooling, not MAX"):
        small(KeyedJaggedTensor(["a", "b", "c", "d"], torch.tensor([1, 1, 1, 1]), lengths=torch.ones(4, dtype=torch.long),
                                weights=torch.ones(4)))
    with pytest.raises(IdOutOfRangeError, match=r"feature 'b' \(table 't_max'\): id 30 out of range"):
        small(KeyedJaggedTensor.from_lists({"a": [[1]], "b": [[30]], "c": [[1]], "d": [[1]]}))


def test_quantization_error_reports_the_half_step_bound():
    ebc = collection()
    for dtype in ("int8", "int4"):
        err = quantization_error(ebc, quantize(ebc, dtype))
        assert set(err) == {"t_mean", "t_max", "t_hash"}
        assert all(e["max_over_half_scale"] <= 1.0 + 1e-3 for e in err.values())
    err8, err4 = quantization_error(ebc, quantize(ebc, "int8")), quantization_error(ebc, quantize(ebc, "int4"))
    assert err8["t_hash"]["max_abs"] < err4["t_hash"]["max_abs"]


def test_fused_state_is_dropped_with_a_warning_and_the_original_is_untouched():
    ebc = collection(optimizer="adagrad", lr=0.1)
    before = {k: v.clone() for k, v in ebc.state_dict().items()}
    with pytest.warns(UserWarning, match=r"tables \['t_mean', 't_max', 't_hash'\] hold fused-optimizer state"):
        small = quantize(ebc, "int8")
    assert not any("fused" in k for k in small.state_dict())
    assert all(torch.equal(before[k], v) for k, v in ebc.state_dict().items())


def test_a_model_is_deep_copied_with_its_collections_replaced():
    torch.manual_seed(0)
    cfgs = [EmbeddingBagConfig(name=f"t_{f}", num_embeddings=40, embedding_dim=8, feature_names=[f])
            for f in ("ad", "site")]
    model = DLRM(3, cfgs, bottom_mlp=[8], top_mlp=[8, 1], embedding_optimizer="rowwise_adagrad").eval()
    with pytest.warns(UserWarning, match="embeddings.t_ad"):
        small = quantize(model, "int8")
    assert isinstance(small.embeddings, QuantizedEmbeddingBagCollection) and not small.training
    assert isinstance(model.embeddings, EmbeddingBagCollection)
    assert small.top_mlp is not model.top_mlp
    sparse = KeyedJaggedTensor.from_lists({"ad": [[1], [2, 3]], "site": [[5], [39]]})
    dense = torch.randn(2, 3)
    with torch.no_grad():
        assert (small(dense, sparse) - model(dense, sparse)).abs().max() < 0.01
    with pytest.raises(ConfigError, match="already quantised"):
        quantize(small, "int4")
    with pytest.raises(ConfigError, match="holds no EmbeddingBagCollection"):
        quantize(torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="dtype='int2' is not one of int8, int4, float16"):
        quantize(model, "int2")


def test_compressed_tables_keep_their_structure_with_quantised_sub_tables():
    torch.manual_seed(0)
    ebc = EmbeddingBagCollection([
        EmbeddingBagConfig(name="t_qr", num_embeddings=40, embedding_dim=6, feature_names=["a"],
                           compression=QRSpec(num_collisions=4, operation="mult")),
        EmbeddingBagConfig(name="t_plain", num_embeddings=10, embedding_dim=6, feature_names=["b"]),
    ])
    small = quantize(ebc, "int8")
    kjt = KeyedJaggedTensor.from_lists({"a": [[1, 39], [7]], "b": [[2], [3]]})
    assert (small(kjt).values() - ebc(kjt).values()).abs().max() < 0.01
    kinds = {s.table: s.kind for s in table_sizes(small)}
    assert kinds == {"t_qr": "qr+int8", "t_plain": "int8"}
    assert compressed_num_bytes(small) == (10 + 4) * (6 + 4) + 10 * (6 + 4)
    with pytest.raises(ConfigError, match="compressed tables"):
        save_quantized(small, "unused.npz")


@pytest.mark.parametrize("dtype", ["int8", "int4", "float16"])
def test_save_and_load_round_trip(tmp_path, dtype):
    small = quantize(collection(), dtype, scale_dtype="float32" if dtype == "int4" else "float16")
    path = tmp_path / "tables.npz"
    save_quantized(small, path)
    assert os.listdir(tmp_path) == ["tables.npz"]  # the temporary file was renamed into place
    loaded = load_quantized(path)
    assert loaded.dtype == dtype and loaded.feature_names() == small.feature_names()
    assert torch.equal(loaded(BATCH).values(), small(BATCH).values())
    assert torch.equal(loaded.data, small.data)


def test_loading_bad_files_raises_checkpoint_errors(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="junk.npz: cannot read a quantised collection"):
        load_quantized(junk)
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(CheckpointError, match=r"missing arrays \['data', 'header'\]"):
        load_quantized(other)
    good = tmp_path / "good.npz"
    save_quantized(quantize(collection(), "int8"), good)
    with np.load(good) as data:
        arrays = dict(data)
    arrays["data"] = arrays["data"][:-1]
    np.savez(tmp_path / "cut.npz", **arrays)
    with pytest.raises(CheckpointError, match="array 'data' is uint8"):
        load_quantized(tmp_path / "cut.npz")


def test_sizes_of_quantised_tables():
    ebc = collection()
    plain = {s.table: s for s in table_sizes(ebc)}
    assert plain["t_mean"].num_bytes == 50 * 7 * 4 and plain["t_mean"].kind == "plain"
    int8 = {s.table: s for s in table_sizes(quantize(ebc, "int8"))}
    # 7 codes + 1 byte so the float16 scale and bias sit 2-byte aligned, + 4 bytes of scale and bias.
    assert int8["t_mean"].num_bytes == 50 * (7 + 1 + 4) and int8["t_mean"].num_parameters == 50 * 7
    assert int8["t_max"].num_bytes == 30 * (4 + 4)
    int4 = {s.table: s for s in table_sizes(quantize(ebc, "int4", scale_dtype="float32"))}
    assert int4["t_mean"].num_bytes == 50 * (4 + 8)  # ceil(7 / 2) bytes of codes + float32 scale and bias
    fp16 = {s.table: s for s in table_sizes(quantize(ebc, "float16"))}
    assert fp16["t_max"].num_bytes == 30 * 4 * 2 and fp16["t_max"].compression == 2.0


def test_version_1_files_still_load(tmp_path):
    """Session-1 files: int8 rows held plain codes, one pad byte for odd D, then float16 (step, bias)."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, size=(6, 3)).astype(np.uint8)
    meta = np.array([[0.01, -1.0]] * 3 + [[0.5, 2.0]] * 3, dtype=np.float16)
    rows = np.concatenate([codes, np.zeros((6, 1), np.uint8), meta.view(np.uint8)], axis=1)
    header = {"format": "recembed.quantized_embedding_bag_collection", "version": 1, "dtype": "int8",
              "scale_dtype": "float16", "tables": [{"name": "t", "num_embeddings": 6, "embedding_dim": 3,
                                                    "feature_names": ["f"], "pooling": "sum", "padding_idx": None,
                                                    "hash_size": None, "hash_seed": 0}]}
    path = tmp_path / "v1.npz"
    np.savez(path, header=np.frombuffer(json.dumps(header).encode(), np.uint8), data=rows.reshape(-1))
    loaded = load_quantized(path)
    stored = codes.astype(np.float64) * meta[:, :1].astype(np.float64) + meta[:, 1:].astype(np.float64)
    got = loaded.dequantize("t").numpy()
    assert (np.abs(got - stored) <= loaded.table_rows("t").steps()[:, None] / 2 + 1e-6).all()
    kjt = KeyedJaggedTensor.from_lists({"f": [[0, 5], [4]]})
    assert_close(loaded(kjt).values(), torch.tensor(np.stack([got[0] + got[5], got[4]]), dtype=torch.float32))


def test_version_2_files_still_load_bit_for_bit(tmp_path):
    """Session-2 files: int8 rows with float16 scales held their codes as two nibble planes (same stride)."""
    from recembed.compress.quant_layout import _split_planes, row_layout

    small = quantize(collection(), "int8")
    save_quantized(small, tmp_path / "v3.npz")
    with np.load(tmp_path / "v3.npz") as data:
        header, rows = json.loads(bytes(data["header"]).decode()), data["data"].copy()
    header["version"] = 2
    at = 0
    for table in header["tables"]:
        dim, count = table["embedding_dim"], table["num_embeddings"]
        stride, _ = row_layout(dim, "int8", "float16")
        block = rows[at : at + count * stride].reshape(count, stride)
        planes = _split_planes(block[:, :dim].copy(), dim)
        block[:, : planes.shape[1]] = planes
        at += count * stride
    assert not np.array_equal(rows, small.data.numpy())
    np.savez(tmp_path / "v2.npz", header=np.frombuffer(json.dumps(header).encode(), np.uint8), data=rows)
    loaded = load_quantized(tmp_path / "v2.npz")
    assert torch.equal(loaded.data, small.data)
    assert torch.equal(loaded(BATCH).values(), small(BATCH).values())
