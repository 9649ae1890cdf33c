"""Checkpoints: round trip, safe loading, corruption detection, atomic replacement, rotation."""

import collections
import enum
import os
import pickle

import numpy as np
import pytest
import torch

from recembed.errors import CheckpointError, ConfigError
from recembed.train import checkpoint as checkpoint_module
from recembed.train.checkpoint import (
    RESERVED_KEY,
    CheckpointManager,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


def leftover_temp_files(folder):
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_round_trip_of_nested_plain_data(tmp_path):
    big = torch.arange(10_000, dtype=torch.float32)
    state = {
        "model": {"weight": torch.randn(3, 4), "half": torch.ones(2, dtype=torch.bfloat16)},
        "optimizer": {
            "state": {0: {"step": torch.tensor(5.0)}},
            "param_groups": [{"betas": (0.9, 0.999), "foreach": None}],
        },
        "epoch": 3,
        "lr": 0.01,
        "name": "run-1",
        "done": False,
        "numpy": np.arange(4, dtype=np.int32),
        "numpy_scalar": np.float32(2.5),
        "empty": torch.zeros(0, 3),
        "view": big[:3],
    }
    path = save_checkpoint(tmp_path / "ckpt.pt", state)
    loaded = load_checkpoint(path)
    assert RESERVED_KEY not in loaded
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    assert loaded["model"]["half"].dtype == torch.bfloat16
    assert loaded["optimizer"]["state"][0]["step"].item() == 5.0
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert loaded["optimizer"]["param_groups"][0]["foreach"] is None
    assert (loaded["epoch"], loaded["lr"], loaded["name"], loaded["done"]) == (
        3,
        0.01,
        "run-1",
        False,
    )
    assert torch.equal(loaded["numpy"], torch.arange(4, dtype=torch.int32))
    assert loaded["numpy_scalar"] == 2.5 and isinstance(loaded["numpy_scalar"], float)
    assert loaded["empty"].shape == (0, 3)
    assert loaded["view"].tolist() == [0.0, 1.0, 2.0]
    # the 3-element view was stored without its 40 kB storage
    assert path.stat().st_size < 20_000
    # a plain weights-only torch.load reads it too
    assert torch.equal(
        torch.load(path, weights_only=True)["model"]["weight"], state["model"]["weight"]
    )
    assert leftover_temp_files(tmp_path) == []


class Colour(enum.IntEnum):
    RED = 1


def test_subclasses_are_stored_as_their_plain_base_types(tmp_path):
    parameter = torch.nn.Parameter(torch.ones(2))
    state = {
        "param": parameter,
        "enum": Colour.RED,
        "ordered": collections.OrderedDict(a=1),
        "size": torch.Size([2, 3]),
    }
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.pt", state))
    assert type(loaded["param"]) is torch.Tensor and loaded["param"].tolist() == [1.0, 1.0]
    assert type(loaded["enum"]) is int and loaded["enum"] == 1
    assert loaded["ordered"] == {"a": 1}
    assert loaded["size"] == (2, 3)


def test_optimizer_state_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "opt": opt.state_dict()})
    state = load_checkpoint(tmp_path / "c.pt")
    clone = torch.nn.Linear(3, 1)
    clone.load_state_dict(state["model"])
    clone_opt = torch.optim.Adam(clone.parameters(), lr=0.1)
    clone_opt.load_state_dict(state["opt"])
    x = torch.randn(4, 3)
    for m, o in ((model, opt), (clone, clone_opt)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    assert torch.equal(model.weight, clone.weight)


class CodeOnLoad:
    """Unpickling this object would create ``marker`` -- a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "raw pickle"])
def test_malicious_pickle_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"weight": torch.ones(2), "hook": CodeOnLoad(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match="refused to load.*evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()
    # sanity check of the test itself: an unrestricted unpickle does run the payload
    pickle.loads(pickle.dumps(CodeOnLoad(marker)))
    assert marker.exists()


def test_truncated_and_corrupted_files_are_detected(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.arange(1000, dtype=torch.float32)})
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt is truncated or corrupted"):
        load_checkpoint(truncated)
    # flip one bit inside the tensor payload: torch's reader does not notice, the digest does
    flipped = bytearray(data)
    offset = flipped.find(np.float32(500.0).tobytes())
    assert offset > 0
    flipped[offset] ^= 1
    corrupted = tmp_path / "flipped.pt"
    corrupted.write_bytes(bytes(flipped))
    assert torch.load(corrupted, weights_only=True)["w"][500].item() != 500.0
    with pytest.raises(CheckpointError, match="flipped.pt is corrupted: content SHA-256"):
        load_checkpoint(corrupted)
    for name, content in [("empty.pt", b""), ("text.pt", b"hello, not a checkpoint")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=f"{name} is truncated or corrupted"):
            load_checkpoint(tmp_path / name)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is not a file"):
        load_checkpoint(tmp_path)
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(1)}, plain)
    with pytest.raises(CheckpointError, match="no recembed checksum.*verify=False"):
        load_checkpoint(plain)
    assert load_checkpoint(plain, verify=False)["w"].item() == 1.0
    future = tmp_path / "future.pt"
    torch.save({"w": torch.ones(1), RESERVED_KEY: {"format_version": 99, "sha256": "x"}}, future)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(future)
    listed = tmp_path / "list.pt"
    torch.save([1, 2], listed)
    with pytest.raises(CheckpointError, match="holds a list, not a dict"):
        load_checkpoint(listed)


def test_invalid_state_names_key_and_type(tmp_path):
    with pytest.raises(
        CheckpointError, match=r"state\['model'\]\['layers'\]\[1\] has type builtins.object"
    ):
        save_checkpoint(tmp_path / "c.pt", {"model": {"layers": [torch.ones(1), object()]}})
    with pytest.raises(CheckpointError, match=r"key \(1, 2\) of type tuple"):
        save_checkpoint(tmp_path / "c.pt", {"m": {(1, 2): 3}})
    with pytest.raises(CheckpointError, match="sparse_coo tensor"):
        save_checkpoint(tmp_path / "c.pt", {"s": torch.eye(2).to_sparse()})
    cyclic: dict = {"a": []}
    cyclic["a"].append(cyclic)
    with pytest.raises(CheckpointError, match="contains itself"):
        save_checkpoint(tmp_path / "c.pt", cyclic)
    with pytest.raises(CheckpointError, match="reserved key"):
        save_checkpoint(tmp_path / "c.pt", {RESERVED_KEY: 1})
    with pytest.raises(CheckpointError, match="must be a dict, got list"):
        save_checkpoint(tmp_path / "c.pt", [1])
    with pytest.raises(CheckpointError, match="does not exist"):
        save_checkpoint(tmp_path / "no_folder" / "c.pt", {"a": 1})
    assert os.listdir(tmp_path) == []


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", {"step": 1, "w": torch.ones(3)})
    before = path.read_bytes()
    # invalid content is rejected before anything is written
    with pytest.raises(CheckpointError, match=r"state\['bad'\]"):
        save_checkpoint(path, {"step": 2, "bad": lambda: None})
    assert path.read_bytes() == before

    # a write that dies half way (disk full) leaves the old file and no temporary file
    def partial_save(obj, handle):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", partial_save)
    with pytest.raises(CheckpointError, match="could not write checkpoint.*No space left"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert leftover_temp_files(tmp_path) == []


def test_manager_keeps_last_n_and_finds_latest_by_step(tmp_path):
    manager = CheckpointManager(tmp_path / "ckpts", keep_last=2)
    assert manager.latest() is None and manager.load_latest() is None
    for step in (5, 10, 100, 7):
        manager.save({"step": step}, step)
    assert [s for s, _ in manager.checkpoints_with_steps()] == [10, 100]
    assert load_checkpoint(manager.latest())["step"] == 100
    assert manager.load_latest()["step"] == 100
    # stray files that do not match the pattern are ignored
    (tmp_path / "ckpts" / ".checkpoint-000000000200.pt.123.tmp").write_bytes(b"partial")
    (tmp_path / "ckpts" / "notes.txt").write_text("x")
    assert latest_checkpoint(tmp_path / "ckpts").name == "checkpoint-000000000100.pt"
    # unpadded names order numerically, not alphabetically
    other = tmp_path / "other"
    other.mkdir()
    for step in (9, 10):
        save_checkpoint(other / f"model-{step}.pt", {"step": step})
    assert latest_checkpoint(other, prefix="model").name == "model-10.pt"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_manager_keep_all_and_config_errors(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=None, prefix="m")
    for step in range(4):
        manager.save({"step": step}, step)
    assert len(manager.checkpoints()) == 4
    with pytest.raises(ConfigError, match="keep_last = 0"):
        CheckpointManager(tmp_path, keep_last=0)
    with pytest.raises(ConfigError, match="prefix"):
        CheckpointManager(tmp_path, prefix="a/b")
    with pytest.raises(ConfigError, match="step = -1"):
        manager.save({}, -1)
    with pytest.raises(CheckpointError, match="not a directory"):
        latest_checkpoint(manager.checkpoints()[0])
