"""How a quantised collection lays out one table's rows in its flat byte store.

Every stored row is its codes followed by its (scale, bias), one contiguous read per id,
pooled by :func:`~recembed.compress.quant_kernels.pooled_quantized` (float16 SUM/MEAN keys
by ``torch.embedding_bag``). ``BYTES`` and ``NIBBLES`` rows are also exactly the rows
torch's FBGEMM operators read (``torch.ops.quantized.embedding_bag_byte_rowwise_offsets`` /
``..._4bit_...``), so a table's block can be handed to them as a ``(rows, stride)`` uint8 tensor:

===========  ==============================================  ===========  ====================
format       codes                                           scale, bias  FBGEMM reads it
===========  ==============================================  ===========  ====================
``BYTES16``  int8 codes, padded to a multiple of 2 bytes     2 x float16  no (the default)
``BYTES``    int8 codes, padded to a multiple of 4 bytes     2 x float32  the byte operator
``NIBBLES``  int4 pairs (col 2j low nibble), padded to 2     2 x float16  the 4-bit operator
``NIBBLES``  the same, padded to 4 bytes                     2 x float32  no
``HALF``     float16 values                                  none         (torch.embedding_bag)
===========  ==============================================  ===========  ====================

(dtype / scale_dtype: int8 / float16, int8 / float32, int4 / float16, int4 / float32, float16.)

Why int8 with float16 scales is its own format: it is the only int8 layout at least 3.5x
smaller than float32 at D = 32 (36 bytes a row against 128: 3.56x; float32 scales give 40
bytes, 3.2x, and reach 3.5x only from D = 64). Its stored scale is 17 steps
(:func:`~recembed.compress.quant_rows.step_divisor`), a relic of format version 2, whose
``PLANES`` rows split the codes into a low and a high nibble plane so torch's 4-bit
operator could read them (``(low + 16 * high) / 17 = code * step + bias``); that cost a
2x wide result and a pass to combine it; the numba kernel now reads single-plane rows
(0.71x -> ~1.0x float32 ``F.embedding_bag`` on memory-bound tables, 0.97x -> 2.4x on the
CTR model's). Keeping the scale lets version-2 files convert to
``BYTES16`` bit for bit (:func:`planes_to_bytes16`).
"""

from __future__ import annotations

import numpy as np

from recembed.compress.quant_rows import QuantizedRows, row_bytes
from recembed.errors import ConfigError

__all__ = ["BYTES", "BYTES16", "HALF", "NIBBLES", "PLANES", "code_format", "pack_rows", "planes_to_bytes16",
           "row_layout", "unpack_rows"]

# Codes the numba kernel dispatches on. PLANES (2) is format version 2's int8 / float16 layout,
# only ever read when such a file is loaded.
BYTES, NIBBLES, PLANES, HALF, BYTES16 = 0, 1, 2, 3, 4


def code_format(dtype: str, scale_dtype: str) -> int:
    """The stored format of a collection's rows: ``BYTES16``, ``BYTES``, ``NIBBLES`` or ``HALF``."""
    if dtype == "float16":
        return HALF
    if dtype == "int4":
        return NIBBLES
    return BYTES16 if scale_dtype == "float16" else BYTES


def row_layout(dim: int, dtype: str, scale_dtype: str) -> tuple[int, int]:
    """``(row_stride, meta_at)`` in bytes of one stored row: codes, then (scale, bias) from ``meta_at``.

    Codes are padded so that (scale, bias) sit aligned (and, for the byte operator, so that
    the padded width is what the operator takes for D). Examples at D = 32: int8 36 bytes,
    int8 with float32 scales 40, int4 20, float16 64. (Version 2's ``PLANES`` rows had the
    same stride as ``BYTES16``: ``2 * ceil(D / 2)`` code bytes.)
    """
    if code_format(dtype, scale_dtype) == HALF:
        return 2 * dim, 2 * dim
    size = 2 if scale_dtype == "float16" else 4
    codes = row_bytes(dim, dtype)
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
    """Inverse of :func:`_split_planes`: ``(rows, 2 * ceil(D / 2))`` planes -> ``(rows, D)`` int8 codes."""
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
    codes = np.ascontiguousarray(block[:, : row_bytes(dim, dtype)])
    meta = np.ascontiguousarray(block[:, meta_at:]).view(np.dtype(scale_dtype))
    return QuantizedRows(dtype, dim, codes, meta)


def planes_to_bytes16(block: np.ndarray, dim: int) -> np.ndarray:
    """Version 2's int8 / float16 rows (``PLANES``) -> ``BYTES16`` rows of the same stride, bit for bit.

    ``block`` is ``(rows, stride)`` uint8; the codes are re-joined from their nibble planes and
    the (scale, bias) bytes are kept as they are.
    """
    stride, meta_at = row_layout(dim, "int8", "float16")
    if block.ndim != 2 or block.shape[1] != stride:
        raise ConfigError(f"version-2 int8 rows of dim {dim} are {stride} bytes wide, got shape {block.shape}")
    out = np.zeros_like(block)
    out[:, :dim] = _join_planes(block[:, : 2 * row_bytes(dim, "int4")], dim)
    out[:, meta_at:] = block[:, meta_at:]
    return out
