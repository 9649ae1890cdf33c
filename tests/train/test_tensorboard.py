"""TensorBoardLogger writes readable scalar events and a projector config."""

import pytest
import torch

from recembed.errors import ConfigError, ShapeMismatchError

pytest.importorskip("tensorboard")

from recembed.train.tensorboard import TensorBoardLogger  # noqa: E402


def read_scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_scalars_are_written_and_readable(tmp_path):
    with TensorBoardLogger(tmp_path / "run") as tb:
        tb.log_scalar("train/loss", torch.tensor(0.5), step=1)
        tb.log_scalar("train/loss", 0.25, step=2)
        tb.log_scalars({"auc": 0.75, "ndcg@10": 0.125}, step=2, prefix="val/")
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))
    scalars = read_scalars(tmp_path / "run")
    assert scalars["train/loss"] == [(1, 0.5), (2, 0.25)]
    assert scalars["val/auc"] == [(2, 0.75)]
    assert scalars["val/ndcg@10"] == [(2, 0.125)]


def test_embedding_projector_files(tmp_path):
    matrix = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    with TensorBoardLogger(tmp_path) as tb:
        tb.add_embedding(matrix, metadata=["a", "b\tc", "d\ne", 7], tag="items", step=3)
        tb.add_embedding(
            matrix[:2], metadata=[("x", 1), ("y", 2)], metadata_header=["name", "pop"], tag="users"
        )
    config = (tmp_path / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "items:00003"' in config
    assert 'metadata_path: "00003/items/metadata.tsv"' in config
    assert 'tensor_name: "users:00000"' in config
    assert (tmp_path / "00003" / "items" / "metadata.tsv").read_text().splitlines() == [
        "a",
        "b c",
        "d e",
        "7",
    ]
    rows = (tmp_path / "00003" / "items" / "tensors.tsv").read_text().splitlines()
    assert [[float(v) for v in row.split("\t")] for row in rows] == matrix.tolist()
    assert (tmp_path / "00000" / "users" / "metadata.tsv").read_text().splitlines() == [
        "name\tpop",
        "x\t1",
        "y\t2",
    ]


def test_errors(tmp_path):
    tb = TensorBoardLogger(tmp_path)
    with pytest.raises(ShapeMismatchError, match="3 labels but the embedding matrix has 4 rows"):
        tb.add_embedding(torch.zeros(4, 2), metadata=["a", "b", "c"])
    with pytest.raises(ShapeMismatchError, match="2-D"):
        tb.add_embedding(torch.zeros(4))
    for tag in ("a/b", "..", ""):
        with pytest.raises(ConfigError, match=f"tag = '{tag}'"):
            tb.add_embedding(torch.zeros(4, 2), tag=tag)
    with pytest.raises(ShapeMismatchError, match="metadata_header of 2 columns"):
        tb.add_embedding(torch.zeros(2, 2), metadata=[("x", 1), ("y",)], metadata_header=["n", "p"])
    with pytest.raises(ConfigError, match="step = -1"):
        tb.log_scalar("loss", 0.1, step=-1)
    with pytest.raises(ConfigError, match="'loss' = 'x' is not a number"):
        tb.log_scalar("loss", "x", step=0)
    tb.close()
    with pytest.raises(ConfigError, match="closed"):
        tb.log_scalar("loss", 0.1, step=0)
