"""Training a run over several ranks: embedding tables sharded, batches split, results as one process.

``recembed train CONFIG --nproc N`` (config key ``train.nproc``) starts N gloo ranks on this
machine with :func:`recembed.distributed.launch`; ``torchrun --nproc-per-node N -m recembed.cli
train CONFIG`` (any torchrun job, several machines included) makes each process one rank.
Either way every rank runs a :class:`DistributedTrainer`:

- every rank loads the same data and builds the same model from ``train.seed``, then
  :func:`~recembed.distributed.shard_model` plans and shards its tables (rank 0 prints the
  plan) and keeps the dense part in sync;
- every rank reads the same global batches (same data order) and trains on its contiguous
  part (:func:`~recembed.distributed.local_batch`). Each rank's loss is weighted by its share
  of the batch, so a step equals one process's step on the whole batch with a mean loss,
  whatever the parts' sizes; a batch smaller than the number of ranks is skipped (counted
  in the log);
- validation runs on a plain copy of the model (:func:`~recembed.distributed.unsharded_copy`)
  on every rank; rank 0's numbers are broadcast so early stopping decides the same everywhere;
- each epoch is checkpointed with :func:`~recembed.distributed.save_sharded` into
  ``checkpoints/sharded-<epoch>/``; ``--resume`` continues from the newest checkpoint of
  either kind at any number of ranks (one process resumes a sharded run too);
- rank 0 alone tests the final (or best) model and writes ``model.pt`` -- the plain,
  unsharded model, so ``recembed evaluate`` and ``recembed export`` read it unchanged --
  ``best.pt``, ``metrics.json``, ``history.json``, ``curves.png`` and TensorBoard logs.

With dropout, or a TwoTower's in-batch negatives (drawn from each rank's part), sharded
training is a different computation from one process's; everything else matches it to
floating-point rounding.

Example:
    >>> config = load_config("examples/criteo_dlrm.toml", [("train.nproc", "2")])   # doctest: +SKIP
    >>> fit_run(config).metrics["auc"]                                               # doctest: +SKIP
    0.79
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional, TextIO

import numpy as np
import torch
from torch import nn

from recembed.data import PrefetchLoader
from recembed.errors import ConfigError, DistributedError, RecembedError
from recembed.train.checkpoint import save_checkpoint
from recembed.train.config import RunConfig
from recembed.train.history import History
from recembed.train.loop import FitResult, Trainer, load_model
from recembed.train.progress import ProgressBar
from recembed.train.run_state import (
    check_resumable,
    list_sharded_checkpoints,
    read_run_state,
    remove_sharded_checkpoint,
    sharded_checkpoint_path,
    thread_count,
    use_threads,
)
from recembed.train.tasks import Task
from recembed.train.tasks.base import MappedBatches

__all__ = ["DistributedTrainer", "fit_run", "torchrun_world_size"]


class DistributedTrainer(Trainer):
    """One rank of a sharded run; every rank of the process group constructs one and calls :meth:`fit`.

    Takes :class:`~recembed.train.loop.Trainer`'s arguments; ``torch.distributed`` must be
    initialised (:func:`recembed.distributed.init_from_env`, or inside ``launch``).
    ``fit`` returns the test metrics and the plain model on rank 0; on the other ranks the
    metrics are empty and the model is None.

    Raises:
        DistributedError: torch.distributed is not initialised, or another rank failed.
        ConfigError: more ranks than samples in a batch, or ``model.embedding_optimizer = "none"``.
    """

    def __init__(self, config: RunConfig, *, out_dir: str | Path | None = None,
                 tensorboard_dir: str | Path | None = None, log: TextIO | None = None,
                 task: Task | None = None) -> None:
        from recembed.distributed import Comm

        if config.model.embedding_optimizer == "none":
            # Tables trained by the dense torch optimizer would keep its state (Adam moments) per
            # rank, for that rank's shards; checkpoints hold rank 0's dense state only.
            raise ConfigError("sharded training needs a fused embedding optimizer: model.embedding_optimizer = "
                              "'none' trains the tables with the dense torch optimizer, whose per-rank state "
                              "cannot be checkpointed or resharded; choose e.g. 'rowwise_adagrad' or 'adam'")
        self.comm = Comm()
        self.is_main = self.comm.rank == 0
        super().__init__(config, out_dir=out_dir, tensorboard_dir=tensorboard_dir if self.is_main else None,
                         log=log, task=task)
        if self.comm.world_size > config.train.batch_size:
            raise ConfigError(f"{self.comm.world_size} ranks are more than train.batch_size = "
                              f"{config.train.batch_size}; every rank needs samples of each batch")
        self._plain: Optional[nn.Module] = None  # the latest evaluated plain copy of the model

    def _say(self, text: str) -> None:
        if self.is_main:
            super()._say(text)

    # ---- set-up and resuming --------------------------------------------------------------
    def fit(self, resume: bool = False) -> FitResult:
        """Train (or continue with ``resume``) on every rank; rank 0 tests and writes the outputs."""
        from recembed.distributed import load_extra, load_sharded, shard_model

        t, world = self.config.train, self.comm.world_size
        # The cores are shared by the ranks on this machine (torchrun sets LOCAL_WORLD_SIZE).
        ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        with use_threads(thread_count(t.threads, ranks_here)):
            self._load_task_and_seed()
            self.model = self.task.build_model()
            source = self._latest_checkpoint() if resume else None
            state = None
            if source is not None and not source.is_dir():  # a one-process checkpoint: load it before sharding
                state = read_run_state(source)
                check_resumable(state, self.config.to_dict(), source)
                load_model(self.task, self.model, state, source)
            self.model, plan = shard_model(self.model, batch_size=max(1, t.batch_size // world))
            self._make_dense_optimizer()
            if source is not None and source.is_dir():
                state = load_extra(source)
                check_resumable(state, self.config.to_dict(), source)
                load_sharded(source, self.model)  # each rank reads the files holding its shards
            if self.is_main:
                self.out_dir.mkdir(parents=True, exist_ok=True)
            if state is not None:
                self._restore_run_state(state, source)
            elif self.is_main:
                self._clear_previous_run()
            self._say(self.task.describe())
            self._say(f"embedding tables sharded over {world} ranks:\n{plan.table()}")
            tb = None
            if self.tensorboard_dir is not None:
                from recembed.train.tensorboard import TensorBoardLogger

                tb = TensorBoardLogger(self.tensorboard_dir)
            try:
                rates = self._run_epochs(tb)
                return self._finish_ranks(tb, float(np.mean(rates)) if rates else 0.0)
            finally:
                if tb is not None:
                    tb.close()

    # ---- training -------------------------------------------------------------------------
    def _train_epoch(self, epoch: int, tb) -> tuple[float, float]:
        """One pass over the global batches, each rank on its part; returns (mean loss, samples/s)."""
        from recembed.distributed import local_batch

        t, rank, world = self.config.train, self.comm.rank, self.comm.world_size
        self.model.train()
        self._set_learning_rates(epoch)
        # Cut in the loader thread too: (global batch size, this rank's part).
        parts = MappedBatches(self.task.train_batches(epoch), lambda b: (len(b), local_batch(b, rank, world)))
        bar = ProgressBar(total=self.task.num_train_samples, desc=f"epoch {epoch + 1}/{t.epochs}",
                          backend=t.progress if self.is_main else "none", min_interval=10.0)
        local_sums, sizes, skipped, start = [], [], 0, time.perf_counter()
        with bar:
            for size, batch in PrefetchLoader(parts, depth=t.prefetch_depth):
                if size < world:  # a rank would get no sample, and a mean over none is NaN
                    skipped += 1
                    continue
                if self.dense_optimizer is not None:
                    self.dense_optimizer.zero_grad(set_to_none=True)
                loss = self.task.loss(self.model, batch)
                # The loss is a mean over this rank's part and the ranks' gradients are averaged;
                # weighting by (part / batch) * world makes that the gradient of the mean over the
                # whole batch even when the parts differ in size (the weight is 1 when they are equal).
                share = world * len(batch) / size
                (loss if share == 1.0 else loss * share).backward()  # also the fused updates, on the owners
                if self.dense_optimizer is not None:
                    self.dense_optimizer.step()
                local_sums.append(float(loss.detach()) * len(batch))
                sizes.append(size)
                bar.update(size, loss=sum(local_sums) / max(1, sum(sizes)) * world)
        elapsed = time.perf_counter() - start
        if not sizes:
            raise ConfigError(f"the training data yielded no batch of at least {world} samples (one per rank); "
                              "is train.batch_size larger than the data with train.drop_last = true?")
        if skipped:
            self._say(f"skipped {skipped} batch(es) with fewer samples than the {world} ranks")
        return self._log_step_losses(local_sums, sizes, tb), sum(sizes) / max(elapsed, 1e-9)

    def _log_step_losses(self, local_sums: list[float], sizes: list[int], tb) -> float:
        """Each step's loss over the whole batch into the history (one all-reduce per epoch); the epoch's mean."""
        totals = self.comm.all_reduce_(torch.tensor(local_sums, dtype=torch.float64), "epoch step losses")
        running, seen = 0.0, 0
        for total, size in zip(totals.tolist(), sizes):
            self.global_step += 1
            self.history.log_step(self.global_step, total / size)
            running, seen = running + total, seen + size
            if tb is not None and self.global_step % self.config.train.log_every == 0:
                tb.log_scalar("train/loss", running / seen, self.global_step)
        return running / seen

    # ---- evaluation, checkpoints, outputs --------------------------------------------------
    def _evaluate(self, split: str) -> dict[str, float]:
        from recembed.distributed import unsharded_copy

        self._plain = unsharded_copy(self.model)  # collective: the whole model on every rank
        metrics = self._evaluate_model(self._plain, split)
        # Every rank evaluated the same copy; rank 0's values are sent to all so that early
        # stopping and best-epoch choices cannot differ by a rounding.
        names = list(metrics)
        values = torch.tensor([float(metrics[n]) for n in names], dtype=torch.float64)
        self.comm.broadcast_(values, 0, f"{split} metrics")
        return dict(zip(names, values.tolist()))

    def _save_best(self, epoch: int) -> None:
        if self.is_main:
            save_checkpoint(self.out_dir / "best.pt", {"epoch": epoch, "model": self._plain.state_dict()})

    def _save_checkpoint(self, epoch: int) -> None:
        from recembed.distributed import save_sharded

        extra = None
        if self.is_main:  # only rank 0's extra is written
            extra = self._state(epoch, self._plain)
            del extra["model"]  # the shards hold it
        save_sharded(sharded_checkpoint_path(self.checkpoints.directory, epoch), self.model, extra)
        if self.is_main and self.checkpoints.keep_last is not None:
            for _, old in list_sharded_checkpoints(self.checkpoints.directory)[:-self.checkpoints.keep_last]:
                remove_sharded_checkpoint(old)

    def _clear_previous_run(self) -> None:
        if self.is_main:
            super()._clear_previous_run()

    def _finish_ranks(self, tb, rate: float) -> FitResult:
        from recembed.distributed import unsharded_copy

        plain = unsharded_copy(self.model)  # the last collective: afterwards rank 0 works alone
        if self.is_main:
            return self._finish(tb, rate, plain)
        best = self.stopper.best_epoch if self.stopper.best_epoch is not None else len(self.history.epochs)
        return FitResult({}, self.history, self.out_dir, best, rate, None)


# ---- starting a run ---------------------------------------------------------------------------

def torchrun_world_size() -> int | None:
    """The world size when this process is a rank of a torch.distributed job (torchrun sets
    ``WORLD_SIZE`` and ``RANK``, or the group already exists), else None."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        try:
            return int(os.environ["WORLD_SIZE"])
        except ValueError:
            raise DistributedError(f"environment variable WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not "
                                   "an integer") from None
    return None


def fit_run(config: RunConfig, *, out_dir: str | Path | None = None, tensorboard_dir: str | Path | None = None,
            resume: bool = False, log: TextIO | None = None) -> Optional[FitResult]:
    """Train the run ``config`` describes, in one process or over several ranks.

    - Inside a torch.distributed job of more than one rank (torchrun): this process trains
      as its rank (gloo on CPU, NCCL with CUDA); ``train.nproc`` must be 1 or the world size.
    - Else with ``train.nproc = N > 1``: N gloo ranks are started on 127.0.0.1, with
      ``train.threads`` (default: cores // N) torch/numba threads each; their per-epoch
      lines go to standard output; the result's ``model`` is None (read ``model.pt``).
    - Else: :class:`~recembed.train.loop.Trainer`, one process, as always.

    Returns:
        The run's :class:`~recembed.train.loop.FitResult`, or None on ranks other than 0 of
        a torchrun job (rank 0 prints and writes the results).

    Raises:
        ConfigError: ``train.nproc`` disagrees with torchrun's world size, or another input
            error of the run (re-raised in this process when a launched rank hit it).
        DistributedError: a rank failed (the message names it, with its traceback).
    """
    world = torchrun_world_size()
    if world is not None and world > 1:
        return _fit_this_rank(config, world, out_dir, tensorboard_dir, resume, log)
    nproc = config.train.nproc
    if nproc == 1:
        return Trainer(config, out_dir=out_dir, tensorboard_dir=tensorboard_dir, log=log).fit(resume=resume)
    from recembed.distributed import launch

    out = str(Path(out_dir or config.train.out_dir or "runs/recembed"))
    threads = thread_count(config.train.threads, nproc)
    results = launch(_fit_launched_rank, nproc, config.to_dict(), out, None if tensorboard_dir is None
                     else str(tensorboard_dir), resume, timeout_s=config.train.collective_timeout,
                     threads_per_rank=threads)
    first = results[0]
    if "error" in first:
        raise _rebuild_error(*first["error"])
    history = History()
    history.load_state_dict(first["history"])
    return FitResult(first["metrics"], history, Path(first["out_dir"]), first["best_epoch"], first["rate"], None)


def _fit_this_rank(config: RunConfig, world: int, out_dir, tensorboard_dir, resume: bool, log) -> Optional[FitResult]:
    import torch.distributed as dist

    from recembed.distributed import init_from_env

    if config.train.nproc not in (1, world):
        raise ConfigError(f"train.nproc = {config.train.nproc} but this process is one of {world} ranks started by "
                          f"torchrun; drop --nproc (torchrun's --nproc-per-node sets the ranks) or make it {world}")
    config.train.nproc = world  # recorded in config.json and the checkpoints
    created = not dist.is_initialized()
    init_from_env(timeout_s=config.train.collective_timeout)
    try:
        trainer = DistributedTrainer(config, out_dir=out_dir, tensorboard_dir=tensorboard_dir, log=log)
        result = trainer.fit(resume=resume)
        return result if trainer.is_main else None
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def _fit_launched_rank(config_values: dict, out_dir: str, tensorboard_dir: Optional[str],
                       resume: bool) -> Optional[dict]:
    """Body of a rank started by :func:`fit_run` (module level: ranks import it by name).

    Returns rank 0's results as plain data (or an input error, to be raised again in the
    parent with its own class); the other ranks return None.
    """
    try:
        config = RunConfig.from_dict(config_values)
        trainer = DistributedTrainer(config, out_dir=out_dir, tensorboard_dir=tensorboard_dir, log=sys.stdout)
        result = trainer.fit(resume=resume)
    except (RecembedError, FileNotFoundError) as exc:
        if isinstance(exc, DistributedError):
            raise  # a peer failed: launch reports which rank and why
        return {"error": (type(exc).__name__, str(exc))}
    if not trainer.is_main:
        return None
    return {"metrics": result.metrics, "history": result.history.state_dict(), "out_dir": str(result.out_dir),
            "best_epoch": result.best_epoch, "rate": result.train_samples_per_s}


def _rebuild_error(kind: str, message: str) -> Exception:
    """The error a launched rank returned, as the same class where it takes just a message."""
    import recembed.errors as errors

    if kind == "FileNotFoundError":
        return FileNotFoundError(message)
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, RecembedError) and cls is not errors.MissingDependencyError:
        return cls(message)
    return DistributedError(f"rank 0 failed: {kind}: {message}")
