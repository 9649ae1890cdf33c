"""The numba kernel that pools int8 tables (and every key torch does not): values, id checks, threads, float16."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from torch.testing import assert_close

from recembed.compress import quant_kernels, quantize
from recembed.errors import IdOutOfRangeError, InvalidIdError
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig


def collection(dim: int) -> EmbeddingBagCollection:
    torch.manual_seed(0)
    ebc = EmbeddingBagCollection([
        EmbeddingBagConfig(name="t_sum", num_embeddings=40, embedding_dim=dim, feature_names=["s"], pooling="sum"),
        EmbeddingBagConfig(name="t_mean", num_embeddings=30, embedding_dim=dim, feature_names=["m", "m2"],
                           pooling="mean", padding_idx=4),
        EmbeddingBagConfig(name="t_max", num_embeddings=20, embedding_dim=dim, feature_names=["x"], pooling="max"),
    ])
    with torch.no_grad():  # rows of very different ranges, so a wrong row's scale shows
        ebc.embedding_bags["t_sum"].weight.mul_(torch.linspace(0.01, 20, 40).unsqueeze(1))
    return ebc


LIMITS = {"s": 40, "m": 30, "m2": 30, "x": 20}


def batch(keys: list[str], batch_size: int = 6, seed: int = 1, weighted: bool = False) -> KeyedJaggedTensor:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 5, size=(len(keys), batch_size))
    lengths[:, 0] = 0  # an empty bag in every key
    values = [rng.integers(0, LIMITS[k], size=int(lengths[i].sum())) for i, k in enumerate(keys)]
    ids = torch.from_numpy(np.concatenate(values))
    ids[: min(3, len(ids))] = 4  # padding ids of t_mean (when m leads), plain ids elsewhere
    w = torch.from_numpy(rng.uniform(-1, 2, size=len(ids)).astype(np.float32)) if weighted else None
    return KeyedJaggedTensor(keys, ids, lengths=torch.from_numpy(lengths.reshape(-1)), weights=w)


def expected(small, kjt: KeyedJaggedTensor) -> dict[str, torch.Tensor]:
    """Pool the dequantised rows in float64, bag by bag: the independent reference."""
    table_of = {f: c for c in small.embedding_bag_configs() for f in c.feature_names}
    out = {}
    for key in kjt.keys():
        cfg = table_of[key]
        rows = small.dequantize(cfg.name).double()
        piece = kjt[key]
        ids, offsets = piece.values(), piece.offsets()
        weights = piece.weights_or_none()
        bags = []
        for b in range(len(offsets) - 1):
            lo, hi = int(offsets[b]), int(offsets[b + 1])
            kept = [i for i in range(lo, hi) if int(ids[i]) != (cfg.padding_idx if cfg.padding_idx is not None else -1)]
            if not kept:
                bags.append(torch.zeros(cfg.embedding_dim, dtype=torch.float64))
                continue
            vectors = torch.stack([rows[int(ids[i])] * (1.0 if weights is None else float(weights[i])) for i in kept])
            if cfg.pooling.value == "max":
                bags.append(vectors.max(0).values)
            elif cfg.pooling.value == "mean":
                bags.append(vectors.sum(0) / len(kept))
            else:
                bags.append(vectors.sum(0))
        out[key] = torch.stack(bags).float()
    return out


@pytest.mark.parametrize("scale_dtype", ["float16", "float32"])
@pytest.mark.parametrize("dim", [7, 32])
@pytest.mark.parametrize("order", [["m", "s", "x", "m2"], ["x", "m2", "m", "s"]])
def test_int8_bags_equal_pooling_the_dequantised_rows(scale_dtype, dim, order):
    small = quantize(collection(dim), "int8", scale_dtype)
    kjt = batch(order)
    got = small(kjt).to_dict()
    for key, want in expected(small, kjt).items():
        assert_close(got[key], want, rtol=1e-5, atol=1e-5)
    assert got["s"][0].abs().max() == 0 and got["x"][0].abs().max() == 0  # empty bags are zeros


@pytest.mark.parametrize("scale_dtype", ["float16", "float32"])
def test_int8_weighted_bags(scale_dtype):
    ebc = collection(9)
    small = quantize(EmbeddingBagCollection(ebc.embedding_bag_configs()[:2]), "int8", scale_dtype)
    kjt = batch(["s", "m", "m2"], weighted=True)
    got = small(kjt).to_dict()
    for key, want in expected(small, kjt).items():
        assert_close(got[key], want, rtol=1e-5, atol=1e-5)


def test_loaded_rows_are_the_ones_pooled():
    ebc = collection(8)
    small = quantize(ebc, "int8")
    kjt = batch(["m", "s", "x", "m2"])
    before = small(kjt).values()
    with torch.no_grad():
        for table in ebc.embedding_bags.values():
            table.weight.mul_(-3.0)
    other = quantize(ebc, "int8")
    small.load_state_dict(other.state_dict())
    after = small(kjt).values()
    assert torch.equal(after, other(kjt).values()) and not torch.equal(after, before)


@pytest.mark.parametrize("bad,error", [(30, IdOutOfRangeError), (-2, InvalidIdError)])
def test_a_bad_id_in_any_bag_of_any_key_names_its_feature(bad, error):
    small = quantize(collection(8), "int8")
    ids = {"s": [[1], [2, 3]], "m": [[1, 2], [3]], "m2": [[5], [6, 7]], "x": [[1], [2]]}
    ids["m2"][1][1] = bad  # the last id of the last bag of a later key
    with pytest.raises(error, match=rf"feature 'm2' \(table 't_mean'\).*{bad}"):
        small(KeyedJaggedTensor.from_lists(ids))
    ids["m2"][1][1] = 0
    ids["x"][0][0] = 20 if bad > 0 else bad  # a MAX key: the general loop checks too
    with pytest.raises(error, match=rf"feature 'x' \(table 't_max'\).*{20 if bad > 0 else bad}"):
        small(KeyedJaggedTensor.from_lists(ids))


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba has one thread here")
@pytest.mark.parametrize("dtype", ["int8", "int4"])
def test_threads_split_the_jobs_and_give_identical_results(monkeypatch, dtype):
    small = quantize(collection(16), dtype)
    small.use_torch_ops = False
    kjt = batch(["m", "s", "x", "m2"], batch_size=40, seed=3)
    serial = small(kjt).values()
    monkeypatch.setattr(quant_kernels, "_PARALLEL_MIN_IDS", 0)
    numba.set_num_threads(2)  # (the conftest fixture restores the count)
    assert torch.equal(small(kjt).values(), serial)
    bad = KeyedJaggedTensor(kjt.keys(), kjt.values().clone(), lengths=kjt.lengths())
    bad.values()[-1] = 99
    with pytest.raises(IdOutOfRangeError, match="feature 'm2'"):
        small(bad)


def test_the_arithmetic_float16_widening_is_exact_for_every_finite_value(monkeypatch):
    """The fallback used on CPUs without F16C (run here as plain Python)."""
    monkeypatch.setattr(quant_kernels, "_F16C", False)
    bits = np.arange(1 << 16, dtype=np.uint16)
    finite = bits[np.isfinite(bits.view(np.float16))][::7]  # every 7th: exponents, subnormals and signs all occur
    pow2 = quant_kernels.half_exponent_scales()
    widened = np.array([quant_kernels._half.py_func(int(b), pow2) for b in finite], dtype=np.float32)
    assert np.array_equal(widened, finite.view(np.float16).astype(np.float32))
