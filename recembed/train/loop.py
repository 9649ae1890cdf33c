"""The training loop: epochs of prefetched batches, evaluation, early stopping, checkpoints.

:class:`Trainer` runs one :class:`~recembed.train.config.RunConfig` end to end and writes
into ``train.out_dir``::

    checkpoints/checkpoint-<epoch>.pt   after every epoch (atomic; the newest few are kept;
                                        a run sharded over ranks writes sharded-<epoch>/ folders)
    best.pt                             the best epoch's model (when train.restore_best)
    model.pt                            the final model, its config and id maps (for export)
    metrics.json, history.json, curves.png, config.json

A checkpoint holds everything the rest of the run depends on -- model weights with the
fused optimizers' state, the dense optimizer, RNG states, epoch, history, early stopping
and the data-order seed -- so ``fit(resume=True)`` ends exactly where an uninterrupted
run would have. A run over several ranks is :class:`recembed.train.distributed_run.DistributedTrainer`.

Example:
    >>> config = RunConfig.from_dict({"train": {"task": "rating", "epochs": 2, "out_dir": "runs/mf"}})
    >>> result = Trainer(config).fit()          # doctest: +SKIP
    >>> result.metrics["rmse"]                   # doctest: +SKIP
    0.93
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TextIO

import numpy as np
import torch
from torch import nn

from recembed.data import PrefetchLoader
from recembed.errors import CheckpointError, ConfigError
from recembed.models import dense_parameters
from recembed.tables import EmbeddingBagCollection
from recembed.train._atomic import atomic_writer
from recembed.train.checkpoint import CheckpointManager, load_checkpoint, save_checkpoint
from recembed.train.config import RunConfig
from recembed.train.early_stopping import EarlyStopping
from recembed.train.history import History
from recembed.train.progress import ProgressBar
from recembed.train.run_state import (
    RESUMABLE,
    RUN_FORMAT,
    check_resumable,
    latest_run_checkpoint,
    list_sharded_checkpoints,
    read_run_state,
    remove_sharded_checkpoint,
    rng_state,
    set_rng_state,
    thread_count,
    use_threads,
)
from recembed.train.tasks import Task, make_task

__all__ = ["Trainer", "FitResult", "evaluate_checkpoint", "load_model", "thread_count", "RUN_FORMAT", "RESUMABLE"]

_LOWER_IS_BETTER = ("rmse", "mae", "log_loss", "loss")


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        metrics: final test metrics (plus reference values such as ``teacher_auc``).
        history: per-step losses and per-epoch validation metrics.
        out_dir: where the files were written.
        best_epoch: 1-based epoch whose model was evaluated (None without evaluation).
        train_samples_per_s: training throughput of this call's epochs (loader included).
        model: the trained model (plain, unsharded); None when the run's ranks were separate
            processes (``train.nproc > 1``): load ``out_dir / "model.pt"`` instead.
    """

    metrics: dict[str, float]
    history: History
    out_dir: Path
    best_epoch: Optional[int]
    train_samples_per_s: float
    model: Optional[nn.Module]


def load_model(task: Task, model: nn.Module, state: dict, path: Path) -> None:
    """Load ``state["model"]`` into ``model``; a mismatch is a CheckpointError naming ``path``."""
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit this {task.name} model: {exc}") from None


class Trainer:
    """Trains the run ``config`` describes; see the module docstring for what it writes.

    Args:
        config: a resolved run config.
        out_dir: overrides ``config.train.out_dir``.
        tensorboard_dir: also log scalars and the item-embedding projector there.
        log: stream for the per-epoch lines (the progress bar writes to standard error).
        task: a task whose data is already loaded (reused, e.g. by the demo); made from
            the config when None.
    """

    def __init__(self, config: RunConfig, *, out_dir: str | Path | None = None,
                 tensorboard_dir: str | Path | None = None, log: TextIO | None = None,
                 task: Task | None = None) -> None:
        self.config = config
        self.out_dir = Path(out_dir or config.train.out_dir or "runs/recembed")
        self.tensorboard_dir = tensorboard_dir
        self.log = log if log is not None else sys.stdout
        self.task = task
        self.checkpoints = CheckpointManager(self.out_dir / "checkpoints", keep_last=config.train.keep_checkpoints,
                                             prefix="checkpoint")
        name = config.eval.metric
        mode = "min" if name.split("@")[0] in _LOWER_IS_BETTER else "max"
        self.stopper = EarlyStopping(name, mode=mode, patience=config.train.patience, min_delta=config.train.min_delta)
        self.history = History()

    def _say(self, text: str) -> None:
        print(text, file=self.log, flush=True)

    # ---- setup ---------------------------------------------------------------------------
    def _setup(self) -> None:
        self._load_task_and_seed()
        self.model = self.task.build_model()
        self._make_dense_optimizer()

    def _load_task_and_seed(self) -> None:
        """Load the data (unless a loaded task was given) and seed every RNG from ``train.seed``."""
        t = self.config.train
        if self.task is None:
            self.task = make_task(self.config)
            self.task.load_data()
        torch.manual_seed(t.seed)
        np.random.seed(t.seed & 0xFFFFFFFF)
        random.seed(t.seed)
        self.start_epoch, self.global_step = 0, 0

    def _make_dense_optimizer(self) -> None:
        params = dense_parameters(self.model)
        self.dense_optimizer = self._dense_optimizer(params) if params else None

    def _dense_optimizer(self, params: list) -> torch.optim.Optimizer:
        t = self.config.train
        kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adagrad": torch.optim.Adagrad,
                 "sgd": torch.optim.SGD}
        return kinds[t.dense_optimizer](params, lr=t.dense_lr, weight_decay=t.dense_weight_decay)

    def _set_learning_rates(self, epoch: int) -> None:
        # A closed form of the epoch (not a scheduler's running state), so resuming needs nothing more.
        factor = self.config.train.lr_decay ** epoch
        if self.dense_optimizer is not None:
            for group in self.dense_optimizer.param_groups:
                group["lr"] = self.config.train.dense_lr * factor
        if factor == 1.0:
            return  # the configured rates are in place (and building optimizer faces costs an import)
        for module in self.model.modules():  # the fused tables' torch-optimizer face
            if isinstance(module, EmbeddingBagCollection) and module.fused is not None:
                for group in module.fused_optimizer().param_groups:
                    group["lr"] = self.config.model.embedding_lr * factor

    # ---- checkpoints ---------------------------------------------------------------------
    def _state(self, epoch: int, model: nn.Module | None = None) -> dict:
        """The run state after ``epoch`` epochs; ``model`` (default: the trained one) gives
        the weights and id maps."""
        model = self.model if model is None else model
        return {
            "format": RUN_FORMAT, "epoch": epoch, "global_step": self.global_step,
            "config": self.config.to_dict(), "model": model.state_dict(),
            "dense_optimizer": None if self.dense_optimizer is None else self.dense_optimizer.state_dict(),
            "history": self.history.state_dict(), "early_stopping": self.stopper.state_dict(),
            "rng": rng_state(), "data_seed": self.config.train.seed,
            "id_maps": self.task.id_maps(model),
        }

    def _save_checkpoint(self, epoch: int) -> None:
        """The epoch checkpoint (``epoch`` is 1-based)."""
        self.checkpoints.save(self._state(epoch), epoch)

    def _save_best(self, epoch: int) -> None:
        save_checkpoint(self.out_dir / "best.pt", {"epoch": epoch, "model": self.model.state_dict()})

    def _latest_checkpoint(self) -> Path:
        """The checkpoint ``--resume`` continues from: the newest epoch, a file or a sharded folder."""
        path = latest_run_checkpoint(self.checkpoints.directory, self.checkpoints.prefix)
        if path is None:
            raise CheckpointError(f"--resume: there is no checkpoint in {self.checkpoints.directory}; "
                                  "start the run without --resume")
        return path

    def _resume(self) -> None:
        path = self._latest_checkpoint()
        state = read_run_state(path)
        check_resumable(state, self.config.to_dict(), path)
        load_model(self.task, self.model, state, path)
        self._restore_run_state(state, path)

    def _restore_run_state(self, state: dict, path: Path) -> None:
        """Everything but the model: dense optimizer, history, early stopping, RNG, counters."""
        if self.dense_optimizer is not None:
            self.dense_optimizer.load_state_dict(state["dense_optimizer"])
        self.history.load_state_dict(state["history"])
        self.stopper.load_state_dict(state["early_stopping"])
        set_rng_state(state["rng"])
        self.start_epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self._say(f"resumed from {path} (epoch {self.start_epoch})")

    def _clear_previous_run(self) -> None:
        """A fresh run replaces an earlier run's checkpoints in the same folder (files and
        sharded folders): left in place, they would outrank the new ones in rotation and in
        a later ``--resume``."""
        old = self.checkpoints.checkpoints() + [p for p in [self.out_dir / "best.pt"] if p.is_file()]
        for path in old:
            path.unlink()
        folders = [path for _, path in list_sharded_checkpoints(self.checkpoints.directory)]
        for folder in folders:
            remove_sharded_checkpoint(folder)
        if old or folders:
            self._say(f"removed {len(old) + len(folders)} checkpoint(s) of an earlier run in {self.out_dir}")

    # ---- training ------------------------------------------------------------------------
    def _train_epoch(self, epoch: int, tb) -> tuple[float, float]:
        """One pass over the training data; returns (mean loss, samples per second)."""
        t = self.config.train
        self.model.train()
        self._set_learning_rates(epoch)
        batches = PrefetchLoader(self.task.train_batches(epoch), depth=t.prefetch_depth)
        bar = ProgressBar(total=self.task.num_train_samples, desc=f"epoch {epoch + 1}/{t.epochs}",
                          backend=t.progress, min_interval=10.0)
        total, samples, start = 0.0, 0, time.perf_counter()
        with bar:
            for batch in batches:
                if self.dense_optimizer is not None:
                    self.dense_optimizer.zero_grad(set_to_none=True)
                loss = self.task.loss(self.model, batch)
                loss.backward()  # also applies the fused embedding updates
                if self.dense_optimizer is not None:
                    self.dense_optimizer.step()
                value = float(loss.detach())
                self.global_step += 1
                self.history.log_step(self.global_step, value)
                total += value * len(batch)
                samples += len(batch)
                bar.update(len(batch), loss=total / samples)
                if tb is not None and self.global_step % t.log_every == 0:
                    tb.log_scalar("train/loss", total / samples, self.global_step)
        elapsed = time.perf_counter() - start
        if samples == 0:
            raise ConfigError("the training data yielded no batches (is train.batch_size larger than the data "
                              "with train.drop_last = true?)")
        return total / samples, samples / max(elapsed, 1e-9)

    def _evaluate(self, split: str) -> dict[str, float]:
        return self._evaluate_model(self.model, split)

    def _evaluate_model(self, model: nn.Module, split: str) -> dict[str, float]:
        model.eval()
        try:
            return self.task.evaluate(model, split)
        finally:
            model.train()

    def fit(self, resume: bool = False) -> FitResult:
        """Train (or continue with ``resume``), evaluate on the test split, write the outputs."""
        t = self.config.train
        if t.nproc > 1:
            raise ConfigError(f"train.nproc = {t.nproc}: Trainer trains in this one process; start the ranks with "
                              "recembed.train.distributed_run.fit_run(config) (or `recembed train --nproc N`)")
        with use_threads(thread_count(t.threads)):
            self._setup()
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if resume:
                self._resume()
            else:
                self._clear_previous_run()
            self._say(self.task.describe())
            tb = None
            if self.tensorboard_dir is not None:
                from recembed.train.tensorboard import TensorBoardLogger

                tb = TensorBoardLogger(self.tensorboard_dir)
            try:
                rates = self._run_epochs(tb)
                return self._finish(tb, float(np.mean(rates)) if rates else 0.0, self.model)
            finally:
                if tb is not None:
                    tb.close()

    def _run_epochs(self, tb) -> list[float]:
        t, metric = self.config.train, self.config.eval.metric
        rates = []
        for epoch in range(self.start_epoch, t.epochs):
            if t.early_stopping and self.stopper.should_stop:
                break
            train_loss, rate = self._train_epoch(epoch, tb)
            rates.append(rate)
            started = time.perf_counter()
            val = self._evaluate("val")
            self.history.log_epoch({"train_loss": train_loss, **val})
            self.stopper.step(val, epoch=epoch + 1)
            if self.stopper.improved and t.restore_best:
                self._save_best(epoch + 1)
            self._save_checkpoint(epoch + 1)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in val.items())
            mark = " *" if self.stopper.improved else ""
            self._say(f"epoch {epoch + 1}/{t.epochs}: train_loss {train_loss:.4f} | val {shown}{mark} | "
                      f"{rate:,.0f} samples/s, eval {time.perf_counter() - started:.1f}s")
            if tb is not None:
                tb.log_scalars({"train_loss": train_loss, **val}, step=epoch + 1, prefix="epoch/")
            if t.early_stopping and self.stopper.should_stop:
                self._say(f"early stopping: {metric} has not improved for {self.stopper.num_bad_epochs} epochs "
                          f"(best {self.stopper.best:.4f} at epoch {self.stopper.best_epoch})")
        return rates

    def _finish(self, tb, rate: float, model: nn.Module) -> FitResult:
        """Test ``model`` (a plain model: the trained one, or the best epoch's), write the outputs."""
        t = self.config.train
        best_epoch = self.stopper.best_epoch
        best_path = self.out_dir / "best.pt"
        if t.restore_best and best_epoch is not None and best_path.is_file():
            load_model(self.task, model, load_checkpoint(best_path), best_path)
        elif self.history.epochs:
            best_epoch = len(self.history.epochs)
        metrics = self._evaluate_model(model, "test")
        final = {**metrics, **self.task.reference_metrics()}
        summary = {**final, "epochs": len(self.history.epochs), "best_epoch": best_epoch}
        save_checkpoint(self.out_dir / "model.pt", {
            "format": RUN_FORMAT, "config": self.config.to_dict(), "model": model.state_dict(),
            "id_maps": self.task.id_maps(model), "metrics": final, "epoch": len(self.history.epochs)})
        self._write_json("metrics.json", summary)
        self._write_json("config.json", self.config.to_dict())
        self.history.save_json(self.out_dir / "history.json")
        if self.config.train.plot and (self.history.epochs or self.history.step_losses):
            from recembed.train.plots import plot_history

            plot_history(self.history, self.out_dir / "curves.png", title=f"{self.task.name}: {self.config.model.kind}")
        if tb is not None:
            tb.log_scalars(metrics, step=max(self.global_step, 0), prefix="test/")
            projection = self.task.projection(model)
            if projection is not None:
                tb.add_embedding(projection.matrix, projection.labels, tag=projection.tag,
                                 step=self.global_step, metadata_header=projection.header)
        return FitResult(final, self.history, self.out_dir, best_epoch, rate, model)

    def _write_json(self, name: str, values: dict) -> None:
        with atomic_writer(self.out_dir / name, "w", durable=False) as handle:
            json.dump(values, handle, indent=1, default=float)


def evaluate_checkpoint(config: RunConfig, path: str | Path) -> dict[str, float]:
    """Test metrics of the model saved at ``path`` (an epoch checkpoint -- file or sharded
    folder --, best.pt or model.pt) on the data ``config`` describes (the same split as
    training, given the same config)."""
    path = Path(path)
    state = read_run_state(path)
    if "model" not in state:
        raise CheckpointError(f"{path} holds no model state (keys: {sorted(state)})")
    task = make_task(config)
    task.load_data()
    with use_threads(thread_count(config.train.threads)):
        model = task.build_model()
        load_model(task, model, state, path)
        model.eval()
        return {**task.evaluate(model, "test"), **task.reference_metrics()}
