"""Compressed and quantised embedding tables on the synthetic CTR task with DLRM.

For each compression method (hashing trick, Bloom, QR mult, QR add, mixed-dimension;
ROBE with ``--methods``) at each target ratio (1x, 4x, 10x, 100x), a DLRM is trained on
:func:`recembed.data.make_ctr_dataset` and scored on a held-out split: embedding bytes,
test AUC, log loss and training throughput. Then the plain (uncompressed, "full") model is
quantised (``benchmarks/compression_quant.py``): bytes, AUC change, and pooled lookups per
second against float32 - recembed's collection forward and plain ``F.embedding_bag`` - with
PyTorch's own FBGEMM row-wise int8/int4 embedding-bag operators as a rival when present.

A target ratio is for *all* tables together: tables with fewer than ``--min-rows`` ids stay
whole and use part of the budget, and the others share the rest in proportion to their ids
(whole rows, so never over it). A table that cannot go as small as its share (QR needs about
2 sqrt(n) rows) keeps its smallest size and the larger tables shrink more to make up; when
even that cannot reach the target, the row says "qr floor" and "achieved" shows the real
ratio. Mixed-dim keeps its own per-table ratio. At 100x the small tables do not fit the
budget whole: QR reaches it over every table with ``--min-rows 1``.

Usage:
    python benchmarks/compression.py                       # everything, a few minutes on 2 cores
    python benchmarks/compression.py --quick               # a small smoke run
    python benchmarks/compression.py --quant-only          # only the full model and its quantised copies
    python benchmarks/compression.py --quant-only --quick  # the same, small (under a minute)
    python benchmarks/compression.py --methods qr-mult --ratios 100 --min-rows 1   # 100x over every table
    add --clock cpu on a busy machine (lookups timed by CPU time; --threads 1 keeps that fair)
Writes benchmarks/results/compression.json (compression_quant.json with --quant-only) and the
PNG beside it (AUC against bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling _compression_ctr / compression_quant

from _compression_ctr import make_data, run_method, warm_up
from compression_quant import print_quant_tables, run_large_lookups, run_quantized

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("hash", "bloom", "qr-mult", "qr-add", "mixed-dim", "robe")
DEFAULT_METHODS = ("hash", "bloom", "qr-mult", "qr-add", "mixed-dim")

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=240_000, help="examples generated (80%% train)")
    p.add_argument("--sparse", type=int, default=8, help="sparse features")
    p.add_argument("--dense", type=int, default=4, help="dense features")
    p.add_argument("--max-cardinality", type=int, default=100_000, help="ids of the largest table")
    p.add_argument("--dim", type=int, default=32, help="embedding dim")
    p.add_argument("--epochs", type=int, default=1, help="passes over the training data (a second pass lets the "
                   "uncompressed model memorise rare ids and lose ~0.02 AUC)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--ratios", default="1,4,10,100", help="target compression factors")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"from {','.join(METHODS)}")
    p.add_argument("--bloom-hashes", type=int, default=2)
    p.add_argument("--min-rows", type=int, default=1000, help="compress tables with at least this many ids")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and numba threads (1 by default: on a shared machine, parallel regions that wait "
                        "for a descheduled worker made timings swing 10x)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lookup-rows", type=int, default=1_000_000,
                   help="rows of each of the two large tables for the memory-bound lookup test (0 skips it)")
    p.add_argument("--lookup-batches", type=int, default=64,
                   help="distinct batches of 4096 x 2 bags timed per round on the large tables (enough that their "
                        "rows do not stay cached between variants)")
    p.add_argument("--rounds", type=int, default=9, help="timing rounds of the lookup tests (best is kept)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="lookup timing clock: wall time, or this process's CPU time (steadier on a loaded machine "
                        "with --threads 1)")
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument("--quant-only", action="store_true",
                   help="train only the full model and run the quantisation section (no compression methods)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/compression[_quant].json)")
    args = p.parse_args(argv)
    if args.quick:
        args.samples, args.max_cardinality, args.epochs, args.sparse = 30_000, 20_000, 1, 6
        args.lookup_rows, args.rounds = min(args.lookup_rows, 100_000), min(args.rounds, 5)
        args.lookup_batches = min(args.lookup_batches, 8)
    if args.out is None:
        args.out = str(RESULTS / ("compression_quant.json" if args.quant_only else "compression.json"))
    return args



def print_method_table(method_rows: list[dict], full_bytes: int) -> None:
    print("\nCompressed tables (DLRM, synthetic CTR; bytes = all embedding tables)")
    print(f"{'method':<10} {'target':>6} {'bytes':>11} {'achieved':>8} {'AUC':>7} {'dAUC':>8} {'logloss':>8} "
          f"{'train ex/s':>10}  notes")
    full_auc = next(r["auc"] for r in method_rows if r["method"] == "full")
    for r in method_rows:
        print(f"{r['method']:<10} {r['target']:>5g}x {r['bytes']:>11,} {full_bytes / r['bytes']:>7.1f}x "
              f"{r['auc']:>7.4f} {r['auc'] - full_auc:>+8.4f} {r['log_loss']:>8.4f} {r['train_examples_per_s']:>10,.0f}"
              f"  {', '.join(r['notes'])}")


def write_outputs(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(result, handle, indent=2)
    os.replace(tmp, path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; plot skipped")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(r["method"] for r in result["methods"]):
        rows = [r for r in result["methods"] if r["method"] == method]
        ax.plot([r["bytes"] for r in rows], [r["auc"] for r in rows], "o-", label=method)
    quant = [r for r in result["quantized"] if not r["dtype"].startswith(("torch", "float32"))]
    ax.scatter([r["bytes"] for r in quant], [r["auc"] for r in quant], marker="*", s=120, c="k", zorder=3)
    for r in quant:
        ax.annotate(r["dtype"], (r["bytes"], r["auc"]), textcoords="offset points", xytext=(5, -10), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("embedding bytes (log scale)")
    ax.set_ylabel("test AUC")
    ax.set_title("DLRM on synthetic CTR: AUC against table size")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = path.with_suffix(".png")
    fd, tmp = tempfile.mkstemp(dir=png.parent, prefix=f".{png.name}.", suffix=".tmp.png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, png)
    plt.close(fig)



def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    methods = [] if args.quant_only else [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {METHODS}")
    factors = [float(x) for x in args.ratios.split(",")]
    started = time.perf_counter()
    train, test = make_data(args)
    print(f"data: {len(train):,} train / {len(test):,} test examples, tables {list(train.cardinalities.values())}, "
          f"dim {args.dim}, teacher AUC on test {test.teacher_auc:.4f}")
    warm_up(train, args, (None,) if args.quant_only else (None, "qr-mult"))
    full_row, full_model = run_method(train, test, args, None, 1.0)
    method_rows = [full_row]
    print(f"  full      1x  AUC {full_row['auc']:.4f}  bytes {full_row['bytes']:,}")
    for method in methods:
        for factor in factors:
            row, _ = run_method(train, test, args, method, factor)
            method_rows.append(row)
            print(f"  {method:<9} {factor:g}x  AUC {row['auc']:.4f}  bytes {row['bytes']:,} {' '.join(row['notes'])}")
    quant_rows = run_quantized(full_model, full_row, test, args)
    large_rows = run_large_lookups(args)
    if methods:
        print_method_table(method_rows, full_row["bytes"])
    print_quant_tables(quant_rows, large_rows, full_row["bytes"], args)
    result = {
        "benchmark": "compression_quant" if args.quant_only else "compression",
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "teacher_auc": test.teacher_auc,
        "cardinalities": train.cardinalities,
        "methods": method_rows,
        "quantized": quant_rows,
        "large_table_lookups": large_rows,
        "seconds": time.perf_counter() - started,
        "torch": torch.__version__,
        "threads": args.threads,
        "load_average": os.getloadavg(),
    }
    write_outputs(Path(args.out), result)
    print(f"\nwrote {args.out} and {Path(args.out).with_suffix('.png')} ({result['seconds']:.0f} s, "
          f"load average {result['load_average'][0]:.2f})")
    return result


if __name__ == "__main__":
    main()
