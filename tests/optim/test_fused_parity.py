"""N steps of the fused path equal N steps of a reference, for every optimizer and backend.

The reference trains a plain-autograd twin of the collection: dense gradients from
PyTorch's own embedding_bag backward, then the optimizer's textbook formula applied in
float64 to the rows the batch touched (written here independently of recembed's rules),
or the matching torch optimizer where one exists.
"""

from __future__ import annotations

import math

import pytest
import torch

import recembed as rec

OPTIMIZERS = ["sgd", "adagrad", "rowwise_adagrad", "adam", "rowwise_adam", "lamb"]
BACKENDS = ["cpu", "torch"]


def _configs(optimizer: str | None, weight_decay: float = 0.0, init=None, with_max: bool = True):
    """Tables of dims 16, 7, 1 and 3: SUM (shared by two features), MEAN with padding, two MAX."""
    spec = [
        ("t_sum", 20, 16, ["a", "b"], "sum", None),
        ("t_mean", 15, 7, ["c"], "mean", 0),
        ("t_max", 12, 1, ["d"], "max", None),
        ("t_max3", 12, 3, ["e"], "max", None),
    ]
    out = []
    for name, rows, dim, feats, pool, pad in spec[: None if with_max else 2]:
        out.append(rec.EmbeddingBagConfig(
            name=name, num_embeddings=rows, embedding_dim=dim, feature_names=feats, pooling=pool,
            padding_idx=pad, optimizer=optimizer, lr=0.05, weight_decay=weight_decay, eps=1e-6,
            betas=(0.8, 0.95), init="normal" if init is None else init[name],
        ))
    return out


def _batch(step: int, weighted: bool) -> rec.KeyedJaggedTensor:
    g = torch.Generator().manual_seed(100 + step)
    lists = {}
    keys = (("a", 20), ("b", 20), ("c", 15)) + ((("d", 12), ("e", 12)) if not weighted else ())
    for key, rows in keys:
        bags = []
        for b in range(6):
            n = int(torch.randint(0, 5, (1,), generator=g))  # empty bags happen
            bags.append(torch.randint(0, rows, (n,), generator=g).tolist())
        bags[0] = bags[0] + bags[0][:1] * 2  # duplicates inside a bag
        lists[key] = bags
    weights = None
    if weighted:  # per-sample weights need SUM or MEAN pooling, so the MAX tables sit out
        weights = {k: [[0.5 + 0.1 * i for i in range(len(bag))] for bag in bags] for k, bags in lists.items()}
    return rec.KeyedJaggedTensor.from_lists(lists, weights)


def _touched(config: rec.EmbeddingBagConfig, kjt: rec.KeyedJaggedTensor, grad: torch.Tensor) -> torch.Tensor:
    if config.pooling is rec.PoolingType.MAX:
        return torch.nonzero(grad.abs().sum(1) > 0).flatten()  # the rows that won an element
    ids = torch.cat([kjt[f].values() for f in config.feature_names])
    if config.padding_idx is not None:
        ids = ids[ids != config.padding_idx]
    return torch.unique(ids)


def _reference_update(name, w, g, state, touched, opt, lr, wd, eps, b1, b2, step):
    """Textbook sparse update in float64 on the touched rows."""
    w64, g64 = w.double(), g.double()
    rows = touched
    wr, gr = w64[rows], g64[rows]
    if opt != "lamb":
        gr = gr + wd * wr
    if opt == "sgd":
        wr = wr - lr * gr
    elif opt == "adagrad":
        s = state.setdefault("s", torch.zeros_like(w64))
        s[rows] += gr**2
        wr = wr - lr * gr / (s[rows].sqrt() + eps)
    elif opt == "rowwise_adagrad":
        s = state.setdefault("s", torch.zeros(w.shape[0], dtype=torch.float64))
        s[rows] += (gr**2).mean(1)
        wr = wr - lr * gr / (s[rows].sqrt() + eps).unsqueeze(1)
    elif opt in ("adam", "rowwise_adam", "lamb"):
        m = state.setdefault("m", torch.zeros_like(w64))
        m[rows] = b1 * m[rows] + (1 - b1) * gr
        if opt == "rowwise_adam":
            v = state.setdefault("v", torch.zeros(w.shape[0], dtype=torch.float64))
            v[rows] = b2 * v[rows] + (1 - b2) * (gr**2).mean(1)
            vr = v[rows].unsqueeze(1)
        else:
            v = state.setdefault("v", torch.zeros_like(w64))
            v[rows] = b2 * v[rows] + (1 - b2) * gr**2
            vr = v[rows]
        bc1, bc2 = 1 - b1**step, 1 - b2**step
        if opt == "adam":  # torch.optim.SparseAdam's form
            wr = wr - lr * math.sqrt(bc2) / bc1 * m[rows] / (vr.sqrt() + eps)
        elif opt == "rowwise_adam":
            wr = wr - lr * (m[rows] / bc1) / ((vr / bc2).sqrt() + eps)
        else:
            u = (m[rows] / bc1) / ((vr / bc2).sqrt() + eps) + wd * wr
            trust = wr.norm(dim=1) / u.norm(dim=1)
            wr = wr - lr * trust.unsqueeze(1) * u
    out = w64.clone()
    out[rows] = wr
    return out.float()


def _run(optimizer: str, backend: str, weighted: bool, weight_decay: float, steps: int = 3):
    torch.manual_seed(0)
    fused = rec.EmbeddingBagCollection(_configs(optimizer, weight_decay, with_max=not weighted))
    fused.fused.backend = backend
    init = {n: m.weight.detach().clone() for n, m in fused.embedding_bags.items()}
    plain = rec.EmbeddingBagCollection(_configs(None, init=init, with_max=not weighted))
    states: dict[str, dict] = {n: {} for n in init}
    for step in range(1, steps + 1):
        kjt = _batch(step, weighted)
        upstream = torch.randn(6, 16 * 2 + 7 + (0 if weighted else 1 + 3), generator=torch.Generator().manual_seed(step))
        (fused(kjt).values() * upstream).sum().backward()
        for p in plain.parameters():
            p.grad = None
        (plain(kjt).values() * upstream).sum().backward()
        with torch.no_grad():
            for cfg in _configs(optimizer, weight_decay, with_max=not weighted):
                w = plain.embedding_bags[cfg.name].weight
                new = _reference_update(cfg.name, w, w.grad, states[cfg.name], _touched(cfg, kjt, w.grad),
                                        optimizer, 0.05, weight_decay, 1e-6, 0.8, 0.95, step)
                w.copy_(new)
    return fused, plain


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("weighted,weight_decay", [(False, 0.0), (True, 0.01)])
def test_fused_matches_reference(optimizer, backend, weighted, weight_decay):
    fused, plain = _run(optimizer, backend, weighted, weight_decay)
    for name, module in plain.embedding_bags.items():
        torch.testing.assert_close(fused.embedding_bags[name].weight, module.weight.detach(), rtol=2e-5, atol=2e-6,
                                   msg=lambda m: f"table {name}: {m}")
    # The padding row never moves.
    assert torch.all(fused.embedding_bags["t_mean"].weight[0] == 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "optimizer,torch_optimizer",
    [
        ("sgd", lambda p: torch.optim.SGD(p, lr=0.05)),
        ("adagrad", lambda p: torch.optim.Adagrad(p, lr=0.05, eps=1e-6)),
        ("adam", lambda p: torch.optim.SparseAdam(p, lr=0.05, betas=(0.8, 0.95), eps=1e-6)),
    ],
)
def test_fused_matches_torch_optimizers(optimizer, torch_optimizer, backend):
    """nn.EmbeddingBag(sparse=True) + the torch optimizer, with duplicates and empty bags."""
    torch.manual_seed(1)
    cfg = rec.EmbeddingBagConfig(name="t", num_embeddings=30, embedding_dim=5, feature_names=["f"], pooling="sum",
                                 optimizer=optimizer, lr=0.05, eps=1e-6, betas=(0.8, 0.95), init="normal")
    fused = rec.EmbeddingBagCollection([cfg])
    fused.fused.backend = backend
    ref = torch.nn.EmbeddingBag.from_pretrained(fused.embedding_bags["t"].weight.detach().clone(), freeze=False,
                                                mode="sum", sparse=True)
    opt = torch_optimizer(ref.parameters())
    for step in range(4):
        kjt = rec.KeyedJaggedTensor.from_lists({"f": [[1, 1, 2], [], [3, 29, 1], [step]]})
        upstream = torch.randn(4, 5, generator=torch.Generator().manual_seed(step))
        (fused(kjt).values() * upstream).sum().backward()
        opt.zero_grad()
        out = ref(kjt.values(), kjt.offsets()[:-1])
        (out * upstream).sum().backward()
        opt.step()
    torch.testing.assert_close(fused.embedding_bags["t"].weight, ref.weight.detach(), rtol=1e-5, atol=1e-6)
