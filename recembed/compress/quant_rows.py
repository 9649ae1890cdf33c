"""Row-wise quantisation of one table: int8, int4 (two per byte) or float16 storage.

int8 / int4 (``levels`` = 255 / 15): each row keeps a ``bias`` (at most the row's minimum)
and a ``step``, and each value ``x`` becomes the code ``q = round((x - bias) / step)``;
reading gives ``q * step + bias``. ``bias`` is rounded *down* and the stored scale rounded
*up* to the storage dtype of the pair (float16 by default, as FBGEMM does; float32 on
request), so every code lies in ``[0, levels]`` with no clipping and the error of every
value is at most ``step / 2`` (plus float32 rounding when read). A constant row gets the
smallest positive scale. Values whose scale or bias do not fit float16 (beyond ±65504)
need ``scale_dtype="float32"``.

The stored scale is the step itself, except for int8 with float16 scales, which stores
``17 * step`` (:func:`step_divisor`). That is format version 2's layout, where torch's
4-bit FBGEMM kernel read such a row as two 4-bit rows (low and high nibbles, each
weighted by the stored scale) and ``(low + 16 * high) / 17`` recovered ``q * step + bias``.
The numba kernel now reads the codes directly and divides by 17 once per row; the scale
stayed so version-2 files load bit for bit (:mod:`recembed.compress.quant_layout`). Scale
17 * step is the int4 scale of the same range, so nothing is lost: ``step`` is still the
row's range / 255, rounded up.

int4 packs two codes per byte, column ``2j`` in the low nibble and ``2j + 1`` in the high
nibble; an odd dimension is padded with a zero nibble, so a row takes ``ceil(D / 2)`` bytes.

float16 stores the values rounded to float16 (no scale or bias).

Bytes per row: int8 ``D + 2s``, int4 ``ceil(D / 2) + 2s``, float16 ``2D``, with ``s`` = 2
(float16 scale/bias) or 4 - against ``4D`` for float32; a quantised collection adds a little
padding (see :func:`~recembed.compress.quant_layout.row_layout`). For D = 32: 3.6x, 6.4x and
2x smaller.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recembed.errors import ConfigError

__all__ = ["QUANT_DTYPES", "SCALE_DTYPES", "QuantizedRows", "quantize_rows", "row_bytes", "step_divisor"]

QUANT_DTYPES = ("int8", "int4", "float16")
SCALE_DTYPES = ("float16", "float32")
_LEVELS = {"int8": 255, "int4": 15}


def step_divisor(dtype: str, scale_dtype: str) -> int:
    """What the stored scale is divided by to give the step: 17 for int8 with float16 scales, else 1."""
    return 17 if dtype == "int8" and scale_dtype == "float16" else 1


def row_bytes(dim: int, dtype: str) -> int:
    """Bytes of one row's codes (scale and bias not included)."""
    return {"int8": dim, "int4": (dim + 1) // 2, "float16": 2 * dim}[dtype]


@dataclass
class QuantizedRows:
    """One table's quantised rows.

    Attributes:
        dtype: ``"int8"``, ``"int4"`` or ``"float16"``.
        dim: the table's embedding_dim D.
        codes: ``(rows, row_bytes)`` uint8 for int8/int4, ``(rows, D)`` float16 for float16.
        scale_bias: ``(rows, 2)`` stored (scale, bias) in float16 or float32 (the step is scale /
            :func:`step_divisor`); ``(rows, 0)`` for float16 tables.
    """

    dtype: str
    dim: int
    codes: np.ndarray
    scale_bias: np.ndarray

    @property
    def num_rows(self) -> int:
        return int(self.codes.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.scale_bias.nbytes)

    @property
    def scale_dtype(self) -> str:
        """``"float16"`` or ``"float32"``: the storage of (scale, bias); float16 tables say ``"float16"``."""
        return "float32" if self.scale_bias.dtype == np.float32 else "float16"

    def steps(self) -> np.ndarray:
        """``(rows,)`` float64 quantisation step of every row (0 for float16 tables): error <= step / 2."""
        if not self.scale_bias.shape[1]:
            return np.zeros(self.num_rows)
        return self.scale_bias[:, 0].astype(np.float64) / step_divisor(self.dtype, self.scale_dtype)

    def dequantize(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Float32 values of ``rows`` (all rows when None): ``(len(rows), D)``. For measuring error only."""
        codes = self.codes if rows is None else self.codes[rows]
        if self.dtype == "float16":
            return codes.astype(np.float32)
        meta = (self.scale_bias if rows is None else self.scale_bias[rows]).astype(np.float64)
        meta[:, 0] /= step_divisor(self.dtype, self.scale_dtype)
        if self.dtype == "int4":
            unpacked = np.empty((codes.shape[0], codes.shape[1] * 2), dtype=np.uint8)
            unpacked[:, 0::2] = codes & 0x0F
            unpacked[:, 1::2] = codes >> 4
            codes = unpacked[:, : self.dim]
        return (codes.astype(np.float64) * meta[:, :1] + meta[:, 1:2]).astype(np.float32)


def _round(values: np.ndarray, dtype: type, down: bool) -> np.ndarray:
    """``values`` (float64) in ``dtype``, rounded toward -inf (``down``) or +inf."""
    out = values.astype(dtype)
    back = out.astype(np.float64)
    wrong = back > values if down else back < values
    if wrong.any():
        out[wrong] = np.nextafter(out[wrong], dtype(-np.inf if down else np.inf))
    return out


def quantize_rows(weight: np.ndarray, dtype: str = "int8", scale_dtype: str = "float16") -> QuantizedRows:
    """Quantise a ``(rows, D)`` float table row by row (see the module docstring).

    Example:
        >>> q = quantize_rows(np.array([[0.0, 1.0, 0.5]], dtype=np.float32), "int8")
        >>> q.codes.tolist(), np.abs(q.dequantize() - [[0.0, 1.0, 0.5]]).max() <= q.steps()[0] / 2
        ([[0, 255, 127]], True)
    """
    if dtype not in QUANT_DTYPES:
        raise ConfigError(f"quantize: dtype={dtype!r} is not one of {', '.join(QUANT_DTYPES)}")
    if scale_dtype not in SCALE_DTYPES:
        raise ConfigError(f"quantize: scale_dtype={scale_dtype!r} is not one of {', '.join(SCALE_DTYPES)}")
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 2 or not np.isfinite(w).all():
        raise ConfigError(f"quantize: a table must be a finite 2-D array, got shape {w.shape}")
    rows, dim = w.shape
    if dtype == "float16":
        if np.abs(w).max(initial=0.0) > np.finfo(np.float16).max:
            raise ConfigError("quantize: values beyond ±65504 do not fit float16; use dtype='int8'")
        return QuantizedRows(dtype, dim, w.astype(np.float16), np.zeros((rows, 0), dtype=np.float16))
    levels = _LEVELS[dtype]
    meta_type = np.float16 if scale_dtype == "float16" else np.float32
    lo = w.min(axis=1) if dim else np.zeros(rows)
    hi = w.max(axis=1) if dim else np.zeros(rows)
    divisor = step_divisor(dtype, scale_dtype)
    with np.errstate(over="ignore"):
        bias = _round(lo, meta_type, down=True)
        scale = _round((hi - bias.astype(np.float64)) * (divisor / levels), meta_type, down=False)
    if not (np.isfinite(bias).all() and np.isfinite(scale).all()):
        raise ConfigError(f"quantize: row minimum or range overflows {scale_dtype}; use scale_dtype='float32'")
    scale = np.where(scale > 0, scale, meta_type(np.finfo(meta_type).smallest_subnormal))
    step = scale.astype(np.float64) / divisor
    q = np.rint((w - bias.astype(np.float64)[:, None]) / step[:, None])
    q = np.clip(q, 0, levels).astype(np.uint8)
    if dtype == "int4":
        if dim % 2:
            q = np.concatenate([q, np.zeros((rows, 1), dtype=np.uint8)], axis=1)
        q = q[:, 0::2] | (q[:, 1::2] << 4)
    return QuantizedRows(dtype, dim, np.ascontiguousarray(q), np.stack([scale, bias], axis=1))
