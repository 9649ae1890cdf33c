"""An inference-only EmbeddingBagCollection over row-wise quantised tables.

``forward(KeyedJaggedTensor) -> KeyedTensor`` as :class:`~recembed.tables.EmbeddingBagCollection`
(same keys, order, widths, pooling, per-sample weights, padding and ``hash_size``
hashing), but plain tables are stored as int8, int4 or float16 rows
(:mod:`recembed.compress.quant_rows`, laid out as :mod:`recembed.compress.quant_layout`
says) and pooled without ever dequantising a whole table: by one numba call
(:mod:`recembed.compress.quant_kernels`) for every int8 key and every key torch does not
take, and through torch for int4 and float16 SUM/MEAN keys (FBGEMM's 4-bit operator,
``torch.embedding_bag``; :mod:`recembed.compress.quant_torch_ops`). Ids are range-checked as
they are read, and the kernel writes straight into the output's columns, so a forward over
int8 tables is one pass over the ids and nothing else. Compressed tables (QR, Bloom ...) are kept as
copies whose sub-table collections are quantised the same way; mixed-dimension
projections stay float32.

The row store is a buffer, so ``state_dict()`` holds it; see
:func:`recembed.compress.save_quantized` for a standalone file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from recembed.compress.quant_kernels import needs_general_loop, pooled_quantized
from recembed.compress.quant_layout import (
    HALF,
    code_format,
    pack_rows,
    row_layout,
    unpack_rows,
)
from recembed.compress.quant_rows import QuantizedRows, step_divisor
from recembed.compress.quant_torch_ops import (
    gather_rows,
    pool_with_torch_ops,
    torch_op_keys,
)
from recembed.errors import ConfigError, IdOutOfRangeError, UnknownKeyError
from recembed.sparse import KeyedJaggedTensor, KeyedTensor
from recembed.tables.collection import iter_feature_slices
from recembed.tables.config import EmbeddingBagConfig, PoolingType
from recembed.tables.ids import ids_to_rows, remap_suspect_keys

__all__ = ["QuantizedEmbeddingBagCollection", "row_layout"]  # row_layout: re-exported from quant_layout

_DTYPES = ("int8", "int4", "float16")
_NO_WEIGHTS = np.zeros(0, np.float32)
_NO_HALF = np.zeros(0, np.uint16)
_POOL = {PoolingType.SUM: 0, PoolingType.MEAN: 1, PoolingType.MAX: 2}


class QuantizedEmbeddingBagCollection(nn.Module):
    """Quantised pooled tables: ``forward(kjt) -> KeyedTensor (B, sum of dims)``, float32, no gradient.

    Build with :func:`recembed.compress.quantize` (or :meth:`from_rows`).

    Buffer ``data``: every plain table's rows, one table after another in config order, each
    row laid out as :func:`~recembed.compress.quant_layout.row_layout` says (codes, then its
    scale and bias).

    Attribute ``use_torch_ops`` (default True): set False to pool every key with the numba
    kernel (the reference the torch path for int4/float16 keys is tested against; int8 keys
    always use the kernel).
    """

    def __init__(self, configs: Sequence[EmbeddingBagConfig], dtype: str, scale_dtype: str = "float16",
                 compressed: Mapping[str, nn.Module] | None = None) -> None:
        super().__init__()
        if dtype not in _DTYPES:
            raise ConfigError(f"quantize: dtype={dtype!r} is not one of {', '.join(_DTYPES)}")
        if scale_dtype not in ("float16", "float32"):
            raise ConfigError(f"quantize: scale_dtype={scale_dtype!r} is not one of float16, float32")
        self.dtype, self.scale_dtype = dtype, scale_dtype
        self.use_torch_ops = True
        self._format = code_format(dtype, scale_dtype)
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
        self._plans: dict[tuple[tuple[str, ...], bool, bool], dict] = {}
        self._divisor = float(step_divisor(dtype, scale_dtype))
        # One stacked (rows, stride) table for the torch operators: every row offset is a whole row.
        self._stackable = (len(set(self._dims.tolist())) == 1 and len(set(self._stride.tolist())) == 1
                           and not (self._format == HALF and (self._pad >= 0).any()))

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
            out._block(i)[:] = pack_rows(q, scale_dtype)
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
        return unpack_rows(self._block(i), self._plain[i].embedding_dim, self.dtype, self.scale_dtype)

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
    def _plan(self, keys: tuple[str, ...], weighted: bool) -> dict:
        """Everything about a batch that depends only on its keys (cached): per key its plain table (-1: a
        compressed table), output column and pooling; the hashed keys; which keys go to torch (``groups``, one
        array per call) and which to the numba kernel (``kernel_table``: table or -1)."""
        cached = self._plans.get((keys, weighted, self.use_torch_ops))
        if cached is not None:
            return cached
        cols = dict(zip(self._output_keys, np.cumsum([0] + self._output_dims[:-1]).tolist()))
        by_name = {c.name: c for c in self._configs}
        table = np.array([self._index.get(self._feature_to_table[k], -1) for k in keys], dtype=np.int64)
        pool = np.array([_POOL[by_name[self._feature_to_table[k]].pooling] for k in keys], dtype=np.int64)
        groups = self._torch_op_groups(table, pool, weighted)
        kernel_table = table.copy()
        for group in groups:
            kernel_table[group] = -1
        plan = self._plans[(keys, weighted, self.use_torch_ops)] = {
            "table": table,
            "col": np.array([cols[k] for k in keys], dtype=np.int64),
            "pool": pool,
            # hashed ids may take any value; ids_to_rows maps them before any kernel reads them
            "hashed": [k for k, key in enumerate(keys)
                       if table[k] >= 0 and by_name[self._feature_to_table[key]].hash_size is not None],
            "groups": groups,
            "kernel_table": kernel_table,
            "uses_kernel": bool((kernel_table >= 0).any()),
            "needs_general": needs_general_loop(self._format, kernel_table, pool),
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
        plan = self._plan(keys, weights is not None)
        if batch > 0 and (plan["groups"] or plan["uses_kernel"]):
            # The ids are read where they are (int64 values need no copy); the kernel and the gather
            # for torch range-check them as they go, so no separate pass runs over them.
            rows = remap_suspect_keys(features, features.values().to(torch.int64), plan["hashed"],
                                      lambda k: self._plain[int(plan["table"][k])]).contiguous()
            offsets = features.offsets().contiguous()
            psw = _NO_WEIGHTS if weights is None else weights.to(torch.float32).contiguous().numpy()
            if plan["groups"]:
                self._pool_with_torch_ops(plan, rows, offsets, psw, batch, out, features)
            if plan["uses_kernel"]:
                bad = self._pool_with_kernel(plan, rows, offsets, psw, batch, out)
                if bad >= 0:
                    self._raise_bad_ids(features, plan, bad)
        if len(self.compressed):
            col = plan["col"]
            for k, piece in enumerate(iter_feature_slices(features)):
                name = self._feature_to_table[piece.name]
                if name in self.compressed:
                    width = self.compressed[name].embedding_dim
                    out[:, col[k] : col[k] + width] = self.compressed[name].lookup(
                        piece.ids, piece.offsets, piece.weights, feature=piece.name)
        return KeyedTensor(keys=list(self._output_keys), length_per_key=list(self._output_dims), values=out)

    def _torch_op_groups(self, table: np.ndarray, pool: np.ndarray, weighted: bool) -> list[np.ndarray]:
        """Batch-key indices pooled through torch (float16 SUM/MEAN keys), one array per call (may be empty).

        When every plain table has one dim and row stride (and no padding row), the row store
        is one stacked table and a single call pools every key; otherwise one call per key.
        """
        if not self.use_torch_ops:
            return []
        usable = torch_op_keys(self._format, self.scale_dtype, table.tolist(), pool.tolist(), self._pad.tolist(),
                               weighted)
        chosen = np.flatnonzero(usable).astype(np.int64)
        return [chosen] if self._stackable and len(chosen) else [chosen[i : i + 1] for i in range(len(chosen))]

    def _pool_with_torch_ops(self, plan: dict, rows: torch.Tensor, offsets: torch.Tensor, psw: np.ndarray,
                             batch: int, out: torch.Tensor, features: KeyedJaggedTensor) -> None:
        table, col, pool = plan["table"], plan["col"], plan["pool"]
        for group in plan["groups"]:
            first = int(table[group[0]])
            dim, stride = int(self._dims[first]), int(self._stride[first])
            if self._stackable:
                weight = self.data.view(-1, stride)
                key_base = self._table_off[table] // stride
            else:
                n, start = int(self._num_rows[first]), int(self._table_off[first])
                weight = self.data[start : start + n * stride].view(n, stride)
                key_base = np.zeros(len(table), np.int64)
            key_mean = (pool == 1) & (self._format != HALF)  # float16: torch.embedding_bag pools MEAN itself
            ids, bag_offsets, w, bad = gather_rows(rows.numpy(), offsets.numpy(), psw, group, key_base,
                                                   self._num_rows[table], key_mean, batch)
            if bad >= 0:
                self._raise_bad_ids(features, plan, int(bad))
            cols = col[group]
            side_by_side = bool((np.diff(cols) == dim).all())
            if side_by_side:  # write straight into the output's columns, viewed as (K, B, D)
                target = out[:, cols[0] : cols[0] + len(group) * dim].view(batch, len(group), dim).transpose(0, 1)
            else:
                target = torch.empty(len(group), batch, dim)
            pool_with_torch_ops(self._format, weight, dim, torch.from_numpy(ids), torch.from_numpy(bag_offsets),
                                torch.from_numpy(w) if len(w) else None, torch.from_numpy(pool[group] == 1), target,
                                padding_idx=int(self._pad[first]) if len(group) == 1 else -1)
            if not side_by_side:
                for i in range(len(group)):
                    out[:, cols[i] : cols[i] + dim] = target[i]

    def _raise_bad_ids(self, features: KeyedJaggedTensor, plan: dict, k: int) -> None:
        """Key k holds an id outside its table: raise the error ``ids_to_rows`` gives (feature, table, id)."""
        batch, key = features.stride(), features.keys()[k]
        start, end = (int(x) for x in features.offsets()[[k * batch, (k + 1) * batch]])
        cfg = self._plain[int(plan["table"][k])]
        ids_to_rows(features.values()[start:end], cfg, key)
        raise IdOutOfRangeError(f"feature '{key}' (table '{cfg.name}'): an id is outside [0, {cfg.num_embeddings})")

    def _pool_with_kernel(self, plan: dict, rows: torch.Tensor, offsets: torch.Tensor, psw: np.ndarray, batch: int,
                          out: torch.Tensor) -> int:
        """Pool the plan's kernel keys into ``out``; returns a key holding an id outside its table, or -1."""
        flat = self.data.numpy()  # views are taken per call (~1 us): the buffer may have been replaced
        half_values_or_scales = self._format == HALF or self.scale_dtype == "float16"
        data = (flat, flat.view(np.uint16) if half_values_or_scales else _NO_HALF,
                _NO_WEIGHTS if half_values_or_scales else flat.view(np.float32))
        return pooled_quantized(self._format, self._divisor, *data, self._table_off, self._stride, self._meta_at,
                                self._dims, self._num_rows, self._pad, plan["kernel_table"], plan["col"], plan["pool"],
                                rows.numpy(), offsets.numpy(), psw, batch, out.numpy(), plan["needs_general"])

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}, scale_dtype={self.scale_dtype}, tables={[c.name for c in self._configs]}"
