"""Quantised inference copies of embedding collections, their error, and their files.

:func:`quantize` turns an ``EmbeddingBagCollection`` - or a model holding some, such as
``DLRM`` - into an inference copy whose tables are stored row-wise as int8, int4 or
float16 (:mod:`recembed.compress.quant_rows`) and pooled without ever dequantising a whole
table (:mod:`recembed.compress.quant_torch_ops`, :mod:`recembed.compress.quant_kernels`). The original is left untouched; the rest of
a model (MLPs ...) is deep-copied. Compressed tables keep their structure with quantised
sub-tables. Fused-optimizer state is training-only and is dropped, with a warning.

:func:`save_quantized` / :func:`load_quantized` store a quantised collection as one
``.npz`` file (raw arrays plus a JSON header; no pickle), written atomically. Format
version 3 stores the rows as :mod:`recembed.compress.quant_layout` lays them out. Older
files load too. Version 2 (session 2) differs only in int8 tables with float16 scales,
whose codes were split into two nibble planes; they are re-joined on load, bit for bit.
Version 1 (session 1) int8 tables with float16 scales stored plain codes and the step
itself, which later versions cannot hold exactly, so :func:`load_quantized` re-quantises
those tables from their stored values (each value moves by at most half a new step;
every other kind of table loads bit for bit).

Example:
    >>> small = quantize(model, dtype="int8")           # model: DLRM / EmbeddingBagCollection
    >>> logits = small(dense, sparse)                   # same call, ~3.6x smaller tables at D=32
    >>> quantization_error(model.embeddings, small.embeddings)["t_C1"]["max_abs"]
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recembed.compress.accounting import find_collections
from recembed.compress.base import CompressedTable
from recembed.compress.quant_layout import planes_to_bytes16
from recembed.compress.quant_rows import (
    QUANT_DTYPES,
    SCALE_DTYPES,
    QuantizedRows,
    quantize_rows,
    row_bytes,
)
from recembed.compress.quantized_collection import QuantizedEmbeddingBagCollection
from recembed.errors import CheckpointError, ConfigError
from recembed.tables.collection import EmbeddingBagCollection
from recembed.tables.config import EmbeddingBagConfig

__all__ = ["load_quantized", "quantization_error", "quantize", "save_quantized"]

_FORMAT = "recembed.quantized_embedding_bag_collection"
_VERSION = 3
# int8 with float16 scales - 1: plain codes and the step; 2: codes in two nibble planes, 17 steps
_READABLE_VERSIONS = (1, 2, 3)
_CONFIG_FIELDS = ("name", "num_embeddings", "embedding_dim", "feature_names", "pooling", "padding_idx",
                  "hash_size", "hash_seed")


def quantize(module: nn.Module, dtype: str = "int8", scale_dtype: str = "float16") -> nn.Module:
    """An inference copy of ``module`` with every embedding collection quantised.

    Args:
        module: an ``EmbeddingBagCollection`` or a model containing them.
        dtype: ``"int8"``, ``"int4"`` (two codes per byte; odd dims padded by one zero
            nibble per row) or ``"float16"``.
        scale_dtype: storage of each row's (scale, bias): ``"float16"`` (default) or ``"float32"``.
            For int8, float16 rows take D + 4 bytes (3.56x smaller than float32 at D = 32) and
            float32 rows D + 8 (3.2x; >= 3.5x only from D = 64); both are pooled by the same
            numba loop at about the same speed (:mod:`recembed.compress.quant_layout`).
    Returns:
        A :class:`QuantizedEmbeddingBagCollection` for a collection; otherwise a deep copy of
        ``module`` in eval mode whose collections are replaced (nothing else changes).
    Raises:
        ConfigError: unknown dtype, no collection found, or an already quantised collection.
    Warns:
        UserWarning: tables held fused-optimizer state, which the copy drops.
    """
    if dtype not in QUANT_DTYPES:
        raise ConfigError(f"quantize: dtype={dtype!r} is not one of {', '.join(QUANT_DTYPES)}")
    if scale_dtype not in SCALE_DTYPES:
        raise ConfigError(f"quantize: scale_dtype={scale_dtype!r} is not one of {', '.join(SCALE_DTYPES)}")
    found = find_collections(module)
    if not found:
        raise ConfigError(f"quantize: {type(module).__name__} holds no EmbeddingBagCollection")
    dropped: list[str] = []
    memo: dict[int, object] = {}
    for path, collection in found:
        if isinstance(collection, QuantizedEmbeddingBagCollection):
            raise ConfigError(f"quantize: collection '{path or type(module).__name__}' is already quantised "
                              f"({collection.dtype}); quantise the float model instead")
        memo[id(collection)] = _quantize_collection(collection, dtype, scale_dtype, dropped, path)
    if dropped:
        warnings.warn(
            f"quantize: tables {dropped} hold fused-optimizer state; the quantised copy is for inference "
            "and drops it (the original module keeps it)", UserWarning, stacklevel=2)
    if isinstance(module, EmbeddingBagCollection):
        return memo[id(module)]  # type: ignore[return-value]
    result = copy.deepcopy(module, memo)
    result.eval()
    return result


def _quantize_collection(collection: EmbeddingBagCollection, dtype: str, scale_dtype: str, dropped: list[str],
                         path: str) -> QuantizedEmbeddingBagCollection:
    where = f"{path}." if path else ""
    if collection.fused is not None:
        dropped.extend(where + name for name in collection.fused.table_names)
    rows: dict[str, QuantizedRows] = {}
    compressed: dict[str, nn.Module] = {}
    for cfg in collection.embedding_bag_configs():
        table = collection.embedding_bags[cfg.name]
        if isinstance(table, CompressedTable):
            inner = {id(c): _quantize_collection(c, dtype, scale_dtype, dropped, f"{where}{cfg.name}.{p}")
                     for p, c in find_collections(table)}
            twin = copy.deepcopy(table, inner)
            twin.eval()
            for p in twin.parameters():
                p.requires_grad_(False)
            compressed[cfg.name] = twin
        else:
            weight = table.weight.detach().to(device="cpu", dtype=torch.float32).numpy()
            rows[cfg.name] = quantize_rows(weight, dtype, scale_dtype)
    return QuantizedEmbeddingBagCollection.from_rows(collection.embedding_bag_configs(), rows, dtype, scale_dtype,
                                                     compressed)


def quantization_error(original: EmbeddingBagCollection, quantized: QuantizedEmbeddingBagCollection
                       ) -> dict[str, dict[str, float]]:
    """Per plain table: ``max_abs`` and ``mean_abs`` error of every stored value against float32,
    and ``max_over_half_scale`` (the largest error divided by its row's scale / 2; <= 1 for int8/int4).
    """
    out = {}
    for cfg in quantized.embedding_bag_configs():
        if cfg.name in quantized.compressed:
            continue
        exact = original.embedding_bags[cfg.name].weight.detach().float().cpu().numpy()
        stored = quantized.table_rows(cfg.name)
        err = np.abs(stored.dequantize() - exact)
        ratio = float("nan")
        if stored.scale_bias.shape[1]:
            half = stored.steps()[:, None] / 2
            ratio = float((err / half).max()) if err.size else 0.0
        out[cfg.name] = {"max_abs": float(err.max(initial=0.0)), "mean_abs": float(err.mean()) if err.size else 0.0,
                         "max_over_half_scale": ratio}
    return out


def save_quantized(collection: QuantizedEmbeddingBagCollection, path: str | os.PathLike) -> None:
    """Write ``collection`` to ``path`` (an ``.npz`` of raw arrays and a JSON header), atomically.

    Raises:
        ConfigError: the collection holds compressed tables (save ``state_dict()`` instead).
    """
    if not isinstance(collection, QuantizedEmbeddingBagCollection):
        raise ConfigError(f"save_quantized takes a QuantizedEmbeddingBagCollection, got {type(collection).__name__}")
    if len(collection.compressed):
        raise ConfigError(
            f"save_quantized stores plain quantised tables; {list(collection.compressed)} are compressed tables - "
            "save the quantised model's state_dict() (torch.save) and rebuild it with quantize() to load"
        )
    header = {
        "format": _FORMAT, "version": _VERSION, "dtype": collection.dtype, "scale_dtype": collection.scale_dtype,
        "tables": [{f: _jsonable(getattr(c, f)) for f in _CONFIG_FIELDS} for c in collection.embedding_bag_configs()],
    }
    arrays = {
        "header": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8),
        "data": collection.data.numpy(),
    }
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: object) -> object:
    return getattr(value, "value", value)  # enums (pooling) by their value


def load_quantized(path: str | os.PathLike) -> QuantizedEmbeddingBagCollection:
    """Read a collection written by :func:`save_quantized` (no code is executed: ``allow_pickle=False``).

    Raises:
        CheckpointError: missing, unreadable, or inconsistent file (the message names it).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"header", "data"} - set(data.files)
            if missing:
                raise CheckpointError(f"{path}: not a quantised collection file (missing arrays {sorted(missing)})")
            header = json.loads(bytes(data["header"]).decode("utf-8"))
            rows = data["data"]
    except (OSError, ValueError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: cannot read a quantised collection ({exc})") from exc
    if header.get("format") != _FORMAT or header.get("version") not in _READABLE_VERSIONS:
        raise CheckpointError(f"{path}: format {header.get('format')!r} version {header.get('version')!r}; "
                              f"expected {_FORMAT!r} version {' or '.join(map(str, _READABLE_VERSIONS))}")
    try:
        configs = [EmbeddingBagConfig(**fields) for fields in header["tables"]]
        collection = QuantizedEmbeddingBagCollection(configs, header["dtype"], header["scale_dtype"])
    except (ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: the header's tables are invalid ({exc})") from exc
    want = tuple(collection.data.shape)
    if rows.shape != want or rows.dtype != np.uint8:
        raise CheckpointError(f"{path}: array 'data' is {rows.dtype}{list(rows.shape)}, the header's tables "
                              f"need uint8{list(want)}")
    collection.data.copy_(torch.from_numpy(np.ascontiguousarray(rows)))
    if header["version"] < 3 and collection.dtype == "int8" and collection.scale_dtype == "float16":
        if header["version"] == 1:
            _requantize_version_1(collection)
        else:
            for cfg in collection.embedding_bag_configs():
                if cfg.name not in collection.compressed:
                    block = collection._block(collection._index[cfg.name])
                    block[:] = planes_to_bytes16(block, cfg.embedding_dim)
    return collection


def _requantize_version_1(collection: QuantizedEmbeddingBagCollection) -> None:
    """Version 1 int8 rows: plain codes, then float16 (step, bias) - the version 2 row's byte count. Re-quantise
    each table from its stored values into the version 2 layout."""
    rebuilt = {}
    for cfg in collection.embedding_bag_configs():
        if cfg.name in collection.compressed:
            continue
        block = collection._block(collection._index[cfg.name])
        codes = block[:, : row_bytes(cfg.embedding_dim, "int8")].astype(np.float64)
        meta = np.ascontiguousarray(block[:, -4:]).view(np.float16).astype(np.float64)
        values = codes * meta[:, :1] + meta[:, 1:2]
        rebuilt[cfg.name] = quantize_rows(values, "int8", "float16")
    fresh = QuantizedEmbeddingBagCollection.from_rows(collection.embedding_bag_configs(), rebuilt, "int8", "float16")
    collection.data.copy_(fresh.data)
