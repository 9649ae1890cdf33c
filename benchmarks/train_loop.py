"""Is the training loop ever the bottleneck? Loop throughput vs the raw training step.

For each workload the same tables, model and batches are trained two ways:

- loop: ``recembed.train.Trainer`` -- batches cut and shuffled in the PrefetchLoader's
  background thread, task preparation, progress accounting, per-step loss history;
  samples/s of the training phase (evaluation and checkpoint writing excluded);
- raw: the model's fused-kernel training step (forward, ``loss.backward()`` which applies
  the fused embedding update, dense optimizer step) over batches built beforehand.

The target is loop >= 80% of raw. Workloads: DLRM on synthetic Criteo-shaped clicks, and
biased MF on MovieLens-sized ratings. Both ways run in the same process with the same
torch/numba thread count, interleaved, and the best of ``--repeats`` is kept for each.
A third column, build, is the loader alone (batches cut and wrapped, no training): how
much of one core the loader thread needs next to the training step.

    python benchmarks/train_loop.py                 # default sizes
    python benchmarks/train_loop.py --quick         # smaller data, one epoch (about a minute)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numba
import torch

from recembed.models import dense_parameters
from recembed.train.config import RunConfig
from recembed.train.loop import Trainer, thread_count
from recembed.train.tasks import make_task

RESULTS = Path(__file__).resolve().parent / "results" / "train_loop.json"


def workloads(scale: float) -> dict[str, dict]:
    return {
        "dlrm_ctr": {
            "data": {"val_fraction": 0.02,
                     "synthetic": {"num_samples": int(400_000 * scale), "max_cardinality": 20_000}},
            "model": {"kind": "dlrm", "embedding_dim": 16, "bottom_mlp": [64], "top_mlp": [64, 32]},
            "train": {"task": "ctr", "batch_size": 2048},
        },
        "mf_rating": {
            "data": {"val_fraction": 0.02, "synthetic": {"num_users": 6000, "num_items": 4000,
                                                         "num_ratings": int(1_000_000 * scale)}},
            "model": {"embedding_dim": 64, "embedding_optimizer": "adagrad"},
            "train": {"task": "rating", "batch_size": 1024},
        },
    }


def make_config(values: dict, epochs: int, threads: int, out: str) -> RunConfig:
    values = {k: dict(v) for k, v in values.items()}
    values["train"].update(epochs=epochs, threads=threads, progress="none", plot=False, early_stopping=False,
                           restore_best=False, out_dir=out)
    return RunConfig.from_dict(values)


def measure_loop(config: RunConfig, task) -> float:
    result = Trainer(config, task=task, log=io.StringIO()).fit()
    return result.train_samples_per_s


def measure_raw(config: RunConfig, task) -> float:
    torch.manual_seed(config.train.seed)
    model = task.build_model()
    params = dense_parameters(model)
    optimizer = torch.optim.Adam(params, lr=config.train.dense_lr) if params else None
    batches = list(task.train_batches(0))  # built (and negative-sampled) before the clock starts
    samples, start = 0, time.perf_counter()
    for _ in range(config.train.epochs):
        for batch in batches:
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
            loss = task.loss(model, batch)
            loss.backward()
            if optimizer is not None:
                optimizer.step()
            samples += len(batch)
    return samples / (time.perf_counter() - start)


def measure_build(task) -> float:
    """Samples/s of the loader's work alone: one epoch of batches, nothing trained."""
    samples, start = 0, time.perf_counter()
    for batch in task.train_batches(0):
        samples += len(batch)
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the data sizes")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs of each")
    parser.add_argument("--threads", type=int, default=0, help="0 = cores - 1 (at least 1, at most 4)")
    parser.add_argument("--quick", action="store_true", help="--scale 0.2 --epochs 1 (a quick check)")
    args = parser.parse_args()
    if args.quick:
        args.scale, args.epochs = 0.2, 1
    threads = thread_count(args.threads)
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))

    rows, results = [], {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        for name, values in workloads(args.scale).items():
            config = make_config(values, args.epochs, threads, scratch + "/" + name)
            task = make_task(config)
            task.load_data()
            measure_raw(make_config(values, 1, threads, scratch), task)  # warm-up: numba compile, allocations
            loop, raw = [], []
            for _ in range(args.repeats):  # interleaved, so load changes hit both
                raw.append(measure_raw(config, task))
                loop.append(measure_loop(config, task))
            build = max(measure_build(task) for _ in range(args.repeats))
            best_loop, best_raw = max(loop), max(raw)
            results[name] = {"loop_samples_per_s": best_loop, "raw_samples_per_s": best_raw,
                             "ratio": best_loop / best_raw, "build_samples_per_s": build,
                             "train_samples": task.num_train_samples,
                             "batch_size": config.train.batch_size, "epochs": args.epochs,
                             "all_loop": loop, "all_raw": raw}
            rows.append((name, best_loop, best_raw, best_loop / best_raw, build))

    load = os.getloadavg()[0]  # other work on the machine competes with the loader thread
    print(f"\ntraining throughput, {threads} thread(s), best of {args.repeats}, load average {load_before:.1f} "
          f"before / {load:.1f} after, on {os.cpu_count()} cores; target loop/raw >= 0.80")
    print(f"{'workload':<12} {'loop samples/s':>15} {'raw samples/s':>15} {'loop/raw':>9} {'build samples/s':>16} "
          f"{'build/raw cost':>15}")
    for name, loop, raw, ratio, build in rows:
        print(f"{name:<12} {loop:>15,.0f} {raw:>15,.0f} {ratio:>9.2f} {build:>16,.0f} {raw / build:>15.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"threads": threads, "scale": args.scale, "load_average": load, "load_average_before": load_before,
                                   "cores": os.cpu_count(), "results": results}, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
