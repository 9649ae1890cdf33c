"""What every task (rating, implicit top-K, click-through) gives the training loop.

A :class:`Task` owns the data of one run and knows its model, its loss and its metrics;
:class:`recembed.train.loop.Trainer` drives any of them the same way::

    task.load_data()
    model = task.build_model()
    for batch in task.train_batches(epoch):   # prepared in the loader thread
        task.loss(model, batch).backward()
    task.evaluate(model, "val")               # {"rmse": ...} / {"ndcg@10": ...} / {"auc": ...}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

import numpy as np
import torch
from torch import nn

from recembed.data import Batch
from recembed.errors import ConfigError
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig
from recembed.train.config import RunConfig

__all__ = ["Task", "Projection", "MappedBatches", "id_kjt", "table_id_maps", "checkpoint_ids", "table_config",
           "pointwise_outputs"]


@dataclass
class Projection:
    """Rows to show in TensorBoard's embedding projector: ``matrix (N, D)``, one label row each."""

    tag: str
    matrix: torch.Tensor
    labels: list
    header: Optional[list[str]] = None


class MappedBatches:
    """A re-iterable batch source with ``fn`` applied to every batch (in the iterating thread).

    ``len()`` and ``set_epoch()`` pass through to the source.
    """

    def __init__(self, source: Any, fn: Callable[[Batch], Batch]) -> None:
        self.source, self.fn = source, fn

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[Batch]:
        return map(self.fn, iter(self.source))


def id_kjt(columns: Mapping[str, torch.Tensor]) -> KeyedJaggedTensor:
    """A KeyedJaggedTensor with one id per row for each ``name: (B,) ids`` column."""
    names = list(columns)
    batch = int(next(iter(columns.values())).shape[0])
    values = torch.cat([columns[n].to(torch.int64) for n in names])
    return KeyedJaggedTensor.from_lengths_sync(names, values, torch.ones(len(names) * batch, dtype=torch.int64),
                                               stride=batch)


def table_id_maps(model: nn.Module, feature_ids: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw id of each row, per table of ``model``, from the raw ids of each feature.

    A table serving several features takes its first feature's map; tables whose feature
    has no map (hashed ids) are left out.
    """
    maps = {}
    for module in model.modules():
        if isinstance(module, EmbeddingBagCollection):
            for cfg in module.embedding_bag_configs():
                ids = feature_ids.get(cfg.feature_names[0])
                if ids is not None and len(ids) == cfg.num_embeddings:
                    maps[cfg.name] = ids
    return maps


def checkpoint_ids(ids: np.ndarray) -> Any:
    """Raw ids in a form a checkpoint holds: an int64 tensor, or a list of strings."""
    ids = np.asarray(ids)
    if np.issubdtype(ids.dtype, np.integer):
        return torch.from_numpy(ids.astype(np.int64))
    return [str(v) for v in ids.tolist()]


class Task:
    """One kind of learning problem; subclasses fill in the data, model, loss and metrics.

    Attributes:
        config: the resolved run config.
        name: ``"rating"``, ``"implicit"`` or ``"ctr"``.
    """

    name = ""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self._train_source: Any = None

    # ---- data ----------------------------------------------------------------------------
    def load_data(self) -> None:
        """Read or generate the data and split it (sets the training batch source)."""
        raise NotImplementedError

    @property
    def num_train_samples(self) -> Optional[int]:
        """Training examples per epoch, or None when unknown (a streamed file)."""
        return None

    def train_batches(self, epoch: int) -> Iterable[Batch]:
        """Epoch ``epoch``'s training batches, in the order fixed by ``(train.seed, epoch)``."""
        self._train_source.set_epoch(epoch)
        self.start_epoch(epoch)
        return MappedBatches(self._train_source, self.prepare_batch)

    def start_epoch(self, epoch: int) -> None:
        """Reset per-epoch randomness (e.g. the negative sampler) from ``(train.seed, epoch)``."""

    def prepare_batch(self, batch: Batch) -> Batch:
        """Work done on each batch in the loader thread, ahead of the model (e.g. sampling)."""
        return batch

    def describe(self) -> str:
        """A one-line summary of the data, for the log."""
        return self.name

    # ---- model ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The training loss of one batch (a scalar); its backward also updates fused tables."""
        raise NotImplementedError

    # ---- evaluation ----------------------------------------------------------------------
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Metrics of ``model`` on ``split`` (``"val"`` or ``"test"``)."""
        raise NotImplementedError

    def reference_metrics(self) -> dict[str, float]:
        """Known ceilings or floors to print beside the results (e.g. the teacher's AUC)."""
        return {}

    def feature_id_maps(self) -> dict[str, np.ndarray]:
        """Raw id of each row, per sparse feature, where the data knows it."""
        return {}

    def id_maps(self, model: nn.Module) -> dict[str, Any]:
        """Raw ids of each table's rows, in checkpoint form (see :func:`checkpoint_ids`)."""
        return {name: checkpoint_ids(ids) for name, ids in table_id_maps(model, self.feature_id_maps()).items()}

    def projection(self, model: nn.Module, max_rows: int = 5000) -> Optional[Projection]:
        """Item (or largest-table) embeddings with labels, for TensorBoard's projector."""
        return None


def pointwise_outputs(
    batches: Iterable[Batch], score: Callable[[Batch], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores (N,), labels (N,))`` over every batch, computed without gradients."""
    scores, labels = [], []
    with torch.no_grad():
        for batch in batches:
            scores.append(score(batch).detach().float().reshape(-1))
            labels.append(batch.labels.float())
    if not scores:
        return torch.zeros(0), torch.zeros(0)
    return torch.cat(scores), torch.cat(labels)


def table_config(config: RunConfig, name: str, num_rows: int, feature: str, *, pooling: str = "sum",
                 dim: Optional[int] = None):
    """An :class:`~recembed.tables.EmbeddingBagConfig` carrying the ``[model]`` section's fused
    optimizer settings (``embedding_optimizer``, ``embedding_lr``, ``embedding_weight_decay``, ``init``)."""
    m = config.model
    fused = m.embedding_optimizer != "none"
    if not fused and m.embedding_weight_decay:
        raise ConfigError("model.embedding_weight_decay is applied by the fused embedding optimizer; with "
                          "model.embedding_optimizer = 'none' use train.dense_weight_decay instead")
    options: dict[str, Any] = {"init": m.init} if m.init else {}
    if fused:
        options.update(optimizer=m.embedding_optimizer, lr=m.embedding_lr, weight_decay=m.embedding_weight_decay)
    return EmbeddingBagConfig(name=name, num_embeddings=num_rows, embedding_dim=dim or m.embedding_dim,
                              feature_names=[feature], pooling=pooling, **options)
