"""Epoch checkpoints of either kind: finding the newest, removing sharded folders, thread counts."""

import io

import pytest
import torch

from recembed.errors import CheckpointError, ConfigError
from recembed.train.checkpoint import save_checkpoint
from recembed.train.config import RunConfig
from recembed.train.loop import Trainer
from recembed.train.run_state import (
    check_resumable,
    latest_run_checkpoint,
    list_sharded_checkpoints,
    read_run_state,
    remove_sharded_checkpoint,
    sharded_checkpoint_path,
    thread_count,
)


def fake_sharded(directory, epoch: int, complete: bool = True):
    folder = sharded_checkpoint_path(directory, epoch)
    folder.mkdir(parents=True)
    (folder / "shard-abc-r00000.pt").write_bytes(b"x")
    if complete:
        (folder / "manifest.json").write_text("{}")
    return folder


def test_the_newest_epoch_wins_whether_file_or_sharded_folder(tmp_path):
    assert latest_run_checkpoint(tmp_path / "missing") is None
    save_checkpoint(tmp_path / "checkpoint-000000000002.pt", {"epoch": 2})
    fake_sharded(tmp_path, 1)
    assert latest_run_checkpoint(tmp_path).name == "checkpoint-000000000002.pt"
    newest = fake_sharded(tmp_path, 3)
    fake_sharded(tmp_path, 4, complete=False)  # an interrupted save has no manifest: not a checkpoint
    assert latest_run_checkpoint(tmp_path) == newest
    assert [e for e, _ in list_sharded_checkpoints(tmp_path)] == [1, 3]


def test_removing_a_sharded_folder_takes_its_manifest_first_and_all_files(tmp_path):
    folder = fake_sharded(tmp_path, 1)
    remove_sharded_checkpoint(folder)
    assert not folder.exists()


def test_reading_a_sharded_folder_without_a_manifest_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not a sharded checkpoint"):
        read_run_state(fake_sharded(tmp_path, 1, complete=False))


def test_resuming_needs_a_run_checkpoint_with_the_same_config(tmp_path):
    config = RunConfig().to_dict()
    with pytest.raises(CheckpointError, match="not a recembed training checkpoint"):
        check_resumable({"epoch": 1}, config, tmp_path)
    state = {"format": "recembed-run", "config": RunConfig().to_dict()}
    state["config"]["train"]["nproc"] = 4  # the number of ranks may change
    check_resumable(state, config, tmp_path)
    state["config"]["train"]["batch_size"] = 7
    with pytest.raises(CheckpointError, match=r"train.batch_size: 7 -> 1024"):
        check_resumable(state, config, tmp_path)


def test_threads_are_shared_by_the_ranks_of_a_machine(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert thread_count(3, processes=4) == 3
    assert thread_count(0) == 4 and thread_count(0, processes=2) == 4 and thread_count(0, processes=16) == 1


def small_rating_config(**train) -> RunConfig:
    return RunConfig.from_dict({
        "data": {"synthetic": {"num_users": 30, "num_items": 20, "num_ratings": 400}},
        "model": {"embedding_dim": 4},
        "train": {"task": "rating", "epochs": 1, "batch_size": 64, "threads": 1, "progress": "none",
                  "plot": False, **train}})


def test_a_fresh_one_process_run_removes_an_earlier_sharded_runs_checkpoints(tmp_path):
    old = fake_sharded(tmp_path / "checkpoints", 5)
    Trainer(small_rating_config(), out_dir=tmp_path, log=io.StringIO()).fit()
    assert not old.exists()
    assert latest_run_checkpoint(tmp_path / "checkpoints").name == "checkpoint-000000000001.pt"
    assert torch.load(tmp_path / "model.pt", weights_only=True)["epoch"] == 1


def test_the_one_process_trainer_refuses_a_config_with_several_ranks(tmp_path):
    with pytest.raises(ConfigError, match="fit_run"):
        Trainer(small_rating_config(nproc=2), out_dir=tmp_path, log=io.StringIO()).fit()
