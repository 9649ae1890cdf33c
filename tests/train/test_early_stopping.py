"""EarlyStopping decisions and exact resume through a checkpoint."""

import math

import pytest

from recembed.errors import CheckpointError, ConfigError, UnknownKeyError
from recembed.train.checkpoint import load_checkpoint, save_checkpoint
from recembed.train.early_stopping import EarlyStopping


def run(stopper, values):
    return [stopper.step({"m": v}) for v in values]


def test_max_mode_with_patience_and_min_delta():
    stopper = EarlyStopping("m", mode="max", patience=2, min_delta=0.01)
    # 0.705 is not > 0.70 + 0.01, so it does not reset patience
    assert run(stopper, [0.70, 0.705, 0.72, 0.725, 0.72, 0.71]) == [
        False,
        False,
        False,
        False,
        False,
        True,
    ]
    assert (stopper.best, stopper.best_epoch, stopper.num_bad_epochs) == (0.72, 2, 3)
    assert stopper.should_stop and stopper.step({"m": 0.99})  # stays stopped


def test_min_mode_zero_patience_and_nan():
    stopper = EarlyStopping("loss", mode="min", patience=0)
    assert stopper.step({"loss": 0.5}) is False
    assert stopper.improved
    assert stopper.step(0.4) is False  # a bare number is accepted too
    assert stopper.step(math.nan) is True  # NaN never improves
    assert stopper.best == 0.4 and not stopper.improved


def test_explicit_epoch_numbers_are_recorded():
    stopper = EarlyStopping("m", patience=3)
    stopper.step({"m": 1.0}, epoch=10)
    stopper.step({"m": 2.0}, epoch=20)
    assert stopper.best_epoch == 20


def test_resume_from_checkpoint_is_exact(tmp_path):
    values = [0.5, 0.6, 0.58, 0.61, 0.60, 0.59, 0.605, 0.6]
    uninterrupted = EarlyStopping("m", patience=2)
    expected = run(uninterrupted, values)

    first = EarlyStopping("m", patience=2)
    decisions = run(first, values[:4])
    save_checkpoint(tmp_path / "c.pt", {"early_stopping": first.state_dict()})
    resumed = EarlyStopping("m", patience=2)
    resumed.load_state_dict(load_checkpoint(tmp_path / "c.pt")["early_stopping"])
    decisions += run(resumed, values[4:])
    assert decisions == expected == [False] * 6 + [True, True]
    assert resumed.state_dict() == uninterrupted.state_dict()


def test_errors():
    with pytest.raises(ConfigError, match="mode = 'maximum'"):
        EarlyStopping("auc", mode="maximum")
    with pytest.raises(ConfigError, match="patience = -1"):
        EarlyStopping("auc", patience=-1)
    with pytest.raises(ConfigError, match="min_delta = -0.1"):
        EarlyStopping("auc", min_delta=-0.1)
    stopper = EarlyStopping("auc")
    with pytest.raises(UnknownKeyError, match="watches 'auc'.*\\['loss'\\]"):
        stopper.step({"loss": 0.3})
    with pytest.raises(ConfigError, match="not a number"):
        stopper.step({"auc": "high"})
    other = EarlyStopping("loss", mode="min")
    with pytest.raises(CheckpointError, match="saved for metric 'loss'"):
        stopper.load_state_dict(other.state_dict())
    with pytest.raises(CheckpointError, match="lacks"):
        stopper.load_state_dict({"metric": "auc"})
