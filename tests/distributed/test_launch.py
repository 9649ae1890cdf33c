"""Launch and environment checks that need no processes."""

from __future__ import annotations

import pytest
import torch.distributed as dist

from recembed.distributed import Comm, free_port, init_from_env, launch
from recembed.errors import ConfigError, DistributedError


def _noop() -> None:
    return None


def test_launch_checks_its_arguments():
    with pytest.raises(ConfigError, match="nproc must be an int >= 1, got 0"):
        launch(_noop, 0)
    with pytest.raises(ConfigError, match="start_method must be 'spawn' or 'forkserver'"):
        launch(_noop, 1, start_method="fork")


def test_init_from_env_names_the_missing_variable(monkeypatch):
    if dist.is_initialized():
        pytest.skip("a process group already exists in this process")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DistributedError, match="RANK is not set; start the job with torchrun"):
        init_from_env()
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(DistributedError, match="RANK='zero' is not an integer"):
        init_from_env()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(DistributedError, match="MASTER_ADDR is not set"):
        init_from_env()


def test_collectives_need_a_process_group():
    if dist.is_initialized():
        pytest.skip("a process group already exists in this process")
    with pytest.raises(DistributedError, match="torch.distributed is not initialised"):
        Comm()


def test_free_port_is_a_tcp_port():
    assert 1024 <= free_port() < 65536
