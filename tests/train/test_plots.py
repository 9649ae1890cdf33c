"""plot_history writes a real PNG for every accepted history form."""

import math
import struct

import pytest

from recembed.errors import ConfigError
from recembed.train.history import History
from recembed.train.plots import _moving_average, plot_history

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24]), len(data)


def test_plot_from_history_object(tmp_path):
    history = History()
    for step in range(1, 201):
        history.log_step(step, 1.0 / step)
    for epoch in range(5):
        history.log_epoch(
            {"train_loss": 1 - 0.1 * epoch, "auc": 0.6 + 0.02 * epoch, "ndcg@10": 0.1 * epoch}
        )
    path = plot_history(history, tmp_path / "curves.png", title="run")
    (width, height), size = png_size(path)
    # 4 panels -> 3 columns x 2 rows at 100 dpi
    assert (width, height) == (1350, 640)
    assert size > 20_000  # real drawn content, not an empty canvas
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_plot_from_dict_and_from_records(tmp_path):
    (w1, h1), size1 = png_size(
        plot_history({"step_loss": [0.9, 0.7, 0.6], "auc": [0.7, 0.74]}, tmp_path / "a.png")
    )
    assert (w1, h1) == (900, 320) and size1 > 10_000
    records = [{"loss": 0.6, "auc": 0.7}, {"loss": 0.5}, {"loss": 0.45, "auc": math.nan}]
    (w2, h2), size2 = png_size(plot_history(records, tmp_path / "b.png"))
    assert (w2, h2) == (900, 320) and size2 > 10_000


def test_moving_average_skips_non_finite():
    assert _moving_average([1.0, 3.0, math.nan, 5.0], 2) == [1.0, 2.0, 3.0, 5.0]


def test_errors(tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        plot_history(History(), tmp_path / "x.png")
    with pytest.raises(ConfigError, match="auc\\[1\\] = 'bad'"):
        plot_history({"auc": [0.5, "bad"]}, tmp_path / "x.png")
    with pytest.raises(ConfigError, match="history is a int"):
        plot_history(3, tmp_path / "x.png")
    with pytest.raises(ConfigError, match="does not exist"):
        plot_history({"auc": [0.5]}, tmp_path / "missing" / "x.png")
