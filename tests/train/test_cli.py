"""The `recembed` command: train / evaluate / export / demo, the example configs, and input errors."""

import json
from pathlib import Path

import pytest

from recembed.cli import main, split_overrides
from recembed.data import make_ctr_dataset, make_ratings_dataset

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
QUIET = ["--train.progress", "none", "--train.plot", "false", "--train.threads", "1"]


def last_json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def ratings_file(tmp_path_factory):
    """MovieLens u.data layout: user, item, rating (1..5), timestamp."""
    path = tmp_path_factory.mktemp("ml") / "u.data"
    make_ratings_dataset(num_users=60, num_items=40, num_ratings=1500, seed=3).write_movielens(path)
    return path


def test_overrides_are_split_from_the_other_arguments():
    rest, overrides = split_overrides(["train", "c.toml", "--data", "u.data", "--train.epochs", "3", "--eval.ks=5"])
    assert rest == ["train", "c.toml", "--data", "u.data"]
    assert overrides == ["--train.epochs", "3", "--eval.ks=5"]


@pytest.mark.parametrize("example", ["movielens_mf.toml", "movielens_bpr.toml", "movielens_twotower.toml"])
def test_movielens_examples_train_on_a_file_in_the_movielens_layout(tmp_path, capsys, ratings_file, example):
    code = main(["train", str(EXAMPLES / example), "--data", str(ratings_file), "--out", str(tmp_path),
                 "--epochs", "1", "--model.embedding_dim", "8", *QUIET])
    assert code == 0
    metrics = last_json_line(capsys.readouterr().out)
    if example == "movielens_mf.toml":
        assert 0.3 < metrics["rmse"] < 2.0 and metrics["mae"] <= metrics["rmse"]
    else:
        assert set(metrics) >= {"recall@10", "ndcg@10", "hit_rate@20"}
        assert 0.0 <= metrics["ndcg@10"] <= metrics["hit_rate@10"] <= 1.0


def test_criteo_example_trains_on_a_criteo_format_file(tmp_path, capsys):
    data = make_ctr_dataset(1500, 26, 13, cardinalities=20, seed=1)
    path = tmp_path / "train.txt"
    data.write_criteo_tsv(path, missing_fraction=0.05)
    code = main(["train", str(EXAMPLES / "criteo_dlrm.toml"), "--data", str(path), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--data.criteo.num_buckets", "64", "--model.embedding_dim", "4",
                 "--model.top_mlp", "[8]", *QUIET])
    assert code == 0
    metrics = last_json_line(capsys.readouterr().out)
    assert 0.4 < metrics["auc"] <= 1.0 and metrics["log_loss"] > 0


def test_train_then_evaluate_and_export_a_checkpoint(tmp_path, capsys):
    config = tmp_path / "mf.toml"
    config.write_text("""
[data.synthetic]
num_users = 50
num_items = 30
num_ratings = 1000
[model]
embedding_dim = 4
[train]
task = "rating"
epochs = 2
batch_size = 64
""")
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out), *QUIET]) == 0
    trained = last_json_line(capsys.readouterr().out)
    assert main(["evaluate", str(config), "--checkpoint", str(out / "model.pt"), "--train.threads", "1"]) == 0
    evaluated = last_json_line(capsys.readouterr().out)
    assert evaluated["rmse"] == pytest.approx(trained["rmse"], abs=1e-9)
    assert main(["export", "--checkpoint", str(out / "model.pt"), "--out", str(tmp_path / "emb"),
                 "--format", "npy"]) == 0
    assert "item_factors: 30 x 4" in capsys.readouterr().out
    assert (tmp_path / "emb" / "item_factors.npy").is_file()
    assert not (tmp_path / "emb" / "item_factors.w2v.txt").exists()


def test_resume_continues_a_run_from_the_command_line(tmp_path, capsys, ratings_file):
    args = ["train", str(EXAMPLES / "movielens_mf.toml"), "--data", str(ratings_file), "--out", str(tmp_path),
            "--model.embedding_dim", "4", *QUIET]
    assert main(args + ["--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    output = capsys.readouterr().out
    assert "resumed from" in output and "epoch 2/2" in output and "epoch 1/2" not in output


def test_input_errors_exit_with_one_clear_line(tmp_path, capsys, ratings_file):
    config = tmp_path / "bad.toml"
    config.write_text("[train]\ntask = 'rating'\nlearning_rate = 0.1\n")
    assert main(["train", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("recembed: error:") and "unknown key 'learning_rate'" in err and "dense_lr" in err

    example = str(EXAMPLES / "movielens_mf.toml")
    assert main(["train", example, "--data", str(tmp_path / "missing.data"), "--out", str(tmp_path)]) == 1
    assert "data.path" in capsys.readouterr().err

    assert main(["train", example, "--data", str(ratings_file), "--model.dim", "8"]) == 1
    assert "valid keys of [model]" in capsys.readouterr().err

    assert main(["train", example, "--data", str(ratings_file), "--out", str(tmp_path / "new"), "--resume"]) == 1
    assert "no checkpoint" in capsys.readouterr().err

    broken = tmp_path / "u.data"
    broken.write_text("1\t2\t4\t881250949\n1\t3\tfive\t881250950\n")
    assert main(["train", example, "--data", str(broken), "--out", str(tmp_path / "b")]) == 1
    assert "u.data:2:" in capsys.readouterr().err


def test_demo_quick_prints_the_summary(tmp_path, capsys):
    assert main(["demo", "--quick", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for part in ("DLRM", "teacher", "RMSE", "nearest", "recall", "rank"):
        assert part.lower() in out.lower(), part
