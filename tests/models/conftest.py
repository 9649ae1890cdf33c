"""Shared fixtures for the model tests: the fused-optimizer switch, AUC, a synthetic click task."""

from __future__ import annotations

import functools

import numba
import pytest
import torch

from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig


@pytest.fixture(autouse=True)
def single_thread():
    """Run each test on one thread: the tensors here are tiny, and on a shared 2-core machine
    OpenMP/numba worker threads spinning for work slowed a training step ~10-20x."""
    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(torch_threads)
    numba.set_num_threads(numba_threads)


@functools.lru_cache(maxsize=1)
def fused_available() -> bool:
    """True once recembed.tables.fused_group can build a collection with a fused optimizer."""
    try:
        EmbeddingBagCollection(
            [EmbeddingBagConfig(name="probe", num_embeddings=2, embedding_dim=1, optimizer="sgd")]
        )
    except NotImplementedError:
        return False
    return True


@pytest.fixture(params=[None, "rowwise_adagrad"], ids=["autograd", "fused"])
def embedding_optimizer(request):
    """Each model test runs with plain autograd tables and with fused row-wise Adagrad."""
    if request.param is not None and not fused_available():
        pytest.skip("fused optimizers not implemented yet (recembed.tables.fused_group raises NotImplementedError)")
    return request.param


@pytest.fixture
def fused_optimizer():
    """A fused optimizer name, or skip while the fused path is not implemented."""
    if not fused_available():
        pytest.skip("fused optimizers not implemented yet (recembed.tables.fused_group raises NotImplementedError)")
    return "rowwise_adagrad"


def rank_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties given their average rank."""
    scores = scores.detach().double().reshape(-1)
    labels = labels.reshape(-1).bool()
    order = torch.argsort(scores)
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    for value in torch.unique(scores):  # average ranks over ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class ClickTask:
    """Synthetic clicks that need a feature cross: p(click) = sigmoid(3 a[ad] s[site] + dense . w).

    ``ad`` (40 ids) and ``site`` (12 ids) have hidden +-1 factors, so the sign of their
    product, not either feature alone, drives the click; 3 dense features add a linear
    signal. Seeded, so every model sees the same data.
    """

    num_ads, num_sites, num_dense = 40, 12, 3

    def __init__(self, num_samples: int = 3000, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        ad_factor = torch.randint(0, 2, (self.num_ads,), generator=g).float() * 2 - 1
        site_factor = torch.randint(0, 2, (self.num_sites,), generator=g).float() * 2 - 1
        self.ads = torch.randint(0, self.num_ads, (num_samples,), generator=g)
        self.sites = torch.randint(0, self.num_sites, (num_samples,), generator=g)
        self.dense = torch.randn(num_samples, self.num_dense, generator=g)
        logit = 3.0 * ad_factor[self.ads] * site_factor[self.sites] + self.dense @ torch.tensor([1.0, -0.5, 0.0])
        self.labels = torch.bernoulli(torch.sigmoid(logit), generator=g)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, KeyedJaggedTensor, torch.Tensor]:
        n = len(index)
        sparse = KeyedJaggedTensor(
            keys=["ad", "site"],
            values=torch.cat([self.ads[index], self.sites[index]]),
            lengths=torch.ones(2 * n, dtype=torch.int64),
        )
        return self.dense[index], sparse, self.labels[index]

    def tables(self, dims: tuple[int, int]) -> list[EmbeddingBagConfig]:
        return [
            EmbeddingBagConfig(name="t_ad", num_embeddings=self.num_ads, embedding_dim=dims[0], feature_names=["ad"]),
            EmbeddingBagConfig(name="t_site", num_embeddings=self.num_sites, embedding_dim=dims[1], feature_names=["site"]),
        ]


@pytest.fixture(scope="session")
def click_task() -> ClickTask:
    return ClickTask()


def train_click_model_auc(model: torch.nn.Module, task: ClickTask, epochs: int = 3, lr: float = 0.01) -> float:
    """Train ``model(dense, sparse) -> logits`` on the first 2/3 of the task; return held-out AUC."""
    from recembed.models import binary_cross_entropy_with_logits, dense_parameters

    n = len(task.labels)
    train, test = torch.arange(0, 2 * n // 3), torch.arange(2 * n // 3, n)
    opt = torch.optim.Adam(dense_parameters(model), lr=lr)
    g = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(epochs):
        for index in train[torch.randperm(len(train), generator=g)].split(64):
            dense, sparse, labels = task.batch(index)
            loss = binary_cross_entropy_with_logits(model(dense, sparse), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        dense, sparse, labels = task.batch(test)
        return rank_auc(model(dense, sparse), labels)


@pytest.fixture
def train_click_model():
    return train_click_model_auc
