"""Run configuration: the TOML file's sections as typed dataclasses, overridable key by key.

A run is described by four sections, ``[data]``, ``[model]``, ``[train]`` and ``[eval]``
(``[data]`` has sub-tables ``[data.synthetic]``, ``[data.criteo]`` and ``[data.spec]``).
Every key has a default, so a file only names what it changes. Any key can be overridden
from the command line as ``--section.key value``; the value is read with the type of the
default (``--train.epochs 3`` is an int, ``--eval.ks 5,10`` a list of ints). A key that
does not exist, in the file or on the command line, raises :class:`ConfigError` listing
the keys that do.

Example:
    >>> config = RunConfig.from_dict({"train": {"task": "rating", "epochs": 3}})
    >>> apply_overrides(config, [("model.embedding_dim", "16")])
    >>> config.model.embedding_dim, config.train.epochs
    (16, 3)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from recembed.errors import ConfigError
from recembed.train.config_parsing import (  # re-exported: they were defined here
    apply_overrides,
    get_key,
    merge_values,
    parse_override_args,
    toml_module,
)

__all__ = [
    "RunConfig", "DataConfig", "SyntheticConfig", "CriteoConfig", "SpecConfig", "ModelConfig",
    "TrainConfig", "EvalConfig", "load_config", "apply_overrides", "parse_override_args",
    "TASKS", "TASK_MODELS", "TASK_LOSSES",
]

TASKS = ("rating", "implicit", "ctr")
SOURCES = ("synthetic", "movielens", "criteo", "csv", "parquet")
#: Model kinds each task can train; the first is the default.
TASK_MODELS = {"rating": ("dot_product",), "implicit": ("dot_product", "two_tower"),
               "ctr": ("dlrm", "dcnv2", "deepfm")}
#: Losses each (task, model) can use; the first is the default.
TASK_LOSSES = {("rating", "dot_product"): ("mse",),
               ("implicit", "dot_product"): ("bpr", "sampled_softmax"),
               ("implicit", "two_tower"): ("in_batch_softmax",),
               **{("ctr", kind): ("bce",) for kind in TASK_MODELS["ctr"]}}
#: Metric that early stopping and best-model selection watch, per task (implicit: at the first K).
DEFAULT_METRIC = {"rating": "rmse", "implicit": "ndcg@10", "ctr": "auc"}


def metric_names(task: str, ks: Iterable[int]) -> list[str]:
    """The metrics a task's evaluation reports."""
    if task == "implicit":
        return [f"{name}@{k}" for k in ks for name in ("recall", "ndcg", "hit_rate")]
    return ["rmse", "mae"] if task == "rating" else ["auc", "log_loss"]


_CHOICES = {
    "data.source": SOURCES, "data.split": ("random", "leave_last_out"), "data.on_error": ("raise", "skip"),
    "data.criteo.vocab": ("hash", "build"), "data.spec.label_kind": ("", "binary", "rating"),
    "model.pooling": ("sum", "mean"), "model.negative_sampling": ("uniform", "popularity"),
    "model.dcn_structure": ("stacked", "parallel"),
    "model.embedding_optimizer": ("none", "sgd", "adagrad", "rowwise_adagrad", "adam", "rowwise_adam", "lamb"),
    "train.task": TASKS, "train.dense_optimizer": ("adam", "adamw", "adagrad", "sgd"),
    "train.progress": ("auto", "tqdm", "plain", "none"),
}


@dataclass
class SyntheticConfig:
    """Sizes of the generated data (``data.source = "synthetic"``)."""

    seed: int = 0
    num_users: int = 943                 # rating / implicit
    num_items: int = 1682
    num_ratings: int = 100_000           # rating
    rank: int = 8                        # rating / implicit: rank of the hidden factors
    noise: float = 0.5                   # rating: std of the rating noise
    interactions_per_user: float = 20.0  # implicit
    temperature: float = 0.5             # implicit: lower = users follow their scores more closely
    num_samples: int = 200_000           # ctr
    num_sparse: int = 26
    num_dense: int = 13
    max_cardinality: int = 20_000        # ctr: cardinalities spread log-uniformly from 4 to this
    multi_hot: list[int] = field(default_factory=list)  # ctr: indices of multi-hot features


@dataclass
class CriteoConfig:
    """How a Criteo-format TSV is encoded (``data.source = "criteo"``)."""

    vocab: str = "hash"
    num_buckets: int = 100_000
    min_count: int = 1
    hash_seed: int = 0
    num_dense: int = 13
    num_categorical: int = 26


@dataclass
class SpecConfig:
    """The feature spec of a CSV/Parquet file (``data.source = "csv"`` or ``"parquet"``).

    ``sparse`` entries are tables such as ``{name = "genres", separator = "|"}`` with the
    keys of :class:`recembed.data.SparseFeature`; ``dense`` entries take those of
    :class:`recembed.data.DenseFeature`.
    """

    sparse: list[dict] = field(default_factory=list)
    dense: list[dict] = field(default_factory=list)
    label: str = "label"
    label_kind: str = ""                 # "" = from the task (rating for rating, else binary)
    timestamp: str = ""
    user: str = "user"                   # rating / implicit: the sparse feature naming the user
    item: str = "item"
    delimiter: str = ""
    header: bool = True


@dataclass
class DataConfig:
    source: str = "synthetic"
    path: str = ""
    test_path: str = ""                  # criteo/csv/parquet: a separate test file (else split `path`)
    split: str = "random"                # rating/implicit: random or leave_last_out (by timestamp)
    test_fraction: float = 0.2
    val_fraction: float = 0.1            # of the training part, for per-epoch evaluation; 0 = use test
    seed: int = 0                        # split seed
    on_error: str = "raise"              # malformed lines: raise, or skip (counted in a warning)
    min_rating: float = 0.0              # implicit from ratings: keep events rated at least this
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    criteo: CriteoConfig = field(default_factory=CriteoConfig)
    spec: SpecConfig = field(default_factory=SpecConfig)


@dataclass
class ModelConfig:
    kind: str = ""                       # "" = the task's default (see TASK_MODELS)
    embedding_dim: int = 32
    embedding_optimizer: str = "rowwise_adagrad"  # fused into backward; "none" = dense optimizer
    embedding_lr: float = 0.05
    embedding_weight_decay: float = 0.0
    init: str = ""                       # "" = the model's default initialiser
    pooling: str = "mean"                # ctr: pooling of multi-hot bags
    use_biases: bool = True              # dot_product
    loss: str = ""                       # "" = the first of TASK_LOSSES
    num_negatives: int = 1               # bpr / sampled_softmax: negatives per positive
    negative_sampling: str = "uniform"   # or popularity (count ** 0.75)
    logq_correction: bool = True         # sampled_softmax / in_batch_softmax
    temperature: float = 0.05            # two_tower
    normalize: bool = True               # two_tower
    tower_dims: list[int] = field(default_factory=lambda: [64, 32])
    bottom_mlp: list[int] = field(default_factory=lambda: [64])  # dlrm: hidden widths; output = embedding_dim
    top_mlp: list[int] = field(default_factory=lambda: [64, 32])  # dlrm: hidden widths; output = 1 logit
    interaction_sum: bool = False        # dlrm: add the learned-scale sum of the pair dots to the logit
    deep_mlp: list[int] = field(default_factory=lambda: [128, 64])  # dcnv2 / deepfm
    num_cross_layers: int = 2
    low_rank: int = 0                    # dcnv2: 0 = full-rank cross layers
    dcn_structure: str = "stacked"
    activation: str = "relu"
    dropout: float = 0.0


@dataclass
class TrainConfig:
    task: str = "rating"
    epochs: int = 10
    batch_size: int = 1024
    seed: int = 0                        # model initialisation, data order, negative samples
    dense_optimizer: str = "adam"        # trains everything the fused optimizer does not
    dense_lr: float = 1e-3
    dense_weight_decay: float = 0.0
    lr_decay: float = 1.0                # every learning rate is multiplied by this after each epoch
    threads: int = 0                     # torch/numba threads (per rank); 0 = cores - 1 (1 process), cores // nproc
    nproc: int = 1                       # ranks training together (gloo processes on this machine); 1 = no sharding
    collective_timeout: float = 300.0    # seconds a rank waits for the others (then fails instead of hanging)
    prefetch_depth: int = 4              # batches prepared ahead by the loader thread
    progress: str = "auto"
    log_every: int = 50                  # steps between TensorBoard loss points
    out_dir: str = ""                    # "" = runs/<config file name>
    keep_checkpoints: int = 2
    early_stopping: bool = True
    patience: int = 2
    min_delta: float = 0.0
    restore_best: bool = True            # evaluate (and save) the best epoch, not the last
    drop_last: bool = False
    plot: bool = True                    # write curves.png (matplotlib)


@dataclass
class EvalConfig:
    metric: str = ""                     # "" = rmse (rating), ndcg@<first K> (implicit), auc (ctr)
    ks: list[int] = field(default_factory=lambda: [10, 20])
    batch_size: int = 8192
    clip_predictions: bool = True        # rating: clip predictions to the training ratings' range


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "config") -> "RunConfig":
        """A validated config from nested dicts (as read from TOML); defaults fill the rest."""
        config = cls()
        merge_values(config, values, "", where)
        config.resolve()
        return config

    def to_dict(self) -> dict:
        """Nested plain dicts (JSON- and checkpoint-safe)."""
        return dataclasses.asdict(self)

    def resolve(self) -> None:
        """Fill the task-dependent defaults and check every value; raises ConfigError."""
        for key, allowed in _CHOICES.items():
            value = get_key(self, key)
            if value not in allowed:
                raise ConfigError(f"{key} = {value!r} is not one of: {', '.join(map(repr, allowed))}")
        task = self.train.task
        kinds = TASK_MODELS[task]
        self.model.kind = self.model.kind or kinds[0]
        if self.model.kind not in kinds:
            raise ConfigError(f"model.kind = {self.model.kind!r} cannot be trained for train.task = {task!r}; "
                              f"choose one of: {', '.join(kinds)}")
        losses = TASK_LOSSES[(task, self.model.kind)]
        self.model.loss = self.model.loss or losses[0]
        if self.model.loss not in losses:
            raise ConfigError(f"model.loss = {self.model.loss!r} does not fit a {self.model.kind} model for "
                              f"task {task!r}; choose one of: {', '.join(losses)}")
        if not self.eval.ks:
            raise ConfigError("eval.ks is empty; give at least one cut-off, e.g. [10]")
        self.eval.metric = self.eval.metric or DEFAULT_METRIC[task].replace("@10", f"@{self.eval.ks[0]}")
        metrics = metric_names(task, self.eval.ks)
        if self.eval.metric not in metrics:
            raise ConfigError(f"eval.metric = {self.eval.metric!r} is not computed for task {task!r}; "
                              f"choose one of: {', '.join(metrics)}")
        if self.data.source == "criteo" and task != "ctr":
            raise ConfigError(f"data.source = 'criteo' holds click logs; it needs train.task = 'ctr', not {task!r}")
        if self.data.source == "movielens" and task == "ctr":
            raise ConfigError("data.source = 'movielens' holds ratings; use train.task = 'rating' or 'implicit'")
        self._check_ranges()

    def _check_ranges(self) -> None:
        positive = ["model.embedding_dim", "train.epochs", "train.batch_size", "train.prefetch_depth",
                    "train.log_every", "train.keep_checkpoints", "train.nproc", "eval.batch_size",
                    "model.num_negatives",
                    "data.synthetic.num_users", "data.synthetic.num_items", "data.synthetic.num_ratings",
                    "data.synthetic.rank", "data.synthetic.num_samples", "data.synthetic.max_cardinality",
                    "data.criteo.num_buckets"]
        for key in positive:
            if get_key(self, key) < 1:
                raise ConfigError(f"{key} = {get_key(self, key)!r}; it must be >= 1")
        non_negative = ["model.embedding_lr", "model.embedding_weight_decay", "train.dense_lr",
                        "train.dense_weight_decay", "train.threads", "train.patience", "train.min_delta",
                        "model.dropout", "model.low_rank", "data.val_fraction", "data.synthetic.noise"]
        for key in non_negative:
            if get_key(self, key) < 0:
                raise ConfigError(f"{key} = {get_key(self, key)!r}; it must be >= 0")
        if not 0.0 < self.data.test_fraction < 1.0 or not 0.0 <= self.data.val_fraction < 1.0:
            raise ConfigError(f"data.test_fraction = {self.data.test_fraction} must lie in (0, 1) and "
                              f"data.val_fraction = {self.data.val_fraction} in [0, 1)")
        if self.train.collective_timeout <= 0:
            raise ConfigError(f"train.collective_timeout = {self.train.collective_timeout}; it must be > 0 seconds")
        if self.train.nproc > self.train.batch_size:
            raise ConfigError(f"train.nproc = {self.train.nproc} is more than train.batch_size = "
                              f"{self.train.batch_size}; every rank trains on its part of each batch, so use "
                              f"at most {self.train.batch_size} ranks (or a larger batch)")
        if not 0.0 < self.train.lr_decay <= 1.0:
            raise ConfigError(f"train.lr_decay = {self.train.lr_decay}; it must lie in (0, 1]")
        for key in ("eval.ks", "model.tower_dims", "model.bottom_mlp", "model.top_mlp", "model.deep_mlp"):
            if any(v < 1 for v in get_key(self, key)):
                raise ConfigError(f"{key} = {get_key(self, key)!r}; every entry must be >= 1")
        if self.data.source != "synthetic" and not self.data.path:
            raise ConfigError(f"data.source = {self.data.source!r} reads a file: set data.path "
                              "(or pass --data PATH)")
        if self.data.source == "synthetic" and self.data.path:
            raise ConfigError(f"data.path = {self.data.path!r} is set but data.source = 'synthetic' generates its "
                              f"data; set data.source to one of {', '.join(SOURCES[1:])} to read the file")


def load_config(path: str | os.PathLike, overrides: Iterable[tuple[str, str]] = ()) -> RunConfig:
    """Read a TOML run config, apply command-line overrides, fill defaults and check it all.

    ``train.out_dir`` defaults to ``runs/<file name without suffix>``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" if not path.exists() else f"{path} is not a file")
    toml = toml_module()
    try:
        values = toml.loads(path.read_text(encoding="utf-8"))
    except toml.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    config = RunConfig()
    merge_values(config, values, "", str(path))
    if not config.train.out_dir:
        config.train.out_dir = str(Path("runs") / path.stem)
    apply_overrides(config, overrides)  # also resolves and checks
    return config
