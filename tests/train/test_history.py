"""History: recording, JSON round trip (with non-finite values), checkpoint state."""

import json
import math

import numpy as np
import pytest
import torch

from recembed.errors import ConfigError, DataFormatError, UnknownKeyError
from recembed.train.checkpoint import load_checkpoint, save_checkpoint
from recembed.train.history import History


def make_history():
    history = History()
    for step, loss in enumerate([0.9, 0.7, torch.tensor(0.6), np.float32(0.5)], start=1):
        history.log_step(step, loss)
    history.log_epoch({"train_loss": 0.7, "auc": 0.71})
    history.log_epoch({"train_loss": 0.55, "auc": 0.74, "ndcg@10": 0.2})
    history.log_epoch({"train_loss": math.inf, "auc": math.nan})
    return history


def test_series_and_best():
    history = make_history()
    assert history.steps == [1, 2, 3, 4]
    assert history.step_losses == pytest.approx([0.9, 0.7, 0.6, 0.5])
    assert history.metric_names == ["train_loss", "auc", "ndcg@10"]
    ndcg = history.metric("ndcg@10")
    assert math.isnan(ndcg[0]) and ndcg[1] == 0.2 and math.isnan(ndcg[2])
    assert history.best("auc", "max") == (1, 0.74)
    assert history.best("train_loss", "min") == (1, 0.55)
    assert len(history) == 3


def test_json_round_trip_is_strict_and_exact(tmp_path):
    history = make_history()
    path = history.save_json(tmp_path / "history.json")
    text = path.read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert '"inf"' in text and '"nan"' in text
    loaded = History.load_json(path)
    assert loaded == history
    assert loaded.epochs[2]["train_loss"] == math.inf and math.isnan(loaded.epochs[2]["auc"])


def test_checkpoint_state_round_trip(tmp_path):
    history = make_history()
    save_checkpoint(tmp_path / "c.pt", {"history": history.state_dict()})
    restored = History()
    restored.load_state_dict(load_checkpoint(tmp_path / "c.pt")["history"])
    assert restored == history
    assert restored.step_losses == history.step_losses  # float64 storage keeps exact values


def test_errors(tmp_path):
    history = History()
    with pytest.raises(ConfigError, match="loss at step 1 is a tensor of shape \\(2,\\)"):
        history.log_step(1, torch.ones(2))
    with pytest.raises(ConfigError, match="step = 1.5"):
        history.log_step(1.5, 0.1)
    with pytest.raises(ConfigError, match="metric 'auc' of epoch 0 = 'x' is not a number"):
        history.log_epoch({"auc": "x"})
    with pytest.raises(UnknownKeyError, match="no epoch recorded metric 'auc'"):
        history.metric("auc")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "recembed-history",\n "steps": [1,\n')
    with pytest.raises(DataFormatError, match="bad.json:3"):
        History.load_json(bad)
    other = tmp_path / "other.json"
    other.write_text('{"format": "something-else"}')
    with pytest.raises(DataFormatError, match="other.json: not a recembed history"):
        History.load_json(other)
    with pytest.raises(DataFormatError, match="does not exist"):
        History.load_json(tmp_path / "missing.json")
