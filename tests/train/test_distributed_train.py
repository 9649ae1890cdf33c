"""Training over ranks (`recembed train --nproc N`) equals one process training on the same global batches.

Two ranks share each global batch: the rating run's batches split evenly, the DLRM and BPR
runs' batches (63 samples, and a short last batch) split unevenly, which the per-rank loss
weighting must make exact. One launch trains several runs in sequence to keep the tests fast.
"""

from __future__ import annotations

import io
import json

import pytest
import torch

from recembed.cli import main
from recembed.distributed import launch, read_manifest
from recembed.errors import CheckpointError, ConfigError
from recembed.train.checkpoint import load_checkpoint
from recembed.train.config import RunConfig
from recembed.train.distributed_run import DistributedTrainer, _rebuild_error, fit_run, torchrun_world_size
from recembed.train.loop import Trainer, evaluate_checkpoint
from recembed.train.run_state import latest_run_checkpoint, read_run_state

from . import distributed_train_workers as workers

DATA = {
    "rating": {"synthetic": {"num_users": 60, "num_items": 50, "num_ratings": 2400, "noise": 0.3}},
    "implicit": {"synthetic": {"num_users": 80, "num_items": 60, "interactions_per_user": 10.0},
                 "split": "leave_last_out"},
    "ctr": {"synthetic": {"num_samples": 3000, "num_sparse": 4, "num_dense": 3, "max_cardinality": 50}},
}
QUIET = {"threads": 1, "progress": "none", "early_stopping": False, "plot": False}


def config_values(task: str, model: dict | None = None, **train) -> dict:
    values = {
        "data": DATA[task],
        "model": {"embedding_dim": 8, "bottom_mlp": [8], "top_mlp": [8], "deep_mlp": [16], "tower_dims": [16, 8],
                  **(model or {})},
        "train": {"task": task, "epochs": 2, "batch_size": 64, **QUIET, **train},
        "eval": {"ks": [5]},
    }
    return RunConfig.from_dict(values).to_dict()


RUNS = {  # name: (config values, resume)
    "dlrm": (config_values("ctr", {"kind": "dlrm"}, batch_size=63, dense_lr=0.01), False),
    "dlrm_resumed": (config_values("ctr", {"kind": "dlrm"}, batch_size=63, dense_lr=0.01, epochs=1), False),
    "dlrm_resumed+": (config_values("ctr", {"kind": "dlrm"}, batch_size=63, dense_lr=0.01), True),
    "bpr": (config_values("implicit", {"loss": "bpr"}), False),
    "dcnv2": (config_values("ctr", {"kind": "dcnv2", "low_rank": 4}, epochs=1), False),
    "deepfm": (config_values("ctr", {"kind": "deepfm"}, epochs=1), False),
    "two_tower": (config_values("implicit", {"kind": "two_tower", "embedding_lr": 0.1}, epochs=1), False),
    "short_last": (config_values("implicit", {"loss": "bpr"}, batch_size=590, epochs=1), False),  # 591 = 590 + 1
    "no_checkpoint": (config_values("rating"), True),
}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """Every run of RUNS trained by two ranks: ``(root folder, {name: rank 0's summary})``."""
    root = tmp_path_factory.mktemp("sharded")
    folder = {name: str(root / name.rstrip("+")) for name in RUNS}
    runs = [(values, folder[name], resume) for name, (values, resume) in RUNS.items()]
    summaries = launch(workers.fit_in_sequence, 2, runs, start_method="forkserver", threads_per_rank=1,
                       timeout_s=60.0)[0]
    return root, dict(zip(RUNS, summaries))


def fit_one_process(values: dict, out_dir, resume: bool = False):
    return Trainer(RunConfig.from_dict(values), out_dir=out_dir, log=io.StringIO()).fit(resume=resume)


def assert_same_model(path_a, path_b, atol: float, skip: tuple[str, ...] = ()) -> None:
    a, b = load_checkpoint(path_a)["model"], load_checkpoint(path_b)["model"]
    assert sorted(a) == sorted(b)
    for key in a:
        if not key.startswith(skip):
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=1e-4, msg=key)


@pytest.mark.parametrize("name", ["dlrm", "bpr", "dcnv2", "deepfm"])
def test_two_ranks_train_the_same_model_as_one_process(sharded, tmp_path, name):
    root, summaries = sharded
    single = fit_one_process(RUNS[name][0], tmp_path)
    summary = summaries[name]
    assert summary["metrics"].keys() == single.metrics.keys()
    for metric, value in single.metrics.items():
        assert summary["metrics"][metric] == pytest.approx(value, abs=1e-4), metric
    losses = summary["history"]["step_losses"]
    torch.testing.assert_close(losses, torch.tensor(single.history.step_losses, dtype=torch.float64),
                               atol=1e-5, rtol=1e-5)
    # BPR scores differences of one user's items, so the user bias cancels: its gradient is
    # rounding noise (~1e-9), which row-wise Adagrad scales up to steps of lr size either way.
    noise = ("biases.embedding_bags.user_bias",) if name == "bpr" else ()
    assert_same_model(root / name / "model.pt", tmp_path / "model.pt", atol=2e-5, skip=noise)


def test_a_sharded_run_resumed_at_two_ranks_ends_where_a_straight_run_does(sharded):
    root, summaries = sharded
    resumed, straight = summaries["dlrm_resumed+"], summaries["dlrm"]
    assert resumed["metrics"] == pytest.approx(straight["metrics"], abs=1e-6)
    torch.testing.assert_close(resumed["history"]["step_losses"], straight["history"]["step_losses"])
    assert_same_model(root / "dlrm_resumed" / "model.pt", root / "dlrm" / "model.pt", atol=1e-6)
    # Epoch checkpoints are sharded folders (manifest + one file per rank), rotated like files.
    folders = sorted(p.name for p in (root / "dlrm" / "checkpoints").iterdir())
    assert folders == ["sharded-000000000001", "sharded-000000000002"]
    manifest = read_manifest(root / "dlrm" / "checkpoints" / folders[-1])
    assert manifest["world_size"] == 2 and set(manifest["collections"]["embeddings"]["tables"]) == {
        "t_C1", "t_C2", "t_C3", "t_C4"}


def test_a_sharded_epoch_checkpoint_reads_as_one_plain_run_state(sharded):
    root, _ = sharded
    path = latest_run_checkpoint(root / "bpr" / "checkpoints")
    assert path.name == "sharded-000000000002"
    state = read_run_state(path)
    final = load_checkpoint(root / "bpr" / "model.pt")["model"]
    assert state["epoch"] == 2 and state["config"]["train"]["nproc"] == 1
    assert state["id_maps"]["item_factors"].tolist() == list(range(1, 61))
    for key, value in final.items():  # no best.pt swap: early stopping is off and the last epoch is best
        torch.testing.assert_close(state["model"][key], value)
    config = RunConfig.from_dict(RUNS["bpr"][0])
    assert evaluate_checkpoint(config, path) == pytest.approx(evaluate_checkpoint(config, root / "bpr" / "model.pt"))


def test_two_tower_trains_over_ranks_with_in_batch_negatives_of_each_part(sharded):
    root, summaries = sharded
    metrics = summaries["two_tower"]["metrics"]
    assert 0.0 <= metrics["ndcg@5"] <= metrics["hit_rate@5"] <= 1.0
    assert len(summaries["two_tower"]["history"]["step_losses"]) == 10  # ceil(591 / 64)
    assert (root / "two_tower" / "model.pt").is_file()


def test_a_batch_smaller_than_the_number_of_ranks_is_skipped(sharded):
    _, summaries = sharded
    assert len(summaries["short_last"]["history"]["step_losses"]) == 1  # the 1-sample batch is not trained


def test_an_input_error_in_the_ranks_comes_back_as_its_own_class(sharded):
    _, summaries = sharded
    kind, message = summaries["no_checkpoint"]["error"]
    error = _rebuild_error(kind, message)
    assert isinstance(error, CheckpointError) and "there is no checkpoint" in str(error)


def write_config(tmp_path) -> str:
    path = tmp_path / "mf.toml"
    path.write_text("""
[data.synthetic]
num_users = 60
num_items = 50
num_ratings = 2400
[model]
embedding_dim = 8
[train]
task = "rating"
epochs = 2
batch_size = 64
threads = 1
progress = "none"
plot = false
early_stopping = false
""")
    return str(path)


def last_json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_recembed_train_nproc_2_matches_one_process_and_its_model_is_plain(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["train", config, "--out", str(tmp_path / "one")]) == 0
    one = last_json_line(capsys.readouterr().out)
    assert main(["train", config, "--out", str(tmp_path / "two"), "--nproc", "2"]) == 0
    two = last_json_line(capsys.readouterr().out)
    assert two == pytest.approx(one, abs=1e-6)
    assert_same_model(tmp_path / "two" / "model.pt", tmp_path / "one" / "model.pt", atol=1e-6)
    assert json.loads((tmp_path / "two" / "config.json").read_text())["train"]["nproc"] == 2
    # model.pt is the plain model: evaluate and export read it as any run's.
    assert main(["evaluate", config, "--checkpoint", str(tmp_path / "two" / "model.pt")]) == 0
    assert last_json_line(capsys.readouterr().out)["rmse"] == pytest.approx(two["rmse"], abs=1e-9)
    assert main(["export", "--checkpoint", str(tmp_path / "two" / "model.pt"), "--out", str(tmp_path / "emb"),
                 "--format", "npy"]) == 0
    assert "item_factors: 50 x 8" in capsys.readouterr().out
    # One process resumes the two-rank run from its sharded checkpoint and ends where one process would.
    assert main(["train", config, "--out", str(tmp_path / "two"), "--epochs", "3", "--resume"]) == 0
    resumed = last_json_line(capsys.readouterr().out)
    assert main(["train", config, "--out", str(tmp_path / "three"), "--epochs", "3"]) == 0
    assert resumed == pytest.approx(last_json_line(capsys.readouterr().out), abs=1e-6)


@pytest.mark.parametrize("nproc, message", [("0", "train.nproc = 0; it must be >= 1"),
                                            ("-2", "train.nproc = -2; it must be >= 1"),
                                            ("65", "train.nproc = 65 is more than train.batch_size = 64"),
                                            ("two", "--train.nproc 'two'; expected int")])
def test_a_bad_nproc_is_a_config_error(tmp_path, capsys, nproc, message):
    assert main(["train", write_config(tmp_path), "--out", str(tmp_path), "--nproc", nproc]) == 1
    assert message in capsys.readouterr().err
    with pytest.raises(ConfigError, match="train.nproc"):
        RunConfig.from_dict({"train": {"nproc": 0}})


def test_sharded_training_needs_fused_embedding_optimizers(tmp_path):
    config = RunConfig.from_dict({"model": {"embedding_optimizer": "none"}})
    with pytest.raises(ConfigError, match="needs a fused embedding optimizer"):
        DistributedTrainer(config, out_dir=tmp_path)


def test_under_torchrun_the_world_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert torchrun_world_size() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert torchrun_world_size() == 2
    config = RunConfig.from_dict({"train": {"nproc": 3}})
    with pytest.raises(ConfigError, match="one of 2 ranks started by torchrun"):
        fit_run(config, out_dir=tmp_path)
