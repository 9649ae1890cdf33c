"""recembed's Embedding / EmbeddingBag against torch.nn's, on the same weights.

Each test builds the recembed table, copies its weights into the torch module, runs
both on the same input and upstream gradient, and asserts outputs, weight gradients
(coalesced when sparse) and, where relevant, the in-place renormalised weights agree.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from recembed.errors import ConfigError
from recembed.tables import Embedding, EmbeddingBag

NUM, DIM = 12, 5


def _twin_embedding(**opts) -> tuple[Embedding, nn.Embedding]:
    torch.manual_seed(0)
    ours = Embedding(NUM, DIM, **opts)
    ref = nn.Embedding(NUM, DIM, **opts)
    with torch.no_grad():
        ref.weight.copy_(ours.weight)
    return ours, ref


def _twin_bag(**opts) -> tuple[EmbeddingBag, nn.EmbeddingBag]:
    torch.manual_seed(0)
    ours = EmbeddingBag(NUM, DIM, **opts)
    ref = nn.EmbeddingBag(NUM, DIM, **opts)
    with torch.no_grad():
        ref.weight.copy_(ours.weight)
    return ours, ref


def _grads_equal(a: torch.Tensor | None, b: torch.Tensor | None) -> None:
    assert a is not None and b is not None
    assert a.is_sparse == b.is_sparse
    if a.is_sparse:
        a, b = a.coalesce(), b.coalesce()
        assert torch.equal(a.indices(), b.indices())
        assert_close(a.values(), b.values())
    else:
        assert_close(a, b)


def _backward_both(out_ours: torch.Tensor, out_ref: torch.Tensor) -> None:
    upstream = torch.randn(out_ref.shape, generator=torch.Generator().manual_seed(1))
    out_ours.backward(upstream)
    out_ref.backward(upstream)


# Ids with repeats (so scale_grad_by_freq matters) and the padding row 3 / NUM - 1.
IDS_2D = torch.tensor([[1, 3, 3, 7], [11, 0, 1, 1], [3, 3, 3, 3]])
FLAT_IDS = torch.tensor([1, 3, 3, 7, 11, 0, 1, 1, 5, 11])
OFFSETS_WITH_EMPTY = torch.tensor([0, 3, 3, 8, 8])  # 5 bags of 3, 0, 5, 0, 2 ids


EMBEDDING_OPTIONS = [
    {},
    {"padding_idx": 3},
    {"padding_idx": -1},  # normalised to NUM - 1 = 11, as torch does
    {"max_norm": 0.5},
    {"max_norm": 0.7, "norm_type": 1.0},
    {"scale_grad_by_freq": True},
    {"sparse": True},
    {"sparse": True, "padding_idx": 3},
]


@pytest.mark.parametrize("opts", EMBEDDING_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_embedding_matches_torch_outputs_and_gradients(opts):
    ours, ref = _twin_embedding(**opts)
    out_ours, out_ref = ours(IDS_2D), ref(IDS_2D)
    assert out_ours.shape == (3, 4, DIM)
    assert_close(out_ours, out_ref)
    _backward_both(out_ours, out_ref)
    _grads_equal(ours.weight.grad, ref.weight.grad)
    # max_norm renormalises the looked-up rows of the weight in place.
    assert_close(ours.weight.detach(), ref.weight.detach())
    if "max_norm" in opts:
        norms = ours.weight.detach()[IDS_2D.unique()].norm(p=opts.get("norm_type", 2.0), dim=1)
        assert bool((norms <= opts["max_norm"] + 1e-5).all())
    if "padding_idx" in opts:
        pad = opts["padding_idx"] % NUM
        assert ours.padding_idx == pad
        assert torch.count_nonzero(ours.weight.detach()[pad]) == 0
        grad = ours.weight.grad.to_dense() if ours.weight.grad.is_sparse else ours.weight.grad
        assert torch.count_nonzero(grad[pad]) == 0


def test_embedding_accepts_any_input_shape():
    ours, ref = _twin_embedding()
    for ids in (torch.tensor(4), torch.tensor([4, 5]), IDS_2D.reshape(3, 2, 2), torch.empty(0, dtype=torch.int64)):
        assert_close(ours(ids), ref(ids))
        assert ours(ids).shape == (*ids.shape, DIM)


BAG_OPTIONS = [
    {"mode": mode, **extra}
    for mode in ("sum", "mean", "max")
    for extra in (
        {},
        {"padding_idx": 3},
        {"padding_idx": -2},
        {"max_norm": 0.5},
        {"max_norm": 0.8, "norm_type": 3.0},
        {"scale_grad_by_freq": True},
        {"sparse": True},
        {"sparse": True, "padding_idx": 3},
    )
    # torch rejects these two combinations for max pooling (recembed: see test_config).
    if not (mode == "max" and ("sparse" in extra or "scale_grad_by_freq" in extra))
]


def _bag_id(opts):
    return ",".join(f"{k}={v}" for k, v in opts.items())


@pytest.mark.parametrize("opts", BAG_OPTIONS, ids=_bag_id)
def test_embedding_bag_2d_input_matches_torch(opts):
    ours, ref = _twin_bag(**opts)
    out_ours, out_ref = ours(IDS_2D), ref(IDS_2D)
    assert out_ours.shape == (3, DIM)
    assert_close(out_ours, out_ref)
    _backward_both(out_ours, out_ref)
    _grads_equal(ours.weight.grad, ref.weight.grad)
    assert_close(ours.weight.detach(), ref.weight.detach())


@pytest.mark.parametrize("opts", BAG_OPTIONS, ids=_bag_id)
@pytest.mark.parametrize("include_last_offset", [False, True])
def test_embedding_bag_offsets_with_empty_bags_match_torch(opts, include_last_offset):
    ours, ref = _twin_bag(include_last_offset=include_last_offset, **opts)
    offsets = OFFSETS_WITH_EMPTY
    if include_last_offset:
        offsets = torch.cat([offsets, torch.tensor([FLAT_IDS.numel()])])
    out_ours, out_ref = ours(FLAT_IDS, offsets), ref(FLAT_IDS, offsets)
    assert out_ours.shape == (5, DIM)
    assert_close(out_ours, out_ref)
    # Empty bags pool to zeros.
    assert torch.count_nonzero(out_ours[[1, 3]]) == 0
    _backward_both(out_ours, out_ref)
    _grads_equal(ours.weight.grad, ref.weight.grad)
    assert_close(ours.weight.detach(), ref.weight.detach())


@pytest.mark.parametrize("padding_idx", [None, 3])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("two_d", [False, True])
def test_per_sample_weights_sum_matches_torch_including_weight_gradient(padding_idx, sparse, two_d):
    ours, ref = _twin_bag(mode="sum", padding_idx=padding_idx, sparse=sparse)
    ids, offsets = (IDS_2D, None) if two_d else (FLAT_IDS, OFFSETS_WITH_EMPTY)
    psw = torch.linspace(-1.0, 2.0, ids.numel()).reshape(ids.shape)
    psw_ours, psw_ref = psw.clone().requires_grad_(), psw.clone().requires_grad_()
    out_ours, out_ref = ours(ids, offsets, psw_ours), ref(ids, offsets, psw_ref)
    assert_close(out_ours, out_ref)
    _backward_both(out_ours, out_ref)
    _grads_equal(ours.weight.grad, ref.weight.grad)
    assert_close(psw_ours.grad, psw_ref.grad)


def test_per_sample_weights_mean_is_weighted_sum_over_non_padding_count():
    # torch rejects weights with mode="mean"; recembed defines it as sum(w_i * e_i) / n.
    bag = EmbeddingBag(NUM, DIM, mode="mean", padding_idx=3)
    w = bag.weight.detach()
    ids = torch.tensor([1, 3, 7, 2, 2])
    offsets = torch.tensor([0, 3])
    psw = torch.tensor([0.5, 9.0, 2.0, 1.0, -3.0])
    out = bag(ids, offsets, psw)
    expected = torch.stack([(0.5 * w[1] + 2.0 * w[7]) / 2, (1.0 * w[2] - 3.0 * w[2]) / 2])
    assert_close(out, expected)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_two_d_input_with_zero_length_bags_gives_zeros(mode):
    # torch itself fails here (arange with step 0); the 1-D form is its equivalent.
    ours, ref = _twin_bag(mode=mode)
    ids = torch.empty(4, 0, dtype=torch.int64)
    out = ours(ids)
    assert out.shape == (4, DIM)
    assert torch.count_nonzero(out) == 0
    assert_close(out, ref(ids.reshape(-1), torch.zeros(4, dtype=torch.int64)))


@pytest.mark.parametrize("freeze", [True, False])
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_from_pretrained_matches_torch(freeze, padding_idx):
    pretrained = torch.arange(NUM * DIM, dtype=torch.float32).reshape(NUM, DIM) / 10
    ours = Embedding.from_pretrained(pretrained, freeze=freeze, padding_idx=padding_idx)
    ref = nn.Embedding.from_pretrained(pretrained.clone(), freeze=freeze, padding_idx=padding_idx)
    assert ours.weight.requires_grad is (not freeze)
    assert_close(ours.weight.detach(), ref.weight.detach())
    out_ours, out_ref = ours(IDS_2D), ref(IDS_2D)
    assert_close(out_ours, out_ref)
    if not freeze:
        _backward_both(out_ours, out_ref)
        _grads_equal(ours.weight.grad, ref.weight.grad)
    # recembed copies: the caller's tensor is not aliased.
    assert ours.weight.data_ptr() != pretrained.data_ptr()


@pytest.mark.parametrize("freeze", [True, False])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_from_pretrained_matches_torch(freeze, mode):
    pretrained = torch.randn(NUM, DIM, generator=torch.Generator().manual_seed(3))
    ours = EmbeddingBag.from_pretrained(pretrained, freeze=freeze, mode=mode, padding_idx=3)
    ref = nn.EmbeddingBag.from_pretrained(pretrained.clone(), freeze=freeze, mode=mode, padding_idx=3)
    assert ours.weight.requires_grad is (not freeze)
    assert ours.mode == mode
    out_ours, out_ref = ours(FLAT_IDS, OFFSETS_WITH_EMPTY), ref(FLAT_IDS, OFFSETS_WITH_EMPTY)
    assert_close(out_ours, out_ref)
    if not freeze:
        _backward_both(out_ours, out_ref)
        _grads_equal(ours.weight.grad, ref.weight.grad)


def test_from_pretrained_with_max_norm_renormalises_like_torch():
    pretrained = torch.randn(NUM, DIM, generator=torch.Generator().manual_seed(4)) * 3
    ours = EmbeddingBag.from_pretrained(pretrained, max_norm=1.0, mode="sum")
    ref = nn.EmbeddingBag.from_pretrained(pretrained.clone(), max_norm=1.0, mode="sum")
    assert_close(ours(IDS_2D), ref(IDS_2D))
    assert_close(ours.weight.detach(), ref.weight.detach())
    untouched = [i for i in range(NUM) if i not in IDS_2D.unique().tolist()]
    assert_close(ours.weight.detach()[untouched], pretrained[untouched])


def test_default_mode_and_init_follow_torch():
    assert EmbeddingBag(NUM, DIM).mode == "mean"
    # nn.Embedding draws from N(0, 1); a 4000 x 8 table has std close to 1.
    big = Embedding(4000, 8).weight.detach()
    assert abs(float(big.std()) - 1.0) < 0.05
    assert abs(float(big.mean())) < 0.05


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_low_precision_bag_forward_matches_torch(dtype, mode):
    ours, ref = _twin_bag(mode=mode, dtype=dtype, padding_idx=3)
    assert ours.weight.dtype == dtype
    out_ours, out_ref = ours(FLAT_IDS, OFFSETS_WITH_EMPTY), ref(FLAT_IDS, OFFSETS_WITH_EMPTY)
    assert out_ours.dtype == dtype
    assert_close(out_ours, out_ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, "float16", "bfloat16"])
def test_low_precision_embedding_forward_matches_torch(dtype):
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    ours = Embedding(NUM, DIM, dtype=dtype)
    ref = nn.Embedding(NUM, DIM, dtype=torch_dtype)
    with torch.no_grad():
        ref.weight.copy_(ours.weight)
    assert ours.weight.dtype == torch_dtype
    assert_close(ours(IDS_2D), ref(IDS_2D))


def test_low_precision_weights_are_the_rounded_float32_draws():
    torch.manual_seed(5)
    full = Embedding(NUM, DIM).weight.detach()
    torch.manual_seed(5)
    half = Embedding(NUM, DIM, dtype=torch.float16).weight.detach()
    assert torch.equal(half, full.to(torch.float16))


def test_int32_ids_and_offsets_are_accepted():
    ours, ref = _twin_bag(mode="sum")
    out = ours(FLAT_IDS.to(torch.int32), OFFSETS_WITH_EMPTY.to(torch.int32))
    assert_close(out, ref(FLAT_IDS, OFFSETS_WITH_EMPTY))


@pytest.mark.parametrize(
    "opts, named",
    [
        ({"mode": "max", "sparse": True}, "sparse"),
        ({"mode": "max", "scale_grad_by_freq": True}, "scale_grad_by_freq"),
        ({"mode": "sum", "sparse": True, "scale_grad_by_freq": True}, "scale_grad_by_freq"),
    ],
)
def test_combinations_torch_rejects_are_refused_at_construction(opts, named):
    # torch raises only in forward or backward; recembed refuses the table up front.
    with pytest.raises((ValueError, RuntimeError)):
        ref = nn.EmbeddingBag(NUM, DIM, **opts)
        ref(IDS_2D).sum().backward()
    with pytest.raises(ConfigError, match=named):
        EmbeddingBag(NUM, DIM, **opts)


def test_sparse_with_scale_grad_by_freq_is_refused_for_embedding_too():
    with pytest.raises(RuntimeError, match="scale_grad_by_freq"):
        nn.Embedding(NUM, DIM, sparse=True, scale_grad_by_freq=True)(IDS_2D).sum().backward()
    with pytest.raises(ConfigError, match="scale_grad_by_freq"):
        Embedding(NUM, DIM, sparse=True, scale_grad_by_freq=True)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (Embedding.__init__, nn.Embedding.__init__),
        (EmbeddingBag.__init__, nn.EmbeddingBag.__init__),
        (Embedding.from_pretrained, nn.Embedding.from_pretrained),
        (EmbeddingBag.from_pretrained, nn.EmbeddingBag.from_pretrained),
        (Embedding.forward, nn.Embedding.forward),
        (EmbeddingBag.forward, nn.EmbeddingBag.forward),
    ],
)
def test_signatures_start_with_torchs_parameters(ours, theirs):
    import inspect

    want = [(p.name, p.default) for p in inspect.signature(theirs).parameters.values()]
    got = [(p.name, p.default) for p in inspect.signature(ours).parameters.values()]
    assert got[: len(want)] == want


@pytest.mark.parametrize(
    "opts",
    [{}, {"padding_idx": -1, "max_norm": 2.0, "norm_type": 1.0, "scale_grad_by_freq": True},
     {"sparse": True, "padding_idx": 4}],
)
def test_torch_attributes_are_readable(opts):
    ours, ref = _twin_embedding(**opts)
    bag_ours, bag_ref = _twin_bag(include_last_offset=True, mode="sum", **opts)
    for a, b in ((ours, ref), (bag_ours, bag_ref)):
        for attr in ("num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type",
                     "scale_grad_by_freq", "sparse"):
            assert getattr(a, attr) == getattr(b, attr), attr
    assert (bag_ours.mode, bag_ours.include_last_offset) == (bag_ref.mode, bag_ref.include_last_offset)


def test_two_d_input_ignores_include_last_offset_like_torch():
    ours, ref = _twin_bag(mode="sum", include_last_offset=True)
    assert ours(IDS_2D).shape == (3, DIM)
    assert_close(ours(IDS_2D), ref(IDS_2D))


def test_positional_arguments_follow_torch_order():
    ours = Embedding(NUM, DIM, 2, 1.5)  # padding_idx, max_norm
    assert (ours.padding_idx, ours.max_norm) == (2, 1.5)
    bag = EmbeddingBag(NUM, DIM, None, 2.0, False, "max")  # max_norm, norm_type, scale_grad_by_freq, mode
    assert bag.mode == "max"


def test_lookup_seam_takes_enum_pooling_and_counts_non_padding_ids():
    from recembed.kernels.lookup import bag_counts, pooled_lookup
    from recembed.tables import PoolingType

    weight = torch.arange(12.0).reshape(4, 3)
    ids = torch.tensor([0, 1, 1, 3, 2])
    offsets = torch.tensor([0, 2, 2, 5])
    assert bag_counts(ids, offsets, padding_idx=1).tolist() == [1, 0, 2]
    assert bag_counts(ids, offsets, padding_idx=None).tolist() == [2, 0, 3]
    out = pooled_lookup(weight, ids, offsets, pooling=PoolingType.MEAN, padding_idx=1)
    assert_close(out, torch.stack([weight[0], torch.zeros(3), (weight[3] + weight[2]) / 2]))
