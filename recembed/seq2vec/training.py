"""Run the numba kernels over an encoded corpus for several epochs, on several threads.

The corpus is cut into chunks of about ``chunk_words`` tokens. Worker threads take chunks
from one shared queue (all epochs back to back, so no thread idles at an epoch end) and
train them with :func:`~recembed.seq2vec.kernels.train_chunk`, which releases the GIL.
A chunk's random seed and learning rate depend only on its place in the schedule, never
on which thread runs it or when, so ``workers=1`` is reproducible run to run.

The calling thread reports progress: a log line every ``log_every`` seconds on the
``recembed.seq2vec`` logger, or a tqdm bar when asked for.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from recembed.seq2vec.corpus import EncodedCorpus
from recembed.seq2vec.kernels import chunk_boundaries, sigmoid_table, train_chunk

__all__ = ["TrainingPlan", "TrainingStats", "run_training"]

logger = logging.getLogger("recembed.seq2vec")

_SEED_MIX = 0x9E3779B97F4A7C15
_MASK_63 = (1 << 63) - 1


@dataclass(frozen=True)
class TrainingPlan:
    """What the kernels need besides the weights and the corpus."""

    skip_gram: bool
    cbow_mean: bool
    window: int
    shrink_windows: bool
    context_rule: int
    negative: int
    alpha_start: float
    alpha_end: float
    epochs: int
    workers: int
    seed: int
    keep_threshold: np.ndarray
    noise_threshold: np.ndarray
    noise_alias: np.ndarray
    chunk_words: int = 10_000
    progress: bool | None = None
    log_every: float = 5.0


@dataclass(frozen=True)
class TrainingStats:
    """What one call of :func:`run_training` did.

    ``effective_words`` counts tokens trained after subsampling (gensim's
    ``trained_word_count``); ``raw_words`` counts in-vocabulary tokens read.
    """

    effective_words: int
    raw_words: int
    seconds: float

    @property
    def effective_words_per_second(self) -> float:
        return self.effective_words / self.seconds if self.seconds > 0 else float("nan")

    @property
    def raw_words_per_second(self) -> float:
        return self.raw_words / self.seconds if self.seconds > 0 else float("nan")


def _chunk_seed(seed: int, epoch: int, chunk: int) -> int:
    """A well-mixed 63-bit seed per (run seed, epoch, chunk) (splitmix64 finaliser)."""
    z = (seed * 1_000_003 + epoch * 7_919 + chunk + 1) * _SEED_MIX & 0xFFFFFFFFFFFFFFFF
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & _MASK_63


class _Progress:
    """Counters shared by the workers, and the reporting done from the calling thread."""

    def __init__(self, plan: TrainingPlan, total_raw: int) -> None:
        self.lock = threading.Lock()
        self.effective = 0
        self.raw = 0
        self.total_raw = total_raw
        self.plan = plan
        self.started = time.perf_counter()
        self.last_log = self.started
        self.bar = None
        use_bar = plan.progress
        if use_bar is None:  # auto: a bar only for long runs on a terminal
            use_bar = total_raw >= 50_000_000 and sys.stderr.isatty()
        if use_bar:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total_raw, unit="word", unit_scale=True, desc="word2vec")

    def add(self, effective: int, raw: int) -> None:
        with self.lock:
            self.effective += effective
            self.raw += raw

    def report(self, final: bool = False) -> None:
        now = time.perf_counter()
        with self.lock:
            effective, raw = self.effective, self.raw
        if self.bar is not None:
            self.bar.update(raw - self.bar.n)
            if final:
                self.bar.close()
            return
        if final or now - self.last_log >= self.plan.log_every:
            self.last_log = now
            elapsed = max(now - self.started, 1e-9)
            done = raw / self.total_raw if self.total_raw else 1.0
            alpha = self.plan.alpha_start - (self.plan.alpha_start - self.plan.alpha_end) * done
            logger.info("training %5.1f%% done, %.0f effective words/s, alpha %.6f",
                        100.0 * done, effective / elapsed, alpha)


def run_training(syn0: np.ndarray, syn1neg: np.ndarray, corpus: EncodedCorpus, plan: TrainingPlan) -> TrainingStats:
    """Train ``syn0`` / ``syn1neg`` ``(V, D)`` in place for ``plan.epochs`` epochs over ``corpus``."""
    bounds = chunk_boundaries(corpus.offsets, plan.chunk_words)
    num_chunks = bounds.shape[0] - 1
    total_per_epoch = corpus.num_tokens
    schedule_total = max(total_per_epoch * plan.epochs, 1)
    chunk_starts = corpus.offsets[bounds[:-1]]
    sigmoid = sigmoid_table()
    progress = _Progress(plan, schedule_total)
    jobs = iter(range(num_chunks * plan.epochs))
    jobs_lock = threading.Lock()
    stop = threading.Event()
    failures: list[BaseException] = []

    def work() -> None:
        try:
            while not stop.is_set():
                with jobs_lock:
                    job = next(jobs, None)
                if job is None:
                    return
                epoch, chunk = divmod(job, num_chunks)
                effective, raw = train_chunk(
                    syn0, syn1neg, corpus.tokens, corpus.offsets, bounds[chunk], bounds[chunk + 1],
                    plan.keep_threshold, plan.noise_threshold, plan.noise_alias, sigmoid,
                    plan.skip_gram, plan.cbow_mean, plan.window, plan.shrink_windows, plan.context_rule,
                    plan.negative, plan.alpha_start, plan.alpha_end,
                    epoch * total_per_epoch + int(chunk_starts[chunk]), schedule_total,
                    _chunk_seed(plan.seed, epoch, chunk),
                )
                progress.add(int(effective), int(raw))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread below
            failures.append(exc)
            stop.set()

    started = time.perf_counter()
    if num_chunks > 0:
        threads = [threading.Thread(target=work, name=f"seq2vec-worker-{i}", daemon=True)
                   for i in range(max(1, min(plan.workers, num_chunks * plan.epochs)))]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.5)
                    progress.report()
        except BaseException:
            stop.set()  # e.g. Ctrl-C: let the workers finish their chunk and stop
            for thread in threads:
                thread.join()
            raise
    seconds = time.perf_counter() - started
    progress.report(final=True)
    if failures:
        raise failures[0]
    return TrainingStats(effective_words=progress.effective, raw_words=progress.raw, seconds=seconds)
