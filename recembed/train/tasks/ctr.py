"""Click-through-rate prediction: DLRM, DCNv2 or DeepFM trained with log loss; AUC and log loss."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from recembed.data import Batch
from recembed.errors import ConfigError
from recembed.models import DLRM, DCNv2, DeepFM, binary_cross_entropy_with_logits
from recembed.train.metrics import MetricAccumulator
from recembed.train.tasks.base import Projection, Task, pointwise_outputs, table_config
from recembed.train.tasks.sources import CTRData, load_ctr

__all__ = ["CTRTask", "build_ctr_model"]


def build_ctr_model(config, num_rows: dict[str, int], num_dense: int) -> nn.Module:
    """The ``[model]`` section's click model: one table ``t_<feature>`` per sparse feature."""
    m = config.model
    tables = [table_config(config, f"t_{name}", rows, name, pooling=m.pooling) for name, rows in num_rows.items()]
    common = {"activation": m.activation, "dropout": m.dropout, "embedding_optimizer": None}  # tables carry it
    if m.kind == "dlrm":
        if num_dense < 1:
            raise ConfigError("model.kind = 'dlrm' needs at least one dense feature; use 'dcnv2' or 'deepfm'")
        return DLRM(num_dense, tables, bottom_mlp=[*m.bottom_mlp, m.embedding_dim], top_mlp=[*m.top_mlp, 1],
                    interaction_sum=m.interaction_sum, **common)
    if m.kind == "dcnv2":
        return DCNv2(num_dense, tables, num_cross_layers=m.num_cross_layers, low_rank=m.low_rank or None,
                     deep_mlp=m.deep_mlp, structure=m.dcn_structure, **common)
    return DeepFM(num_dense, tables, deep_mlp=m.deep_mlp, **common)


class CTRTask(Task):
    """Predict clicks from dense and sparse features; metrics ``auc`` and ``log_loss``."""

    name = "ctr"

    def load_data(self) -> None:
        self.data: CTRData = load_ctr(self.config)
        self._train_source = self.data.train

    @property
    def num_train_samples(self) -> Optional[int]:
        return self.data.num_train

    def describe(self) -> str:
        d = self.data
        size = f"{d.num_train} training examples" if d.num_train is not None else "streamed training file"
        teacher = f"; teacher AUC on test {d.teacher_auc:.4f}" if d.teacher_auc is not None else ""
        return (f"ctr: {size}, {len(d.num_rows)} sparse features ({sum(d.num_rows.values())} rows), "
                f"{d.num_dense} dense{teacher}")

    def build_model(self) -> nn.Module:
        return build_ctr_model(self.config, self.data.num_rows, self.data.num_dense)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return binary_cross_entropy_with_logits(model(batch.dense, batch.sparse), batch.labels)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        source = self.data.val if split == "val" else self.data.test
        logits, labels = pointwise_outputs(source, lambda batch: model(batch.dense, batch.sparse))
        accumulator = MetricAccumulator(["auc", "log_loss"], from_logits=True)
        accumulator.update(logits, labels)
        return accumulator.compute()

    def reference_metrics(self) -> dict[str, float]:
        return {} if self.data.teacher_auc is None else {"teacher_auc": float(self.data.teacher_auc)}

    def feature_id_maps(self) -> dict[str, np.ndarray]:
        return dict(self.data.id_maps or {})

    def projection(self, model: nn.Module, max_rows: int = 5000) -> Optional[Projection]:
        """The largest table's first rows (for a built vocabulary: its most frequent ids)."""
        name = max(self.data.num_rows, key=self.data.num_rows.get)
        table = model.embeddings.embedding_bags[f"t_{name}"]
        rows = min(max_rows, table.num_embeddings)
        ids = (self.data.id_maps or {}).get(name)
        labels = [str(ids[r]) if ids is not None else f"#{r}" for r in range(rows)]
        return Projection(f"t_{name}", table.weight.detach()[:rows].float(), labels)
