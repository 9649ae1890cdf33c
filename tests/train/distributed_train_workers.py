"""Rank body for the sharded-training tests (module level, so launched ranks can import it)."""

from __future__ import annotations

from recembed.train.distributed_run import _fit_launched_rank


def fit_in_sequence(runs: list[tuple[dict, str, bool]]) -> list:
    """Train each ``(config values, out_dir, resume)`` in turn on every rank, as
    ``recembed train --nproc N`` does; returns rank 0's summaries (None on other ranks)."""
    return [_fit_launched_rank(values, out_dir, None, resume) for values, out_dir, resume in runs]
