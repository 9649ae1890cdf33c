"""Host buffers for large embedding tables, backed by transparent huge pages where possible.

Lookups and sparse updates touch rows scattered over gigabytes. With 4 KiB pages almost
every row is a TLB miss; 2 MiB pages cut those misses by 512x. Linux hands a mapping huge
pages only when asked (``/sys/kernel/mm/transparent_hugepage/enabled`` is usually
``madvise``), so large buffers are mapped with ``mmap`` and advised ``MADV_HUGEPAGE``.
Measured on this project's 2-core machine: torch's ``embedding_bag`` over 8 x 1M x 64
float32 tables ran 14-20% faster on such a buffer than on a plain allocation.

The same holds for the hash maps and row metadata of dynamic tables, which are probed at
random. Elsewhere (other systems, small buffers, or ``RECEMBED_HUGEPAGES=0``) the buffers
are plain allocations. The memory is freed when the last array or tensor viewing it is gone.
"""

from __future__ import annotations

import mmap
import os

import numpy as np
import torch

__all__ = ["HUGE_PAGE_BYTES", "empty_float32", "huge_pages_enabled", "zeros_array"]

HUGE_PAGE_BYTES = 2 << 20
_MIN_BYTES = 16 << 20  # below this the TLB covers the buffer anyway


def huge_pages_enabled() -> bool:
    """Whether large buffers are advised to use huge pages (Linux, not switched off by env)."""
    if os.environ.get("RECEMBED_HUGEPAGES", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return hasattr(mmap, "MADV_HUGEPAGE") and hasattr(mmap, "MAP_ANONYMOUS")


def _huge_mapping(nbytes: int) -> memoryview | None:
    """``nbytes`` of zeroed memory starting on a 2 MiB boundary, advised to use huge pages; None
    when the buffer is small, huge pages are off, or the kernel refuses."""
    if nbytes < _MIN_BYTES or not huge_pages_enabled():
        return None
    try:
        mapping = mmap.mmap(-1, nbytes + HUGE_PAGE_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        mapping.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError):  # no memory for a mapping, or the kernel refuses the advice
        return None
    address = np.frombuffer(mapping, np.uint8, count=1).ctypes.data
    start = -address % HUGE_PAGE_BYTES  # huge pages only cover 2 MiB-aligned spans
    return memoryview(mapping)[start : start + nbytes]  # the view keeps ``mapping`` alive


def empty_float32(numel: int) -> torch.Tensor:
    """An uninitialised contiguous ``(numel,)`` float32 CPU tensor; huge-page backed when large.

    Example:
        >>> buf = empty_float32(1 << 20)
        >>> buf.shape, buf.dtype
        (torch.Size([1048576]), torch.float32)
    """
    view = _huge_mapping(int(numel) * 4)
    if view is None:
        return torch.empty(int(numel), dtype=torch.float32)
    return torch.frombuffer(view, dtype=torch.float32)  # keeps ``view`` (and the mapping) alive


def zeros_array(shape: int | tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A zeroed C-contiguous numpy array; huge-page backed when large (``np.zeros`` otherwise).

    Example:
        >>> zeros_array((4, 2), np.int64).sum()
        0
    """
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    view = _huge_mapping(count * dtype.itemsize)
    if view is None:
        return np.zeros(shape, dtype)
    return np.frombuffer(view, dtype).reshape(shape)  # anonymous mappings start zeroed
