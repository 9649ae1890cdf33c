"""ProgressBar: plain-line fallback, tqdm backend, iteration, postfix values."""

import io
import sys

import pytest

from recembed.errors import ConfigError, MissingDependencyError
from recembed.train import progress as progress_module
from recembed.train.progress import ProgressBar, progress


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_show_count_percent_rate_and_postfix():
    out = io.StringIO()
    bar = ProgressBar(total=1000, desc="epoch 1", backend="plain", file=out, min_interval=0)
    bar.update(250, loss=0.123456, samples_per_s=5000.0)
    bar.update(250)
    bar.close()
    bar.close()  # idempotent: no extra line
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("epoch 1: 250/1000 samples (25.0%), ")
    assert lines[0].endswith("loss=0.1235, samples_per_s=5000")
    assert lines[1].startswith("epoch 1: 500/1000 samples (50.0%)")
    assert "samples/s" in lines[1]
    with pytest.raises(ConfigError, match="closed"):
        bar.update(1)


def test_plain_lines_are_throttled():
    out = io.StringIO()
    bar = ProgressBar(backend="plain", file=out, min_interval=3600, unit="batches")
    for _ in range(100):
        bar.update(1)
    assert out.getvalue() == ""  # nothing until close
    bar.close()
    assert out.getvalue().startswith("100 batches, ")


def test_auto_backend_choice(monkeypatch):
    assert ProgressBar(file=io.StringIO(), backend="auto").backend == "plain"  # not a terminal
    tty = FakeTTY()
    bar = ProgressBar(total=10, desc="d", file=tty, backend="auto")
    assert bar.backend == "tqdm"
    bar.update(4, loss=0.5)
    bar.close()
    assert "4/10" in tty.getvalue() and "loss=0.5" in tty.getvalue()
    monkeypatch.setattr(progress_module, "_tqdm_available", lambda: False)
    assert ProgressBar(file=FakeTTY(), backend="auto").backend == "plain"


def test_progress_iterates_with_weights_and_closes():
    out = io.StringIO()
    batches = [[1, 2, 3], [4, 5], [6]]
    bar = progress(
        batches, total=6, desc="eval", weight=len, backend="plain", file=out, min_interval=3600
    )
    seen = []
    for batch in bar:
        seen.append(batch)
        bar.set_postfix(loss=0.25)
    assert seen == batches and bar.count == 6 and bar.closed
    assert out.getvalue().startswith("eval: 6/6 samples (100.0%)")
    assert out.getvalue().rstrip().endswith("loss=0.25")


def test_progress_total_defaults_to_len_and_none_backend_is_silent(capsys):
    bar = progress(range(5), backend="none", unit="batches")
    assert bar.total == 5
    assert list(bar) == [0, 1, 2, 3, 4] and bar.count == 5
    assert capsys.readouterr().err == ""


def test_without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm` fail
    assert ProgressBar(file=FakeTTY(), backend="auto").backend == "plain"
    with pytest.raises(MissingDependencyError, match=r"recembed\[train\]"):
        ProgressBar(backend="tqdm")


def test_errors():
    with pytest.raises(ConfigError, match="backend = 'fancy'"):
        ProgressBar(backend="fancy")
    with pytest.raises(ConfigError, match="total = -1"):
        ProgressBar(total=-1)
    with pytest.raises(ConfigError, match="without an iterable"):
        list(ProgressBar(backend="none"))
