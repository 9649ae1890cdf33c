"""Huge-page host buffers: right shape, zeroed where promised, aligned, and alive as long as viewed."""

import gc

import numpy as np
import pytest
import torch

from recembed.kernels import host_memory
from recembed.kernels.host_memory import HUGE_PAGE_BYTES, empty_float32, huge_pages_enabled, zeros_array

LARGE = (32 << 20) // 4  # 32 MiB of float32: above the huge-page threshold


def test_small_buffers_are_plain_allocations():
    t = empty_float32(100)
    assert t.shape == (100,) and t.dtype == torch.float32 and t.is_contiguous()
    a = zeros_array((3, 5), np.int32)
    assert a.shape == (3, 5) and a.dtype == np.int32 and not a.any()


@pytest.mark.skipif(not huge_pages_enabled(), reason="huge pages need Linux madvise")
def test_large_float_buffer_is_aligned_writable_and_outlives_its_mapping():
    t = empty_float32(LARGE)
    assert t.shape == (LARGE,) and t.data_ptr() % HUGE_PAGE_BYTES == 0
    t.fill_(1.5)
    gc.collect()  # the mmap object is only referenced through the tensor
    assert float(t[-1]) == 1.5 and float(t.sum()) == 1.5 * LARGE
    view = t[10:20].view(2, 5)
    del t
    gc.collect()
    assert torch.equal(view, torch.full((2, 5), 1.5))


@pytest.mark.skipif(not huge_pages_enabled(), reason="huge pages need Linux madvise")
def test_large_numpy_buffer_starts_zeroed_with_its_shape():
    a = zeros_array((LARGE // 2, 2), np.int64)
    assert a.shape == (LARGE // 2, 2) and a.flags["C_CONTIGUOUS"] and a.flags["WRITEABLE"]
    assert a.ctypes.data % HUGE_PAGE_BYTES == 0
    assert not a[::4096].any()
    a[-1, 1] = 7
    assert a.sum() == 7


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("RECEMBED_HUGEPAGES", "0")
    assert not huge_pages_enabled()
    assert host_memory._huge_mapping(LARGE * 4) is None
    assert empty_float32(LARGE).shape == (LARGE,)
