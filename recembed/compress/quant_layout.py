"""How a quantised collection lays out one table's rows in its flat byte store.

Every stored row is its codes followed by its (scale, bias), one contiguous read per id.
The layouts are the ones torch's FBGEMM row-wise embedding-bag operators read
(``torch.ops.quantized.embedding_bag_byte_rowwise_offsets`` / ``..._4bit_...``), so a
table's block of rows can be handed to them as a ``(rows, stride)`` uint8 tensor:

============  ==============================================  ===========  ===================
format        codes                                           scale, bias  read by
============  ==============================================  ===========  ===================
``PLANES``    int8 codes split in two int4 *planes*: the low  2 x float16  the 4-bit operator
              nibbles of every code, then the high nibbles                 (as 2 x 4-bit rows)
``BYTES``     int8 codes, padded to a multiple of 4 bytes     2 x float32  the byte operator
``NIBBLES``   int4 pairs (col 2j low nibble), padded to 2     2 x float16  the 4-bit operator
``NIBBLES``   the same, padded to 4 bytes                     2 x float32  the numba kernel
``HALF``      float16 values                                  none         torch.embedding_bag
============  ==============================================  ===========  ===================

(dtype / scale_dtype: int8 / float16, int8 / float32, int4 / float16, int4 / float32, float16.)

``PLANES`` is int8 with float16 scales (the default): the 4-bit operator reads the row as
``2 * ceil(D / 2)`` low-nibble columns and as many high-nibble ones, each ``nibble *
scale + bias``; the stored scale is 17 steps (:func:`~recembed.compress.quant_rows.step_divisor`),
so ``(low + 16 * high) / 17 = code * step + bias``. The byte operator would need float32
scales - 8 bytes a row instead of 4, 3.2x smaller at D = 32 instead of 3.6x.
"""

from __future__ import annotations

import numpy as np

from recembed.compress.quant_rows import QuantizedRows, row_bytes
from recembed.errors import ConfigError

__all__ = ["BYTES", "HALF", "NIBBLES", "PLANES", "code_format", "pack_rows", "row_layout", "unpack_rows"]

BYTES, NIBBLES, PLANES, HALF = 0, 1, 2, 3  # codes the numba kernel dispatches on


def code_format(dtype: str, scale_dtype: str) -> int:
    """The stored format of a collection's rows: ``BYTES``, ``NIBBLES``, ``PLANES`` or ``HALF``."""
    if dtype == "float16":
        return HALF
    if dtype == "int4":
        return NIBBLES
    return PLANES if scale_dtype == "float16" else BYTES


def row_layout(dim: int, dtype: str, scale_dtype: str) -> tuple[int, int]:
    """``(row_stride, meta_at)`` in bytes of one stored row: codes, then (scale, bias) from ``meta_at``.

    Codes are padded so that (scale, bias) sit aligned (and, for the byte operator, so that
    the padded width is what the operator takes for D). Examples at D = 32: int8 36 bytes,
    int8 with float32 scales 40, int4 20, float16 64.
    """
    fmt = code_format(dtype, scale_dtype)
    if fmt == HALF:
        return 2 * dim, 2 * dim
    size = 2 if scale_dtype == "float16" else 4
    codes = 2 * row_bytes(dim, "int4") if fmt == PLANES else row_bytes(dim, dtype)
    meta_at = -(-codes // size) * size
    return meta_at + 2 * size, meta_at


def _split_planes(codes: np.ndarray, dim: int) -> np.ndarray:
    """``(rows, D)`` int8 codes -> ``(rows, 2 * ceil(D / 2))``: packed low nibbles, then packed high nibbles."""
    planes = []
    for nibbles in (codes & 0x0F, codes >> 4):
        if dim % 2:
            nibbles = np.concatenate([nibbles, np.zeros((len(codes), 1), np.uint8)], axis=1)
        planes.append(nibbles[:, 0::2] | (nibbles[:, 1::2] << 4))
    return np.concatenate(planes, axis=1)


def _join_planes(planes: np.ndarray, dim: int) -> np.ndarray:
    """Inverse of :func:`_split_planes`."""
    half = planes.shape[1] // 2
    out = []
    for plane in (planes[:, :half], planes[:, half:]):
        nibbles = np.empty((len(planes), 2 * half), np.uint8)
        nibbles[:, 0::2], nibbles[:, 1::2] = plane & 0x0F, plane >> 4
        out.append(nibbles[:, :dim])
    return out[0] | (out[1] << 4)


def pack_rows(q: QuantizedRows, scale_dtype: str) -> np.ndarray:
    """``q`` as stored rows: ``(rows, row_stride)`` uint8 (see :func:`row_layout`)."""
    if q.scale_bias.size and q.scale_dtype != scale_dtype:
        raise ConfigError(f"quantised rows hold {q.scale_dtype} scales; the collection stores {scale_dtype}")
    stride, meta_at = row_layout(q.dim, q.dtype, scale_dtype)
    out = np.zeros((q.num_rows, stride), np.uint8)
    if code_format(q.dtype, scale_dtype) == PLANES:
        codes = _split_planes(q.codes, q.dim)
    else:
        codes = np.ascontiguousarray(q.codes).view(np.uint8)
    out[:, : codes.shape[1]] = codes
    if q.scale_bias.size:
        out[:, meta_at:] = np.ascontiguousarray(q.scale_bias).view(np.uint8)
    return out


def unpack_rows(block: np.ndarray, dim: int, dtype: str, scale_dtype: str) -> QuantizedRows:
    """Stored rows ``(rows, row_stride)`` uint8 -> :class:`QuantizedRows` (copies)."""
    _, meta_at = row_layout(dim, dtype, scale_dtype)
    fmt = code_format(dtype, scale_dtype)
    if fmt == HALF:
        values = np.ascontiguousarray(block[:, : 2 * dim]).view(np.float16)
        return QuantizedRows("float16", dim, values, np.zeros((len(block), 0), np.float16))
    if fmt == PLANES:
        codes = _join_planes(block[:, : 2 * row_bytes(dim, "int4")], dim)
    else:
        codes = np.ascontiguousarray(block[:, : row_bytes(dim, dtype)])
    meta = np.ascontiguousarray(block[:, meta_at:]).view(np.dtype(scale_dtype))
    return QuantizedRows(dtype, dim, codes, meta)
