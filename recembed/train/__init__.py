"""Training support: metrics, checkpoints, history, early stopping, progress, plots, logging.

Optional dependencies (tqdm, matplotlib, tensorboard) are imported only when used.
"""

from recembed.train.checkpoint import (
    CheckpointManager,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from recembed.train.early_stopping import EarlyStopping
from recembed.train.history import History
from recembed.train.metrics import MetricAccumulator, auc, log_loss, mae, rmse
from recembed.train.plots import plot_history

# Only the class: a function named `progress` here would hide the submodule of that name.
from recembed.train.progress import ProgressBar
from recembed.train.ranking import (
    RankingScore,
    hit_rate_at_k,
    ndcg_at_k,
    rank_topk,
    ranking_metrics,
    recall_at_k,
)
from recembed.train.tensorboard import TensorBoardLogger

__all__ = [
    "CheckpointManager",
    "EarlyStopping",
    "History",
    "MetricAccumulator",
    "ProgressBar",
    "RankingScore",
    "TensorBoardLogger",
    "auc",
    "hit_rate_at_k",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "log_loss",
    "mae",
    "ndcg_at_k",
    "plot_history",
    "rank_topk",
    "ranking_metrics",
    "recall_at_k",
    "rmse",
    "save_checkpoint",
]

# The training run (config, loop, export) is loaded on first use: it pulls in the data and
# model layers, which the utilities above do not need.
_RUN_NAMES = {
    "RunConfig": "recembed.train.config",
    "load_config": "recembed.train.config",
    "Trainer": "recembed.train.loop",
    "FitResult": "recembed.train.loop",
    "evaluate_checkpoint": "recembed.train.loop",
    "fit_run": "recembed.train.distributed_run",
    "DistributedTrainer": "recembed.train.distributed_run",
    "export_embeddings": "recembed.train.export",
}
__all__ += list(_RUN_NAMES)


def __getattr__(name: str):
    if name in _RUN_NAMES:
        import importlib

        return getattr(importlib.import_module(_RUN_NAMES[name]), name)
    raise AttributeError(f"module 'recembed.train' has no attribute {name!r}")
