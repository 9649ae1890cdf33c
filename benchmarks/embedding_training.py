"""Embedding training throughput, side by side: recembed fused vs torch sparse vs TorchRec.

Standard workload: 8 tables x 1,000,000 rows x 64 dims, float32, batch 2048, 20 ids per
bag, ids Zipf(1.1) modulo rows. Variants: uniform ids, dims 16 and 128. Each method runs in
its own process (so peak memory is its own), measures lookups/s for forward + backward +
update, and the step's peak resident memory against tables + optimizer state.

    python benchmarks/embedding_training.py                  # all variants
    python benchmarks/embedding_training.py --variants standard --steps 10

TorchRec is optional (pip install --no-deps torchrec==1.8.0 fbgemm-gpu-cpu==1.8.0, plus
tensordict torchmetrics==1.0.3 tqdm pyre-extensions iopath); its rows are skipped when absent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "standard": dict(dim=64, ids="zipf"),
    "uniform": dict(dim=64, ids="uniform"),
    "dim16": dict(dim=16, ids="zipf"),
    "dim128": dict(dim=128, ids="zipf"),
}
TABLES, ROWS, BATCH, BAG = 8, 1_000_000, 2048, 20
RECEMBED_OPTS = ["sgd", "adagrad", "rowwise_adagrad", "adam", "rowwise_adam", "lamb"]
TORCH_OPTS = ["sgd", "adagrad", "adam"]
TORCHREC_OPTS = ["sgd", "adagrad", "rowwise_adagrad", "adam"]
STATE_FLOATS_PER_ROW = {"sgd": 0, "adagrad": 1, "rowwise_adagrad": 0, "adam": 2, "rowwise_adam": 1, "lamb": 2}


def _batches(variant: dict, count: int = 4):
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    out = []
    n = TABLES * BATCH * BAG
    for _ in range(count):
        if variant["ids"] == "zipf":
            ids = (rng.zipf(1.1, n) - 1) % ROWS
        else:
            ids = rng.integers(0, ROWS, n)
        out.append(torch.from_numpy(ids.astype(np.int64)))
    return out


def _rss_peak_reset() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _state_bytes(method: str, dim: int) -> int:
    opt = method.split(":", 1)[1] if ":" in method else ""
    per_row = STATE_FLOATS_PER_ROW.get(opt, 0) * dim + (1 if opt in ("rowwise_adagrad", "rowwise_adam") else 0)
    return TABLES * ROWS * per_row * 4


def _build(method: str, dim: int):
    """Returns (step(ids) callable, forward-only callable)."""
    import torch
    import torch.nn.functional as F

    kind, _, opt = method.partition(":")
    offsets = torch.arange(0, TABLES * BATCH * BAG + 1, BAG, dtype=torch.int64)
    keys = [f"f{t}" for t in range(TABLES)]
    if kind == "recembed":
        import recembed as rec

        cfgs = [rec.EmbeddingBagConfig(name=f"t{t}", num_embeddings=ROWS, embedding_dim=dim, feature_names=[keys[t]],
                                       optimizer=opt, lr=0.01) for t in range(TABLES)]
        ebc = rec.EmbeddingBagCollection(cfgs)

        def kjt(ids):
            return rec.KeyedJaggedTensor(keys=keys, values=ids, offsets=offsets, stride=BATCH)

        def step(ids):
            ebc(kjt(ids)).values().sum().backward()

        def forward(ids):
            with torch.no_grad():
                return ebc(kjt(ids)).values()

        return step, forward
    if kind == "torch":
        bags = [torch.nn.EmbeddingBag(ROWS, dim, mode="sum", sparse=True) for _ in range(TABLES)]
        params = [b.weight for b in bags]
        optimizer = {"sgd": lambda: torch.optim.SGD(params, lr=0.01),
                     "adagrad": lambda: torch.optim.Adagrad(params, lr=0.01),
                     "adam": lambda: torch.optim.SparseAdam(params, lr=0.01)}[opt]()
        per = BATCH * BAG
        local = torch.arange(0, BATCH * BAG, BAG, dtype=torch.int64)

        def step(ids):
            optimizer.zero_grad()
            outs = [bags[t](ids[t * per:(t + 1) * per], local) for t in range(TABLES)]
            torch.cat(outs, 1).sum().backward()
            optimizer.step()

        def forward(ids):
            with torch.no_grad():
                return torch.cat([F.embedding_bag(ids[t * per:(t + 1) * per], bags[t].weight, local, mode="sum")
                                  for t in range(TABLES)], 1)

        return step, forward
    if kind == "torchrec":
        from torchrec import optim as trec_optim
        from torchrec.modules.embedding_configs import EmbeddingBagConfig
        from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
        from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

        cfgs = [EmbeddingBagConfig(name=f"t{t}", num_embeddings=ROWS, embedding_dim=dim, feature_names=[keys[t]])
                for t in range(TABLES)]
        opt_type = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad,
                    "rowwise_adagrad": trec_optim.RowWiseAdagrad, "adam": torch.optim.Adam}[opt]
        ebc = FusedEmbeddingBagCollection(tables=cfgs, optimizer_type=opt_type, optimizer_kwargs={"lr": 0.01})

        def step(ids):
            ebc(KeyedJaggedTensor(keys=keys, values=ids, offsets=offsets)).values().sum().backward()

        def forward(ids):
            with torch.no_grad():
                return ebc(KeyedJaggedTensor(keys=keys, values=ids, offsets=offsets)).values()

        return step, forward
    if kind == "gather":
        weights = [torch.randn(ROWS, dim) for _ in range(TABLES)]
        per = BATCH * BAG

        def step(ids):
            for t in range(TABLES):
                torch.index_select(weights[t], 0, ids[t * per:(t + 1) * per])

        return step, None
    raise ValueError(method)


def run_child(method: str, variant_name: str, steps: int, mode: str) -> dict:
    import torch

    torch.set_num_threads(2)
    variant = VARIANTS[variant_name]
    batches = _batches(variant)
    base = _rss("VmRSS")
    step, forward = _build(method, variant["dim"])
    fn = step if mode == "train" else forward
    if fn is None:
        return {"skipped": "no forward-only mode"}
    for i in range(3):
        fn(batches[i % len(batches)])
    _rss_peak_reset()
    start = time.perf_counter()
    for i in range(steps):
        fn(batches[i % len(batches)])
    elapsed = time.perf_counter() - start
    peak = _rss("VmHWM")
    table_bytes = TABLES * ROWS * variant["dim"] * 4
    state = _state_bytes(method, variant["dim"]) if method.split(":")[0] != "gather" else 0
    return {
        "lookups_per_s": TABLES * BATCH * BAG * steps / elapsed,
        "step_ms": 1000 * elapsed / steps,
        "peak_over_tables_and_state": (peak - base) / (table_bytes + state) if peak > base else None,
    }


def _available(kind: str) -> bool:
    if kind != "torchrec":
        return True
    try:
        import torchrec.modules.fused_embedding_modules  # noqa: F401
    except Exception:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="standard,uniform,dim16,dim128")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="train", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "embedding_training.json"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.variant, args.steps, args.mode)))
        return
    methods = [f"recembed:{o}" for o in RECEMBED_OPTS] + [f"torch:{o}" for o in TORCH_OPTS]
    methods += [f"torchrec:{o}" for o in TORCHREC_OPTS] + ["gather:limit"]
    results: dict = {}
    for variant in args.variants.split(","):
        results[variant] = {}
        jobs = [(m, "train") for m in methods] + [(m, "forward") for m in ("recembed:sgd", "torch:sgd", "torchrec:sgd")]
        for method, mode in jobs:
            if not _available(method.split(":")[0]):
                results[variant][f"{method}/{mode}"] = {"skipped": "not installed"}
                continue
            cmd = [sys.executable, __file__, "--child", method, "--variant", variant, "--steps", str(args.steps),
                   "--mode", mode]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if proc.returncode != 0:
                results[variant][f"{method}/{mode}"] = {"error": proc.stderr.strip().splitlines()[-1:]}
            else:
                results[variant][f"{method}/{mode}"] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(variant, method, mode, results[variant][f"{method}/{mode}"], flush=True)
    _report(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


def _report(results: dict) -> None:
    for variant, rows in results.items():
        print(f"\n## {variant}: {TABLES} tables x {ROWS:,} rows x {VARIANTS[variant]['dim']} dims, "
              f"batch {BATCH}, {BAG} ids/bag, {VARIANTS[variant]['ids']} ids")
        print(f"| {'method':<28} | {'M lookups/s':>11} | {'vs torchrec':>11} | {'vs torch':>8} | {'peak/(tables+state)':>19} |")
        print(f"|{'-' * 30}|{'-' * 13}|{'-' * 13}|{'-' * 10}|{'-' * 21}|")
        for key, r in rows.items():
            if "lookups_per_s" not in r:
                print(f"| {key:<28} | {str(r.get('skipped') or r.get('error'))[:60]} |")
                continue
            method, mode = key.split("/")
            kind, opt = method.split(":")
            rate = r["lookups_per_s"]
            trec = rows.get(f"torchrec:{opt}/{mode}", {}).get("lookups_per_s")
            tsparse = rows.get(f"torch:{'adam' if opt in ('adam', 'rowwise_adam', 'lamb') else opt}/{mode}", {})
            tsparse = tsparse.get("lookups_per_s")
            peak = r.get("peak_over_tables_and_state")
            print(f"| {key:<28} | {rate / 1e6:>11.2f} | {_ratio(rate, trec, kind):>11} | {_ratio(rate, tsparse, kind):>8} "
                  f"| {'' if peak is None else f'{peak:.2f}x':>19} |")


def _ratio(a: float, b: float | None, kind: str) -> str:
    return "" if (b is None or kind != "recembed") else f"{a / b:.2f}x"


if __name__ == "__main__":
    main()
