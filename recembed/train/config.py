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
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from recembed.errors import ConfigError

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
    threads: int = 0                     # torch/numba threads; 0 = cores - 1 (the loader gets one), 1..4
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
        _merge(config, values, "", where)
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
                    "train.log_every", "train.keep_checkpoints", "eval.batch_size", "model.num_negatives",
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


# ---------------------------------------------------------------------------------------------
# reading values: from TOML (typed) and from the command line (text)

def _fields(obj: object) -> dict[str, Any]:
    """Field name -> resolved type annotation of a config dataclass."""
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in dataclasses.fields(obj)}


def _unknown(key: str, section: str, valid: Iterable[str], where: str) -> ConfigError:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    label = f"[{section}]" if section else "the top level (sections)"
    return ConfigError(f"{where}: unknown key {key!r} in {label}{hint}; valid keys of {label}: {', '.join(valid)}")


def _convert(value: Any, kind: Any, key: str, where: str) -> Any:
    """``value`` as the field type ``kind``, or ConfigError naming the key and what is allowed."""
    origin = typing.get_origin(kind)
    if origin is list:
        (item_kind,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} = {value!r} must be a list")
        return [_convert(v, item_kind, f"{key}[{i}]", where) for i, v in enumerate(value)]
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        dict: isinstance(value, dict),
    }[kind]
    if not ok:
        raise ConfigError(f"{where}: {key} = {value!r} has type {type(value).__name__}; expected {kind.__name__}")
    return float(value) if kind is float else value


def _merge(target: object, values: Mapping[str, Any], prefix: str, where: str) -> None:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: [{prefix}] must be a table of keys, got {values!r}")
    fields = _fields(target)
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            raise _unknown(key, prefix, fields, where)
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, path, where)
        else:
            setattr(target, key, _convert(value, fields[key], path, where))


def _parse_text(text: str, kind: Any, key: str) -> Any:
    """A command-line value read with the field's type."""
    where = "command line"
    if typing.get_origin(kind) is list:
        stripped = text.strip()
        if stripped.startswith("["):
            return _convert(_toml_value(stripped, key), kind, key, where)
        (item_kind,) = typing.get_args(kind)
        parts = [p.strip() for p in stripped.split(",") if p.strip()]
        return [_parse_text(p, item_kind, f"{key}[{i}]") for i, p in enumerate(parts)]
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ConfigError(f"{where}: --{key} {text!r}; expected true or false")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"{where}: --{key} {text!r}; expected {kind.__name__}") from None
    if kind is dict:
        return _convert(_toml_value(text, key), dict, key, where)
    return text


def _toml_value(text: str, key: str) -> Any:
    toml = _toml_module()
    try:
        return toml.loads(f"value = {text}")["value"]
    except toml.TOMLDecodeError as exc:
        raise ConfigError(f"command line: --{key} {text!r} is not a valid TOML value ({exc})") from None


def _toml_module():
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10 uses the tomli backport
        import tomli as tomllib
    return tomllib


def get_key(config: RunConfig, key: str) -> Any:
    """The value at a dotted key such as ``"train.epochs"``."""
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def apply_overrides(config: RunConfig, overrides: Iterable[tuple[str, str]]) -> None:
    """Set ``("section.key", "text")`` pairs, each read with the key's type, then re-check.

    Raises:
        ConfigError: an unknown section or key (the message lists the valid ones), a key
            that names a whole section, or a value that does not parse.
    """
    for dotted, text in overrides:
        parts = dotted.split(".")
        target: Any = config
        for depth, part in enumerate(parts):
            fields = _fields(target)
            section = ".".join(parts[:depth])
            if part not in fields:
                raise _unknown(part, section, fields, "command line")
            current = getattr(target, part)
            if depth == len(parts) - 1:
                if dataclasses.is_dataclass(current):
                    example = next(iter(_fields(current)))
                    raise ConfigError(f"command line: --{dotted} names a section; set one of its keys, "
                                      f"e.g. --{dotted}.{example}")
                setattr(target, part, _parse_text(text, fields[part], dotted))
            elif not dataclasses.is_dataclass(current):
                raise ConfigError(f"command line: --{dotted}: {'.'.join(parts[:depth + 1])} is a value, not a section")
            target = current
    config.resolve()


def parse_override_args(args: list[str]) -> list[tuple[str, str]]:
    """``["--train.epochs", "3", "--eval.ks=5,10"]`` -> ``[("train.epochs", "3"), ("eval.ks", "5,10")]``."""
    pairs, i = [], 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or "." not in token.split("=", 1)[0]:
            raise ConfigError(f"command line: unexpected argument {token!r}; config overrides look like "
                              "--section.key value (e.g. --train.epochs 3)")
        name = token[2:]
        if "=" in name:
            name, text = name.split("=", 1)
            i += 1
        elif i + 1 < len(args):
            text = args[i + 1]
            i += 2
        else:
            raise ConfigError(f"command line: {token} needs a value")
        pairs.append((name, text))
    return pairs


def load_config(path: str | os.PathLike, overrides: Iterable[tuple[str, str]] = ()) -> RunConfig:
    """Read a TOML run config, apply command-line overrides, fill defaults and check it all.

    ``train.out_dir`` defaults to ``runs/<file name without suffix>``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" if not path.exists() else f"{path} is not a file")
    toml = _toml_module()
    try:
        values = toml.loads(path.read_text(encoding="utf-8"))
    except toml.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    config = RunConfig()
    _merge(config, values, "", str(path))
    if not config.train.out_dir:
        config.train.out_dir = str(Path("runs") / path.stem)
    apply_overrides(config, overrides)  # also resolves and checks
    return config
