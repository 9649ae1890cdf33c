"""The training loop: every task learns, resuming is exact, checkpoints are safe, outputs are written."""

import io
import json

import pytest
import torch

from recembed.errors import CheckpointError, ConfigError, DataFormatError
from recembed.train.config import RunConfig
from recembed.train.loop import Trainer, evaluate_checkpoint
from recembed.train.tasks import make_task

TINY_DATA = {
    "rating": {"synthetic": {"num_users": 60, "num_items": 50, "num_ratings": 2400, "noise": 0.3}},
    "implicit": {"synthetic": {"num_users": 80, "num_items": 60, "interactions_per_user": 10.0},
                 "split": "leave_last_out"},
    "ctr": {"synthetic": {"num_samples": 3000, "num_sparse": 4, "num_dense": 3, "max_cardinality": 50}},
}


def tiny_config(task: str, **sections) -> RunConfig:
    """A run small enough to train in about a second, single-threaded, quiet."""
    values = {
        "data": dict(TINY_DATA[task]),
        "model": {"embedding_dim": 8, "tower_dims": [16, 8], "bottom_mlp": [8], "top_mlp": [8],
                  "deep_mlp": [16]},
        "train": {"task": task, "epochs": 2, "batch_size": 64, "threads": 1, "progress": "none",
                  "early_stopping": False, "plot": False},
        "eval": {"ks": [5]},
    }
    if task == "ctr":
        values["train"]["dense_lr"] = 0.01  # few steps: the MLPs need a larger step to learn
    for section, entries in sections.items():
        values.setdefault(section, {}).update(entries)
    return RunConfig.from_dict(values)


def fit(config, out_dir, resume=False, **kwargs):
    return Trainer(config, out_dir=out_dir, log=io.StringIO(), **kwargs).fit(resume=resume)


def untrained_metrics(config):
    task = make_task(config)
    task.load_data()
    torch.manual_seed(config.train.seed)
    model = task.build_model()
    model.eval()
    return task.evaluate(model, "test")


@pytest.mark.parametrize("task, model, metric, better", [
    ("rating", {}, "rmse", "lower"),
    ("implicit", {"loss": "bpr"}, "ndcg@5", "higher"),
    ("implicit", {"loss": "sampled_softmax", "num_negatives": 8, "negative_sampling": "popularity"},
     "recall@5", "higher"),
    ("implicit", {"kind": "two_tower", "embedding_lr": 0.1}, "ndcg@5", "higher"),
    ("ctr", {"kind": "dlrm"}, "auc", "higher"),
    ("ctr", {"kind": "dcnv2", "low_rank": 4}, "auc", "higher"),
    ("ctr", {"kind": "deepfm"}, "auc", "higher"),
])
def test_each_task_improves_on_the_untrained_model(tmp_path, task, model, metric, better):
    epochs = 6 if task == "implicit" else 3
    config = tiny_config(task, model=model, train={"epochs": epochs})
    before = untrained_metrics(config)[metric]
    after = fit(config, tmp_path).metrics[metric]
    margin = {"rmse": 0.1, "auc": 0.05}.get(metric, 0.05)
    if better == "lower":
        assert after < before - margin, (before, after)
    else:
        assert after > before + margin, (before, after)


@pytest.mark.parametrize("task, model", [
    ("rating", {}),
    ("implicit", {"loss": "sampled_softmax", "num_negatives": 4}),
    ("ctr", {"dropout": 0.2}),  # dropout draws from the global RNG: its state must be restored too
])
def test_resuming_after_two_epochs_equals_four_straight_epochs(tmp_path, task, model):
    four = fit(tiny_config(task, model=model, train={"epochs": 4}), tmp_path / "straight")
    fit(tiny_config(task, model=model, train={"epochs": 2}), tmp_path / "resumed")
    resumed = fit(tiny_config(task, model=model, train={"epochs": 4}), tmp_path / "resumed", resume=True)
    assert resumed.metrics == four.metrics
    assert resumed.history.step_losses == four.history.step_losses
    expected = four.model.state_dict()
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_checkpoints_hold_the_whole_run_state_and_load_weights_only(tmp_path):
    config = tiny_config("implicit", model={"loss": "bpr"}, train={"epochs": 2, "keep_checkpoints": 1})
    fit(config, tmp_path)
    files = sorted((tmp_path / "checkpoints").iterdir())
    assert [f.name for f in files] == ["checkpoint-000000000002.pt"]
    state = torch.load(files[0], weights_only=True)  # plain data only: nothing to execute
    assert state["epoch"] == 2 and state["data_seed"] == config.train.seed
    assert state["global_step"] == len(state["history"]["steps"]) > 0
    assert "factors.fused.state.item_factors.row_sum" in state["model"]  # fused optimizer state
    assert int(state["model"]["factors.fused.state.item_factors.step"]) == state["global_step"]
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    assert state["early_stopping"]["metric"] == "ndcg@5" and len(state["history"]["epochs"]) == 2
    assert state["id_maps"]["item_factors"].tolist() == list(range(1, 61))  # raw ids are 1-based
    assert state["config"]["train"]["task"] == "implicit"


def test_dense_optimizer_state_is_checkpointed_for_models_with_mlps(tmp_path):
    fit(tiny_config("ctr", train={"epochs": 1}), tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "checkpoint-000000000001.pt", weights_only=True)
    assert state["dense_optimizer"]["state"]  # Adam moments of the MLPs
    assert "embeddings.fused.state.t_C1.row_sum" in state["model"]


def test_outputs_are_written(tmp_path):
    result = fit(tiny_config("rating", train={"plot": True}), tmp_path)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["rmse"] == result.metrics["rmse"] and summary["epochs"] == 2
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "history.json").read_text())["epochs"][0].keys() >= {"train_loss", "rmse"}
    assert json.loads((tmp_path / "config.json").read_text())["train"]["task"] == "rating"
    assert evaluate_checkpoint(tiny_config("rating"), tmp_path / "model.pt") == result.metrics


def test_early_stopping_ends_a_run_that_stops_improving(tmp_path):
    # With a zero learning rate nothing changes, so the second epoch is already no better.
    config = tiny_config("rating", model={"embedding_lr": 0.0},
                         train={"epochs": 6, "early_stopping": True, "patience": 0})
    result = fit(config, tmp_path)
    assert len(result.history.epochs) == 2 and result.best_epoch == 1


def test_the_best_epoch_is_restored(tmp_path):
    # An absurd learning rate makes later epochs worse; the evaluated model is the best one.
    config = tiny_config("ctr", model={"embedding_lr": 3.0}, train={"epochs": 3, "dense_lr": 0.3})
    result = fit(config, tmp_path)
    aucs = result.history.metric("auc")
    best = max(range(3), key=lambda i: aucs[i])
    assert result.best_epoch == best + 1


def test_resume_needs_a_checkpoint_and_an_unchanged_config(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        fit(tiny_config("rating"), tmp_path / "empty", resume=True)
    fit(tiny_config("rating", train={"epochs": 1}), tmp_path / "run")
    with pytest.raises(CheckpointError, match=r"model.embedding_dim: 8 -> 16"):
        fit(tiny_config("rating", model={"embedding_dim": 16}), tmp_path / "run", resume=True)


def test_missing_data_and_bad_lines_are_reported_with_their_location(tmp_path):
    with pytest.raises(ConfigError, match="data.path = .*does not exist"):
        fit(tiny_config("rating", data={"source": "movielens", "path": str(tmp_path / "u.data")}), tmp_path)
    data = tmp_path / "u.data"
    data.write_text("1\t1\t5\t100\n2\t1\t4\t101\n3\tone\t3\t102\n")
    with pytest.raises(DataFormatError, match=r"u\.data:3: "):
        fit(tiny_config("rating", data={"source": "movielens", "path": str(data)}), tmp_path)


def test_tensorboard_logs_scalars_and_the_projector(tmp_path):
    pytest.importorskip("tensorboard")
    fit(tiny_config("rating", train={"epochs": 1, "log_every": 5}), tmp_path / "run", tensorboard_dir=tmp_path / "tb")
    files = [p.name for p in (tmp_path / "tb").rglob("*")]
    assert any(name.startswith("events.out.tfevents") for name in files)
    assert "projector_config.pbtxt" in files
    metadata = next((tmp_path / "tb").rglob("metadata.tsv")).read_text().splitlines()
    assert metadata[0] == "item\ttrain_count" and len(metadata) == 51  # header + every item


def test_csv_files_with_a_feature_spec_feed_the_rating_and_ctr_tasks(tmp_path):
    ratings = tmp_path / "ratings.csv"
    rows = [f"u{u},m{(u * 7 + j) % 30},{1 + (u + j) % 5},{1000 + j}" for u in range(40) for j in range(12)]
    ratings.write_text("userId,movieId,rating,timestamp\n" + "\n".join(rows) + "\n")
    spec = {"sparse": [{"name": "user", "column": "userId"}, {"name": "item", "column": "movieId"}],
            "label": "rating", "timestamp": "timestamp"}
    result = fit(tiny_config("rating", data={"source": "csv", "path": str(ratings), "spec": spec,
                                             "split": "leave_last_out"}), tmp_path / "mf")
    assert result.metrics["rmse"] > 0
    state = torch.load(tmp_path / "mf" / "model.pt", weights_only=True)
    assert state["id_maps"]["user_factors"][:2] == ["<oov>", "u0"]  # raw string ids, by frequency

    clicks = tmp_path / "clicks.csv"
    lines = [f"{(i * 5) % 7 > 2:d},{i % 13},{i % 9},g{i % 4}|g{(i + 1) % 4},{i % 3}" for i in range(600)]
    clicks.write_text("clicked,ad,site,genres,count\n" + "\n".join(lines) + "\n")
    spec = {"sparse": [{"name": "ad"}, {"name": "site", "vocab": "hash", "num_buckets": 16},
                       {"name": "genres", "separator": "|"}],
            "dense": [{"name": "count", "transform": "log1p"}], "label": "clicked"}
    result = fit(tiny_config("ctr", data={"source": "csv", "path": str(clicks), "spec": spec},
                             model={"kind": "dcnv2"}), tmp_path / "ctr")
    assert 0.0 <= result.metrics["auc"] <= 1.0


def test_a_criteo_training_file_is_streamed_when_a_test_file_is_given(tmp_path):
    from recembed.data import make_ctr_dataset

    for name, seed in (("train.tsv", 0), ("test.tsv", 1)):
        make_ctr_dataset(800, 26, 13, cardinalities=10, seed=seed).write_criteo_tsv(tmp_path / name)
    config = tiny_config("ctr", data={"source": "criteo", "path": str(tmp_path / "train.tsv"),
                                      "test_path": str(tmp_path / "test.tsv"), "criteo": {"num_buckets": 32}})
    task = make_task(config)
    task.load_data()
    assert task.num_train_samples is None and task.data.num_rows["C1"] == 32
    result = fit(config, tmp_path / "run", task=task)
    assert len(result.history.epochs) == 2 and 0.0 <= result.metrics["auc"] <= 1.0


def test_a_bad_feature_entry_names_its_valid_keys(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,label\n1,0\n2,1\n")
    config = tiny_config("ctr", data={"source": "csv", "path": str(path),
                                      "spec": {"sparse": [{"name": "a", "colum": "a"}]}}, model={"kind": "dcnv2"})
    with pytest.raises(ConfigError, match=r"data.spec.sparse\[0\].*valid keys: name, column, separator"):
        fit(config, tmp_path)


def test_lr_decay_drives_fused_and_dense_learning_rates_each_epoch(tmp_path):
    config = tiny_config("ctr", model={"embedding_lr": 0.04}, train={"epochs": 3, "lr_decay": 0.5})
    trainer = Trainer(config, out_dir=tmp_path, log=io.StringIO())
    trainer.fit()
    # The third epoch (index 2) trains with 0.5 ** 2 of each base rate.
    assert float(trainer.model.embeddings.fused.state["t_C1"].lr) == pytest.approx(0.01)
    assert trainer.dense_optimizer.param_groups[0]["lr"] == pytest.approx(0.0025)


def test_a_fresh_run_replaces_the_checkpoints_of_an_earlier_run_in_its_folder(tmp_path):
    fit(tiny_config("rating", train={"epochs": 3}), tmp_path)
    fit(tiny_config("rating", train={"epochs": 1}), tmp_path)
    names = [p.name for p in (tmp_path / "checkpoints").iterdir()]
    assert names == ["checkpoint-000000000001.pt"]
