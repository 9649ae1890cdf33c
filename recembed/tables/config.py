"""Table configurations: what a table is, validated on construction.

``EmbeddingBagConfig`` describes a pooled table (one vector per bag of ids) and
``EmbeddingConfig`` an unpooled one (one vector per id, for sequence models). Both are
dataclasses with TorchRec's field names; every field is checked when the config is made,
so a bad value fails at the line that wrote it, not deep inside a forward pass.

Example:
    >>> cfg = EmbeddingBagConfig(name="t_user", num_embeddings=1000, embedding_dim=7,
    ...                          feature_names=["user"], pooling=PoolingType.MEAN)
"""

from __future__ import annotations

import enum
import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Protocol, Union

import torch

from recembed.errors import ConfigError

__all__ = [
    "PoolingType",
    "OptimizerType",
    "DataType",
    "InitSpec",
    "BaseEmbeddingConfig",
    "EmbeddingBagConfig",
    "EmbeddingConfig",
]


class PoolingType(str, enum.Enum):
    """How the vectors of one bag are combined."""

    SUM = "sum"
    MEAN = "mean"
    MAX = "max"
    NONE = "none"


class OptimizerType(str, enum.Enum):
    """Sparse optimizers that can be fused into the backward pass."""

    SGD = "sgd"
    ADAGRAD = "adagrad"
    ROWWISE_ADAGRAD = "rowwise_adagrad"
    ADAM = "adam"
    ROWWISE_ADAM = "rowwise_adam"
    LAMB = "lamb"


class DataType(str, enum.Enum):
    """Storage dtype of a table's weights."""

    FP32 = "float32"
    FP16 = "float16"
    BF16 = "bfloat16"

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[self.value]


class TableBuilder(Protocol):
    """What a ``compression`` spec provides: the module that replaces a plain table.

    The module exposes ``lookup(ids (N,), offsets (B + 1,), weights (N,) | None, feature) -> (B, dim)``
    (pooled, as :meth:`recembed.tables.EmbeddingBag.lookup`) for ``EmbeddingBagCollection``, and
    ``lookup_sequence(ids (N,), feature) -> (N, dim)`` for ``EmbeddingCollection``; it trains
    its own rows, fused or not, as the config says.
    """

    def build(self, config: "BaseEmbeddingConfig", device: torch.device | str | None) -> torch.nn.Module: ...


#: An initialiser: a name ("normal", "scaled_normal", "uniform", "xavier", "zeros"),
#: a callable that fills a (num_embeddings, dim) tensor in place, or a pretrained tensor.
InitSpec = Union[str, Callable[[torch.Tensor], None], torch.Tensor]

INIT_NAMES = ("normal", "scaled_normal", "uniform", "xavier", "zeros")


def _coerce_enum(enum_cls: type[enum.Enum], value: object, field_name: str, table: str) -> enum.Enum:
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, torch.dtype) and enum_cls is DataType:
        for member in DataType:
            if member.torch_dtype == value:
                return member
    if isinstance(value, str):
        for member in enum_cls:
            if value.lower() in (member.value, member.name.lower()):
                return member
    allowed = ", ".join(m.name for m in enum_cls)
    raise ConfigError(f"table '{table}': {field_name}={value!r} is not one of {allowed}")


def _check_int(value: object, field_name: str, table: str, minimum: int) -> int:
    # numbers.Integral admits numpy integers (sizes often come from arrays); bool is not a size.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"table '{table}': {field_name} must be an int, got {value!r}")
    if value < minimum:
        raise ConfigError(f"table '{table}': {field_name} must be >= {minimum}, got {value}")
    return int(value)


def _check_float(value: object, field_name: str, table: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"table '{table}': {field_name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"table '{table}': {field_name} must be {bound}, got {value}")
    return float(value)


@dataclass
class BaseEmbeddingConfig:
    """Fields shared by pooled and unpooled tables.

    Attributes:
        num_embeddings: rows in the table.
        embedding_dim: vector width; any positive int (1, 3, 17 ... all allowed).
        name: table name; keys the collection's ModuleDict and state_dict.
        feature_names: the KeyedJaggedTensor keys this table serves (several may share it).
        init: initialiser name, in-place callable, or pretrained ``(num_embeddings, dim)`` tensor.
        init_range: ``(min, max)`` for ``init="uniform"``; default ``±sqrt(1/num_embeddings)``.
        padding_idx: row that is zero, gets no gradient and is left out of bags.
        max_norm, norm_type: rows looked up are renormalised to at most ``max_norm``.
        scale_grad_by_freq: scale gradients by the inverse frequency of ids in the batch.
        sparse: plain-autograd tables produce sparse gradients.
        enable_grad: False freezes the table.
        optimizer: fused sparse optimizer applied inside backward; None keeps plain autograd.
        lr, weight_decay, eps, betas: the fused optimizer's hyper-parameters.
        dtype: weight storage dtype (float32, float16, bfloat16).
        hash_size: when set, ids of any int64 value are hashed into rows ``[0, hash_size)``
            (``hash_size <= num_embeddings``) instead of being rejected when out of range.
        hash_seed: selects the hash function used with ``hash_size``.
        compression: a table-compression spec from :mod:`recembed.compress` (hashed, Bloom,
            quotient-remainder, mixed-dimension ...). Its ``build(config, device)`` makes the
            module that stands in for the plain table; None keeps one row per id.
        dynamic: a dynamic-table spec from :mod:`recembed.dynamic` (rows admitted, evicted
            and expired as raw int64 ids come and go); built the same way as ``compression``.
        num_shards: shards the table is split into across ranks (``table_size`` is accepted
            as an alias). Values above 1 need ``recembed.distributed``.
    """

    num_embeddings: int
    embedding_dim: int
    name: str = ""
    feature_names: list[str] = field(default_factory=list)
    init: InitSpec = "uniform"
    init_range: tuple[float, float] | None = None
    padding_idx: int | None = None
    max_norm: float | None = None
    norm_type: float = 2.0
    scale_grad_by_freq: bool = False
    sparse: bool = False
    enable_grad: bool = True
    optimizer: OptimizerType | str | None = None
    lr: float = 0.01
    weight_decay: float = 0.0
    eps: float = 1e-8
    betas: tuple[float, float] = (0.9, 0.999)
    dtype: DataType | str | torch.dtype = DataType.FP32
    hash_size: int | None = None
    hash_seed: int = 0
    num_shards: int = 1
    table_size: int | None = None
    compression: "TableBuilder | None" = None
    dynamic: "TableBuilder | None" = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"table name must be a non-empty string, got {self.name!r}")
        t = self.name
        self.num_embeddings = _check_int(self.num_embeddings, "num_embeddings", t, 1)
        self.embedding_dim = _check_int(self.embedding_dim, "embedding_dim", t, 1)
        self._check_features()
        self._check_init()
        self._check_lookup_options()
        self._check_optimizer()
        self.dtype = _coerce_enum(DataType, self.dtype, "dtype", t)
        self._check_hashing()
        self._check_shards()
        for kind, package in (("compression", "recembed.compress"), ("dynamic", "recembed.dynamic")):
            spec = getattr(self, kind)
            if spec is not None and not callable(getattr(spec, "build", None)):
                raise ConfigError(
                    f"table '{self.name}': {kind} must be a {package} spec (an object with "
                    f"build(config, device)), got {spec!r}"
                )
        if self.compression is not None and self.dynamic is not None:
            raise ConfigError(f"table '{self.name}': set compression or dynamic, not both")

    def _check_features(self) -> None:
        names = self.feature_names
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise ConfigError(f"table '{self.name}': feature_names must be a list of strings, got {names!r}")
        names = list(names)
        if not names:
            names = [self.name]  # a table with no feature list serves the feature of its own name
        for n in names:
            if not isinstance(n, str) or not n:
                raise ConfigError(f"table '{self.name}': feature name {n!r} is not a non-empty string")
        if len(set(names)) != len(names):
            raise ConfigError(f"table '{self.name}': feature_names has duplicates: {names}")
        self.feature_names = names

    def _check_init(self) -> None:
        t, init = self.name, self.init
        if isinstance(init, torch.Tensor):
            want = (self.num_embeddings, self.embedding_dim)
            if tuple(init.shape) != want:
                raise ConfigError(f"table '{t}': pretrained init has shape {tuple(init.shape)}, expected {want}")
            if not init.is_floating_point() or not torch.isfinite(init).all():
                raise ConfigError(f"table '{t}': pretrained init must be finite floating point")
        elif isinstance(init, str):
            if init not in INIT_NAMES:
                raise ConfigError(f"table '{t}': init={init!r} is not one of {', '.join(INIT_NAMES)}, a callable or a tensor")
        elif not callable(init):
            raise ConfigError(f"table '{t}': init must be a name, a callable or a tensor, got {init!r}")
        if self.init_range is not None:
            if not isinstance(self.init_range, (list, tuple)) or len(self.init_range) != 2:
                raise ConfigError(f"table '{t}': init_range must be a (min, max) pair, got {self.init_range!r}")
            lo, hi = (_check_float_any(v, "init_range", t) for v in self.init_range)
            if not lo < hi:
                raise ConfigError(f"table '{t}': init_range min {lo} must be below max {hi}")
            self.init_range = (lo, hi)

    def _check_lookup_options(self) -> None:
        t = self.name
        if self.padding_idx is not None:
            if isinstance(self.padding_idx, bool) or not isinstance(self.padding_idx, numbers.Integral):
                raise ConfigError(f"table '{t}': padding_idx must be an int or None, got {self.padding_idx!r}")
            self.padding_idx = int(self.padding_idx)
            if not -self.num_embeddings <= self.padding_idx < self.num_embeddings:
                raise ConfigError(
                    f"table '{t}': padding_idx={self.padding_idx} outside [-{self.num_embeddings}, {self.num_embeddings})"
                )
            if self.padding_idx < 0:
                self.padding_idx += self.num_embeddings
        if self.max_norm is not None:
            self.max_norm = _check_float(self.max_norm, "max_norm", t, positive=True)
        self.norm_type = _check_float(self.norm_type, "norm_type", t, positive=True)
        for flag in ("scale_grad_by_freq", "sparse", "enable_grad"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"table '{t}': {flag} must be True or False, got {getattr(self, flag)!r}")
        if self.sparse and self.scale_grad_by_freq:
            # torch's embedding backward cannot scale sparse gradients; fail here, not in backward.
            raise ConfigError(f"table '{t}': scale_grad_by_freq=True is not supported with sparse=True")

    def _check_optimizer(self) -> None:
        t = self.name
        if self.optimizer is not None:
            self.optimizer = _coerce_enum(OptimizerType, self.optimizer, "optimizer", t)
        self.lr = _check_float(self.lr, "lr", t)
        self.weight_decay = _check_float(self.weight_decay, "weight_decay", t)
        self.eps = _check_float(self.eps, "eps", t, positive=True)
        betas = tuple(self.betas) if isinstance(self.betas, (list, tuple)) else ()
        if len(betas) != 2 or not all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0 for b in betas
        ):
            raise ConfigError(f"table '{t}': betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        if self.optimizer is not None and not self.enable_grad:
            raise ConfigError(f"table '{t}': optimizer={self.optimizer.name} needs enable_grad=True (the table is frozen)")
        if self.optimizer is not None and self.sparse:
            raise ConfigError(
                f"table '{t}': sparse=True is for plain autograd; optimizer={self.optimizer.name} makes no gradient"
            )
        if self.optimizer is not None and (self.max_norm is not None or self.scale_grad_by_freq):
            raise ConfigError(
                f"table '{t}': max_norm and scale_grad_by_freq are plain-autograd options; "
                f"use them without optimizer={self.optimizer.name}"
            )

    def _check_hashing(self) -> None:
        t = self.name
        if self.hash_size is not None:
            self.hash_size = _check_int(self.hash_size, "hash_size", t, 1)
            if self.hash_size > self.num_embeddings:
                raise ConfigError(
                    f"table '{t}': hash_size={self.hash_size} exceeds num_embeddings={self.num_embeddings}"
                )
        if isinstance(self.hash_seed, bool) or not isinstance(self.hash_seed, int):
            raise ConfigError(f"table '{t}': hash_seed must be an int, got {self.hash_seed!r}")

    def _check_shards(self) -> None:
        t = self.name
        if self.table_size is not None:
            self.table_size = _check_int(self.table_size, "table_size", t, 1)
            if self.num_shards not in (1, self.table_size):
                raise ConfigError(
                    f"table '{t}': table_size={self.table_size} and num_shards={self.num_shards} disagree "
                    "(table_size is an alias of num_shards; give one)"
                )
            self.num_shards = self.table_size
            self.table_size = None
        self.num_shards = _check_int(self.num_shards, "num_shards", t, 1)

    @property
    def torch_dtype(self) -> torch.dtype:
        return self.dtype.torch_dtype  # type: ignore[union-attr]


def _check_float_any(value: object, field_name: str, table: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"table '{table}': {field_name} entries must be finite numbers, got {value!r}")
    return float(value)


@dataclass
class EmbeddingBagConfig(BaseEmbeddingConfig):
    """A pooled table: each bag of ids becomes one vector (``pooling`` SUM, MEAN or MAX)."""

    pooling: PoolingType | str = PoolingType.SUM

    def __post_init__(self) -> None:
        super().__post_init__()
        self.pooling = _coerce_enum(PoolingType, self.pooling, "pooling", self.name)
        if self.pooling is PoolingType.NONE:
            raise ConfigError(
                f"table '{self.name}': pooling=NONE is unpooled; use EmbeddingConfig with EmbeddingCollection"
            )
        if self.pooling is PoolingType.MAX:
            # torch's max-pooled embedding_bag rejects these in forward; fail at the config instead.
            for flag in ("sparse", "scale_grad_by_freq"):
                if getattr(self, flag):
                    raise ConfigError(f"table '{self.name}': {flag}=True is not supported with pooling=MAX")


@dataclass
class EmbeddingConfig(BaseEmbeddingConfig):
    """An unpooled table: each id becomes one vector (sequence features)."""

    pooling: PoolingType | str = PoolingType.NONE

    def __post_init__(self) -> None:
        super().__post_init__()
        self.pooling = _coerce_enum(PoolingType, self.pooling, "pooling", self.name)
        if self.pooling is not PoolingType.NONE:
            raise ConfigError(
                f"table '{self.name}': EmbeddingConfig is unpooled (pooling=NONE); "
                f"use EmbeddingBagConfig for pooling={self.pooling.name}"
            )
