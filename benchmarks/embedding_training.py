"""Embedding training throughput, side by side: recembed fused vs torch sparse vs TorchRec.

Standard workload: 8 tables x 1,000,000 rows x 64 dims, float32, batch 2048, 20 ids per
bag, ids Zipf(1.1) modulo rows. Variants: uniform ids, dims 16 and 128. Each method runs in
its own process (so peak memory is its own), measures lookups/s for forward + backward +
update (and forward only), and the step's peak resident memory against tables + optimizer
state. With ``--repeats R`` the methods run in R interleaved rounds and each keeps its best
round, so a burst of load on a shared machine hits every method alike.

    python benchmarks/embedding_training.py --variants standard --repeats 2   # the targets
    python benchmarks/embedding_training.py                                   # every variant
    python benchmarks/embedding_training.py --quick        # 2 tables x 200k rows, 5 steps, main methods
    python benchmarks/embedding_training.py --child recembed:adam --variant standard --mode train

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

VARIANTS = {
    "standard": dict(dim=64, ids="zipf"),
    "uniform": dict(dim=64, ids="uniform"),
    "dim16": dict(dim=16, ids="zipf"),
    "dim128": dict(dim=128, ids="zipf"),
}
TABLES, ROWS, BATCH, BAG = 8, 1_000_000, 2048, 20
QUICK_TABLES, QUICK_ROWS = 2, 200_000
RECEMBED_OPTS = ["sgd", "adagrad", "rowwise_adagrad", "adam", "rowwise_adam", "lamb"]
TORCH_OPTS = ["sgd", "adagrad", "adam"]
TORCHREC_OPTS = ["sgd", "adagrad", "rowwise_adagrad", "adam"]
STATE_FLOATS_PER_ROW = {"sgd": 0, "adagrad": 1, "rowwise_adagrad": 0, "adam": 2, "rowwise_adam": 1, "lamb": 2}
QUICK_METHODS = ["recembed:sgd", "recembed:rowwise_adagrad", "recembed:adam", "torch:sgd", "torch:adam",
                 "torchrec:sgd", "torchrec:rowwise_adagrad"]
FORWARD_METHODS = ["recembed:sgd", "torch:sgd", "torchrec:sgd"]
FORWARD_STEPS_FACTOR = 8  # forward-only children time this many times --steps
#: (what, recembed method/mode, rival method/mode, target ratio) as the issue states them.
TARGETS = [
    ("fused SGD vs TorchRec SGD", "recembed:sgd/train", "torchrec:sgd/train", 1.25),
    ("row-wise Adagrad vs TorchRec row-wise Adagrad", "recembed:rowwise_adagrad/train",
     "torchrec:rowwise_adagrad/train", 2.0),
    ("row-wise Adagrad vs torch SparseAdam", "recembed:rowwise_adagrad/train", "torch:adam/train", 5.0),
    ("Adam vs TorchRec Adam", "recembed:adam/train", "torchrec:adam/train", 2.0),
    ("Adam vs torch SparseAdam", "recembed:adam/train", "torch:adam/train", 5.0),
    ("forward only vs F.embedding_bag", "recembed:sgd/forward", "torch:sgd/forward", 1.0),
]
PEAK_TARGET = 1.2


def _batches(variant: dict, count: int = 4):
    import numpy as np
    import torch

    rows = ROWS
    rng = np.random.default_rng(0)
    out = []
    n = TABLES * BATCH * BAG
    for _ in range(count):
        if variant["ids"] == "zipf":
            ids = (rng.zipf(1.1, n) - 1) % rows
        else:
            ids = rng.integers(0, rows, n)
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

    torch.set_num_threads(int(os.environ.get("RECEMBED_BENCH_THREADS", "2")))
    variant = VARIANTS[variant_name]
    batches = _batches(variant)
    base = _rss("VmRSS")
    step, forward = _build(method, variant["dim"])
    fn = step if mode == "train" else forward
    if fn is None:
        return {"skipped": "no forward-only mode"}
    if mode == "forward":
        steps *= FORWARD_STEPS_FACTOR  # a forward takes ~5 ms: 10 of them are too short a sample
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


def _run_one(method: str, mode: str, variant: str, args) -> dict:
    if not _available(method.split(":")[0]):
        return {"skipped": "not installed"}
    cmd = [sys.executable, __file__, "--child", method, "--variant", variant, "--steps", str(args.steps),
           "--mode", mode] + (["--quick"] if args.quick else []) + (["--rows", str(args.rows)] if args.rows else [])
    env = os.environ.copy()
    env["NUMBA_NUM_THREADS"] = str(args.threads)
    env["RECEMBED_BENCH_THREADS"] = str(args.threads)
    if args.threading_layer:
        env["NUMBA_THREADING_LAYER"] = args.threading_layer
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    global TABLES, ROWS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="standard,uniform,dim16,dim128")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per method (after 3 warm-up steps)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds; each method keeps its best")
    parser.add_argument("--methods", help="comma-separated subset, e.g. recembed:adam,torch:adam")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_TABLES} tables x {QUICK_ROWS:,} rows, 5 steps, standard variant, main methods")
    parser.add_argument("--rows", type=int, help=f"rows per table (default {ROWS:,}); smaller fits a busy machine's memory")
    parser.add_argument("--threads", type=int, default=2, help="torch and numba threads per method (the machine has 2)")
    parser.add_argument("--threading-layer", help="NUMBA_THREADING_LAYER for the children (default: numba's choice)")
    parser.add_argument("--child", help="run one method in this process and print its JSON (METHOD like recembed:adam)")
    parser.add_argument("--variant", default="standard", help="the child's variant")
    parser.add_argument("--mode", default="train", choices=["train", "forward"], help="the child's mode")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "embedding_training.json"))
    args = parser.parse_args()
    if args.quick:
        TABLES, ROWS = QUICK_TABLES, QUICK_ROWS
    if args.rows:
        ROWS = args.rows
    if args.child:
        print(json.dumps(run_child(args.child, args.variant, args.steps, args.mode)))
        return
    if args.quick:
        args.steps = min(args.steps, 5)
        if args.variants == parser.get_default("variants"):
            args.variants = "standard"
    if args.methods:
        methods = args.methods.split(",")
    elif args.quick:
        methods = QUICK_METHODS
    else:
        methods = [f"recembed:{o}" for o in RECEMBED_OPTS] + [f"torch:{o}" for o in TORCH_OPTS]
        methods += [f"torchrec:{o}" for o in TORCHREC_OPTS] + ["gather:limit"]
    forward = [m for m in FORWARD_METHODS if m in methods or not args.methods]
    results: dict = {"_meta": {"tables": TABLES, "rows": ROWS, "batch": BATCH, "ids_per_bag": BAG, "steps": args.steps,
                               "repeats": args.repeats, "threads": args.threads, "threading_layer": args.threading_layer or "default",
                               "load_before": _load()}}
    for variant in args.variants.split(","):
        results[variant] = {}
        jobs = [(m, "train") for m in methods] + [(m, "forward") for m in forward]
        for round_ in range(args.repeats):
            for method, mode in jobs:
                key = f"{method}/{mode}"
                r = _run_one(method, mode, variant, args)
                r["load"] = _load()
                best = results[variant].get(key)
                if best is None or r.get("lookups_per_s", -1) > best.get("lookups_per_s", -1):
                    results[variant][key] = r
                print(variant, f"round {round_ + 1}", key, r, flush=True)
    results["_meta"]["load_after"] = _load()
    _report(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


def _report(results: dict) -> None:
    meta = results["_meta"]
    print(f"\nload average before {meta['load_before']}, after {meta['load_after']}; "
          f"threads per method: {meta['threads']}; numba threading layer: {meta['threading_layer']}")
    for variant, rows in results.items():
        if variant == "_meta":
            continue
        print(f"\n## {variant}: {meta['tables']} tables x {meta['rows']:,} rows x {VARIANTS[variant]['dim']} dims, "
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
        print(f"\n| {'target (' + variant + ')':<48} | {'ratio':>7} | {'target':>7} | {'met':>4} |")
        print(f"|{'-' * 50}|{'-' * 9}|{'-' * 9}|{'-' * 6}|")
        for what, ours, rival, target in TARGETS:
            a = rows.get(ours, {}).get("lookups_per_s")
            b = rows.get(rival, {}).get("lookups_per_s")
            if a is None or b is None:
                print(f"| {what:<48} | {'n/a':>7} | {target:>6.2f}x | {'':>4} |")
                continue
            print(f"| {what:<48} | {a / b:>6.2f}x | {target:>6.2f}x | {'yes' if a / b >= target else 'NO':>4} |")
        peaks = [r["peak_over_tables_and_state"] for k, r in rows.items()
                 if k.startswith("recembed:") and k.endswith("/train") and r.get("peak_over_tables_and_state")]
        if peaks:
            print(f"| {'recembed peak step memory / (tables + state), max':<48} | {max(peaks):>6.2f}x | "
                  f"{'<=' + str(PEAK_TARGET):>6}x | {'yes' if max(peaks) <= PEAK_TARGET else 'NO':>4} |")


def _ratio(a: float, b: float | None, kind: str) -> str:
    return "" if (b is None or kind != "recembed") else f"{a / b:.2f}x"


if __name__ == "__main__":
    main()
