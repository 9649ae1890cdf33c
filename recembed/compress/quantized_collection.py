"""An inference-only EmbeddingBagCollection over row-wise quantised tables.

``forward(KeyedJaggedTensor) -> KeyedTensor`` as :class:`~recembed.tables.EmbeddingBagCollection`
(same keys, order, widths, pooling, per-sample weights, padding and ``hash_size``
hashing), but plain tables are stored as int8, int4 or float16 rows
(:mod:`recembed.compress.quant_rows`) and pooled by one numba call that dequantises only
the rows each bag touches (:mod:`recembed.compress.quant_kernels`). The whole table is
never dequantised. Compressed tables (QR, Bloom ...) are kept as copies whose sub-table
collections are quantised the same way; mixed-dimension projections stay float32.

The row store is a buffer, so ``state_dict()`` holds it; see
:func:`recembed.compress.save_quantized` for a standalone file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from recembed.compress.quant_kernels import (
    half_exponent_scales,
    pooled_float16,
    pooled_int4,
    pooled_int8,
)
from recembed.compress.quant_rows import QuantizedRows, row_bytes
from recembed.errors import ConfigError, UnknownKeyError
from recembed.kernels.fused_cpu import find_bad_rows
from recembed.sparse import KeyedJaggedTensor, KeyedTensor
from recembed.tables.collection import iter_feature_slices
from recembed.tables.config import EmbeddingBagConfig, PoolingType
from recembed.tables.ids import ids_to_rows

__all__ = ["QuantizedEmbeddingBagCollection", "row_layout"]

_DTYPES = ("int8", "int4", "float16")
_NO_WEIGHTS = np.zeros(0, np.float32)
_NO_HALF = np.zeros(0, np.uint16)
_POOL = {PoolingType.SUM: 0, PoolingType.MEAN: 1, PoolingType.MAX: 2}


def row_layout(dim: int, dtype: str, scale_dtype: str) -> tuple[int, int]:
    """``(row_stride, meta_at)`` in bytes of one stored row: codes, then (scale, bias) from ``meta_at``.

    The codes are padded to a multiple of the scale's size (2 or 4 bytes) so that (scale,
    bias) can be read aligned: int8 with an odd D and float16 scales spends one byte per row;
    int4 with float32 scales pads ``ceil(D / 2)`` up to a multiple of 4. float16 tables have
    no scale or bias (``meta_at`` = stride). Examples: D = 32 int8 -> 36 bytes, int4 -> 20.
    """
    codes = row_bytes(dim, dtype)
    if dtype == "float16":
        return codes, codes
    size = 2 if scale_dtype == "float16" else 4
    meta_at = -(-codes // size) * size
    return meta_at + 2 * size, meta_at


class QuantizedEmbeddingBagCollection(nn.Module):
    """Quantised pooled tables: ``forward(kjt) -> KeyedTensor (B, sum of dims)``, float32, no gradient.

    Build with :func:`recembed.compress.quantize` (or :meth:`from_rows`).

    Buffer ``data``: every plain table's rows, one table after another in config order, each
    row laid out as :func:`row_layout` says (codes, then its scale and bias).
    """

    def __init__(self, configs: Sequence[EmbeddingBagConfig], dtype: str, scale_dtype: str = "float16",
                 compressed: Mapping[str, nn.Module] | None = None) -> None:
        super().__init__()
        if dtype not in _DTYPES:
            raise ConfigError(f"quantize: dtype={dtype!r} is not one of {', '.join(_DTYPES)}")
        if scale_dtype not in ("float16", "float32"):
            raise ConfigError(f"quantize: scale_dtype={scale_dtype!r} is not one of float16, float32")
        self.dtype, self.scale_dtype = dtype, scale_dtype
        self._configs = list(configs)
        self.compressed = nn.ModuleDict(dict(compressed or {}))
        self._feature_to_table = {f: c.name for c in configs for f in c.feature_names}
        self._output_keys = [f for c in configs for f in c.feature_names]
        self._output_dims = [c.embedding_dim for c in configs for _ in c.feature_names]
        self._plain = [c for c in configs if c.name not in self.compressed]
        self._index = {c.name: i for i, c in enumerate(self._plain)}
        layouts = [row_layout(c.embedding_dim, dtype, scale_dtype) for c in self._plain]
        self._dims = np.array([c.embedding_dim for c in self._plain], dtype=np.int64)
        self._num_rows = np.array([c.num_embeddings for c in self._plain], dtype=np.int64)
        self._stride = np.array([s for s, _ in layouts], dtype=np.int64)
        self._meta_at = np.array([m for _, m in layouts], dtype=np.int64)
        sizes = self._num_rows * self._stride
        self._table_off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self._pad = np.array([-1 if c.padding_idx is None else c.padding_idx for c in self._plain], dtype=np.int64)
        self.register_buffer("data", torch.zeros(int(sizes.sum()), dtype=torch.uint8))
        self._plans: dict[tuple[str, ...], dict] = {}

    @classmethod
    def from_rows(cls, configs: Sequence[EmbeddingBagConfig], rows: Mapping[str, QuantizedRows], dtype: str,
                  scale_dtype: str = "float16", compressed: Mapping[str, nn.Module] | None = None
                  ) -> QuantizedEmbeddingBagCollection:
        """A collection holding ``rows[name]`` for every plain table (and ``compressed`` modules as given)."""
        out = cls(configs, dtype, scale_dtype, compressed)
        for i, cfg in enumerate(out._plain):
            q = rows[cfg.name]
            if q.dtype != dtype or q.codes.shape[0] != cfg.num_embeddings or q.dim != cfg.embedding_dim:
                raise ConfigError(f"table '{cfg.name}': quantised rows {q.dtype} {q.codes.shape} do not fit the "
                                  f"config ({cfg.num_embeddings} x {cfg.embedding_dim}, {dtype})")
            if q.scale_bias.size and q.scale_bias.dtype != np.dtype(scale_dtype):
                raise ConfigError(f"table '{cfg.name}': scale/bias are {q.scale_bias.dtype}, the collection "
                                  f"stores {scale_dtype}")
            block = out._block(i)
            codes = np.ascontiguousarray(q.codes).view(np.uint8)
            block[:, : codes.shape[1]] = codes
            if q.scale_bias.size:
                meta = np.ascontiguousarray(q.scale_bias).view(np.uint8)
                block[:, out._meta_at[i] : out._meta_at[i] + meta.shape[1]] = meta
        return out

    # ---- inspection --------------------------------------------------------------------
    def embedding_bag_configs(self) -> list[EmbeddingBagConfig]:
        return list(self._configs)

    def feature_names(self) -> list[str]:
        return list(self._output_keys)

    def _block(self, i: int) -> np.ndarray:
        """Plain table i's stored rows: a ``(rows, stride)`` uint8 view of ``data``."""
        n, start, stride = int(self._num_rows[i]), int(self._table_off[i]), int(self._stride[i])
        return self.data.numpy()[start : start + n * stride].reshape(n, stride)

    def table_rows(self, name: str) -> QuantizedRows:
        """The stored rows of plain table ``name`` (copied out of the row store)."""
        if name not in self._index:
            raise UnknownKeyError(f"quantised collection: no plain table '{name}' (tables: {list(self._index)})")
        i = self._index[name]
        cfg = self._plain[i]
        block = self._block(i)
        width = row_bytes(cfg.embedding_dim, self.dtype)
        codes = np.ascontiguousarray(block[:, :width])
        if self.dtype == "float16":
            no_meta = np.zeros((len(block), 0), np.float16)
            return QuantizedRows("float16", cfg.embedding_dim, codes.view(np.float16), no_meta)
        at = int(self._meta_at[i])
        meta = np.ascontiguousarray(block[:, at:]).view(np.dtype(self.scale_dtype))
        return QuantizedRows(self.dtype, cfg.embedding_dim, codes, meta)

    def dequantize(self, name: str) -> torch.Tensor:
        """Every row of table ``name`` as float32 ``(rows, D)`` - for measuring error, not for lookups."""
        return torch.from_numpy(self.table_rows(name).dequantize())

    def num_parameters(self) -> int:
        """Stored values: rows x dim of every table (compressed tables: their own count)."""
        plain = sum(c.num_embeddings * c.embedding_dim for c in self._plain)
        return plain + sum(m.num_parameters() for m in self.compressed.values())

    def num_bytes(self) -> int:
        """Bytes of the row store - codes, scales, biases and alignment padding - plus the compressed tables' own."""
        return self.data.numel() + sum(m.num_bytes() for m in self.compressed.values())

    def table_num_bytes(self, name: str) -> int:
        """Bytes of one table (padding included)."""
        if name in self.compressed:
            return self.compressed[name].num_bytes()
        i = self._index[name]
        return int(self._num_rows[i] * self._stride[i])

    # ---- lookup ------------------------------------------------------------------------
    def _plan(self, keys: tuple[str, ...]) -> dict:
        plan = self._plans.get(keys)
        if plan is None:
            cols = dict(zip(self._output_keys, np.cumsum([0] + self._output_dims[:-1]).tolist()))
            by_name = {c.name: c for c in self._configs}
            table = np.array([self._index.get(self._feature_to_table[k], -1) for k in keys], dtype=np.int64)
            hashed = [k for k, key in enumerate(keys)
                      if table[k] >= 0 and by_name[self._feature_to_table[key]].hash_size is not None]
            check = table.copy()
            check[hashed] = -1  # hashed ids may take any value; ids_to_rows maps them
            plan = self._plans[keys] = {
                "table": table,
                "col": np.array([cols[k] for k in keys], dtype=np.int64),
                "pool": np.array([_POOL[by_name[self._feature_to_table[k]].pooling] for k in keys], dtype=np.int64),
                "check": check,
                "hashed": hashed,
            }
        return plan

    def _check(self, features: KeyedJaggedTensor) -> None:
        if not isinstance(features, KeyedJaggedTensor):
            raise ConfigError(f"QuantizedEmbeddingBagCollection takes a KeyedJaggedTensor, got {type(features).__name__}")
        keys = features.keys()
        for key in keys:
            if key not in self._feature_to_table:
                raise UnknownKeyError(f"QuantizedEmbeddingBagCollection: unknown feature '{key}'; no table serves it "
                                      f"(served: {self._output_keys})")
        missing = [f for f in self._output_keys if f not in keys]
        if missing:
            raise UnknownKeyError(f"QuantizedEmbeddingBagCollection: features {missing} are missing from the batch "
                                  f"(batch keys: {keys})")

    def _rows(self, features: KeyedJaggedTensor, plan: dict) -> torch.Tensor:
        """Checked (and where configured, hashed) int64 rows of every plain feature, in KJT order."""
        values = features.values()
        rows = values.to(torch.int64)
        batch = features.stride()
        if batch == 0:
            return rows
        offsets = features.offsets()
        # One numba pass range-checks every key (the kernels must not read outside a table);
        # only a failing or hashed key goes through ids_to_rows, which names the feature and id.
        bad = find_bad_rows(rows.numpy(), offsets.numpy(), plan["check"], self._num_rows, batch)
        suspects = [k for k in range(len(bad)) if bad[k] >= 0] + plan["hashed"]
        if not suspects:
            return rows
        bounds = offsets[::batch].tolist()
        keys = features.keys()
        for k in suspects:
            cfg = self._plain[int(plan["table"][k])]
            mapped = ids_to_rows(values[bounds[k] : bounds[k + 1]], cfg, keys[k])
            if cfg.hash_size is not None:
                if rows is values:
                    rows = rows.clone()
                rows[bounds[k] : bounds[k + 1]] = mapped
        return rows

    @torch.no_grad()
    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        """Pool every feature: KJT with stride B -> KeyedTensor ``(B, sum of dims)`` float32."""
        self._check(features)
        batch = features.stride()
        keys = tuple(features.keys())
        weights = features.weights_or_none()
        if weights is not None:
            for key in keys:
                cfg = next(c for c in self._configs if c.name == self._feature_to_table[key])
                if cfg.pooling is PoolingType.MAX:
                    raise ConfigError(f"table '{cfg.name}': per-sample weights need SUM or MEAN pooling, not MAX "
                                      f"(feature '{key}')")
        # Every column is written below (the kernel for plain tables, lookups for compressed ones).
        out = torch.empty(batch, sum(self._output_dims), dtype=torch.float32)
        plan = self._plan(keys)
        table, col, pool = plan["table"], plan["col"], plan["pool"]
        if self._plain and (table >= 0).any():
            data = self.data.numpy()
            psw = _NO_WEIGHTS if weights is None else weights.to(torch.float32).contiguous().numpy()
            rows = self._rows(features, plan).numpy()
            offsets = features.offsets().contiguous().numpy()
            common = (table, col, pool, rows, offsets, psw, batch, out.numpy())
            if self.dtype == "float16":
                pooled_float16(data, data.view(np.uint16), half_exponent_scales(), self._table_off, self._stride,
                               self._dims, self._pad, *common)
            else:
                half_meta = self.scale_dtype == "float16"
                kernel = pooled_int8 if self.dtype == "int8" else pooled_int4
                kernel(data, data.view(np.uint16) if half_meta else _NO_HALF,
                       _NO_WEIGHTS if half_meta else data.view(np.float32), half_exponent_scales(), self._table_off,
                       self._stride, self._meta_at, self._dims, self._pad, *common)
        if len(self.compressed):
            for k, piece in enumerate(iter_feature_slices(features)):
                name = self._feature_to_table[piece.name]
                if name in self.compressed:
                    width = self.compressed[name].embedding_dim
                    out[:, col[k] : col[k] + width] = self.compressed[name].lookup(
                        piece.ids, piece.offsets, piece.weights, feature=piece.name)
        return KeyedTensor(keys=list(self._output_keys), length_per_key=list(self._output_dims), values=out)

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}, scale_dtype={self.scale_dtype}, tables={[c.name for c in self._configs]}"
