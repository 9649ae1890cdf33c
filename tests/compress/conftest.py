"""Run every compression test on one thread."""

from __future__ import annotations

import numba
import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """The tensors here are tiny; worker threads on a shared 2-core machine only add waiting."""
    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(torch_threads)
    numba.set_num_threads(numba_threads)
