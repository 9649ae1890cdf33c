"""Compressed and quantised embedding tables on the synthetic CTR task with DLRM.

For each compression method (hashing trick, Bloom, QR mult, QR add, mixed-dimension;
ROBE with ``--methods``) at each target ratio (1x, 4x, 10x, 100x), a DLRM is trained on
:func:`recembed.data.make_ctr_dataset` and scored on a held-out split: embedding bytes,
test AUC, log loss and training throughput. Then the plain (uncompressed, "full") model is
quantised to int8, int4 and float16 with :func:`recembed.compress.quantize`: bytes, AUC
change, and pooled lookups per second against the float32 collection's forward - with
PyTorch's own FBGEMM row-wise int8/int4 embedding-bag ops as a rival when present.

Only tables with at least ``--min-rows`` ids are compressed (small tables cost little and
cannot shrink much); bytes are those of *all* tables, so "achieved" is the real ratio. A
method that cannot reach a ratio on some table (QR needs about 2 sqrt(n) rows, mixed-dim
at least one row of width 1 per id) uses its smallest size there, and the row says so.

Usage:
    python benchmarks/compression.py                 # default sizes, a few minutes on 2 cores
    python benchmarks/compression.py --quick         # a small smoke run
Writes benchmarks/results/compression.json and compression.png (AUC against bytes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recembed.compress import (
    BloomSpec,
    HashedSpec,
    MixedDimSpec,
    QRSpec,
    ROBESpec,
    compressed_num_bytes,
    qr_collisions_for_ratio,
    quantization_error,
    quantize,
)
from recembed.data import make_ctr_dataset
from recembed.errors import ConfigError
from recembed.models import DLRM, dense_parameters
from recembed.tables import EmbeddingBagConfig
from recembed.train.metrics import auc as roc_auc
from recembed.train.metrics import log_loss

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
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument("--out", default=str(RESULTS / "compression.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.samples, args.max_cardinality, args.epochs, args.sparse = 30_000, 20_000, 1, 6
        args.lookup_rows = min(args.lookup_rows, 100_000)
    return args


# ---- data and model ---------------------------------------------------------------------
def make_data(args):
    cards = [int(round(c)) for c in np.geomspace(10, args.max_cardinality, args.sparse)]
    data = make_ctr_dataset(args.samples, num_sparse=args.sparse, num_dense=args.dense, cardinalities=cards,
                            seed=args.seed)
    train, test = data.split(0.2, seed=args.seed)
    return train, test


def id_counts(train, name: str, cardinality: int) -> np.ndarray:
    return np.bincount(train.sparse[name][1], minlength=cardinality).astype(np.float64)


def spec_for(method: str, factor: float, n: int, dim: int, counts: np.ndarray, args) -> tuple[object, str]:
    """The compression spec of one table, and a note when the target was out of reach."""
    ratio = 1.0 / factor
    if method == "hash":
        return HashedSpec(compression_ratio=ratio), ""
    if method == "bloom":
        return BloomSpec(compression_ratio=ratio, num_hashes=args.bloom_hashes), ""
    if method == "robe":
        return ROBESpec(compression_ratio=ratio, chunk_size=8), ""
    if method in ("qr-mult", "qr-add"):
        op = method.split("-")[1]
        try:
            return QRSpec(num_collisions=qr_collisions_for_ratio(n, ratio), operation=op), ""
        except ConfigError:
            return QRSpec(num_collisions=max(1, math.isqrt(n)), operation=op), "qr floor"
    if method == "mixed-dim":
        try:
            spec = MixedDimSpec(compression_ratio=ratio, counts=counts, num_blocks=4)
            spec.build(EmbeddingBagConfig(name="probe", num_embeddings=n, embedding_dim=dim))  # reachable?
            return spec, ""
        except ConfigError:
            return MixedDimSpec(alpha=64.0, counts=counts, num_blocks=4), "mixed floor"
    raise ValueError(method)


def table_configs(train, args, method: str | None, factor: float) -> tuple[list[EmbeddingBagConfig], list[str]]:
    configs, notes = [], set()
    for name, card in train.cardinalities.items():
        compression = None
        if method is not None and card >= args.min_rows:
            compression, note = spec_for(method, factor, card, args.dim, id_counts(train, name, card), args)
            if note:
                notes.add(note)
        configs.append(EmbeddingBagConfig(name=f"t_{name}", num_embeddings=card, embedding_dim=args.dim,
                                          feature_names=[name], pooling="mean", compression=compression))
    return configs, sorted(notes)


def make_model(train, configs, args) -> DLRM:
    torch.manual_seed(args.seed)
    return DLRM(args.dense, configs, bottom_mlp=[64, args.dim], top_mlp=[128, 64, 1], embedding_lr=0.05)


def train_model(model, train, args) -> float:
    """Trains in place; returns examples per second."""
    params = dense_parameters(model)
    opt = torch.optim.Adam(params, lr=2e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    seen, start = 0, time.perf_counter()
    model.train()
    for epoch in range(args.epochs):
        for batch in train.to_batches(args.batch_size, shuffle=True, seed=args.seed + epoch):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(batch.dense, batch.sparse), batch.labels)
            loss.backward()
            opt.step()
            seen += len(batch.labels)
    return seen / (time.perf_counter() - start)


@torch.no_grad()
def evaluate(model, test, args) -> tuple[float, float]:
    model.eval()
    scores, labels = [], []
    for batch in test.to_batches(4096):
        scores.append(torch.sigmoid(model(batch.dense, batch.sparse)))
        labels.append(batch.labels)
    s, y = torch.cat(scores), torch.cat(labels)
    return roc_auc(s, y), log_loss(s, y)


# ---- lookups per second -----------------------------------------------------------------
def lookup_batches(test, count: int = 6, size: int = 4096):
    batches = []
    for batch in test.to_batches(size):
        batches.append(batch.sparse)
        if len(batches) == count:
            break
    return batches


@torch.no_grad()
def lookups_per_second(fns: dict, batches, rounds: int = 9) -> dict[str, float]:
    """Best pooled lookups/s of each forward over ``rounds``, run in a new random order each round
    so machine load and cache state affect every variant alike."""
    ids = sum(int(b.values().numel()) for b in batches)
    for fn in fns.values():
        fn(batches[0])  # compile / warm up
    best = dict.fromkeys(fns, float("inf"))
    order = list(fns)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            for b in batches:
                fns[name](b)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: ids / seconds for name, seconds in best.items()}


def fbgemm_rival(collection, bits: int):
    """PyTorch's FBGEMM row-wise quantised embedding bag over the same tables, or None."""
    ops = getattr(torch.ops, "quantized", None)
    try:
        prepack = ops.embedding_bag_byte_prepack if bits == 8 else ops.embedding_bag_4bit_prepack
        lookup = ops.embedding_bag_byte_rowwise_offsets if bits == 8 else ops.embedding_bag_4bit_rowwise_offsets
        packed = {c.name: prepack(collection.embedding_bags[c.name].weight.detach().contiguous())
                  for c in collection.embedding_bag_configs()}
    except (AttributeError, RuntimeError):
        return None, 0
    feature_table = {f: c for c in collection.embedding_bag_configs() for f in c.feature_names}
    modes = {"sum": 0, "mean": 1, "max": 2}

    def forward(kjt):
        outs = []
        for key in kjt.keys():
            jt, cfg = kjt[key], feature_table[key]
            outs.append(lookup(packed[cfg.name], jt.values(), jt.offsets(), mode=modes[cfg.pooling.value],
                               per_sample_weights=None, include_last_offset=True))
        return torch.cat(outs, dim=1)

    return forward, sum(p.numel() * p.element_size() for p in packed.values())


# ---- runs -------------------------------------------------------------------------------
def warm_up(train, args) -> None:
    """Compile (or load from numba's cache) every kernel before anything is timed."""
    subset, _ = train.split(0.5, seed=1)
    for method in (None, "qr-mult"):
        configs, _ = table_configs(train, args, method, 4.0)
        model = make_model(train, configs, args)
        batches = iter(subset.to_batches(args.batch_size))
        for _, batch in zip(range(3), batches):
            model(batch.dense, batch.sparse).sum().backward()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for dtype in ("int8", "int4", "float16"):
                quantize(model.embeddings, dtype)(batch.sparse)


def run_method(train, test, args, method: str | None, factor: float) -> dict:
    configs, notes = table_configs(train, args, method, factor)
    model = make_model(train, configs, args)
    throughput = train_model(model, train, args)
    test_auc, test_loss = evaluate(model, test, args)
    row = {"method": method or "full", "target": factor, "bytes": compressed_num_bytes(model),
           "auc": test_auc, "log_loss": test_loss, "train_examples_per_s": throughput, "notes": notes}
    return row, model


def run_quantized(full_model, full_row, test, args) -> list[dict]:
    batches = lookup_batches(test)
    small, forwards, sizes = {}, {"float32": full_model.embeddings}, {"float32": full_row["bytes"]}
    for dtype in ("int8", "int4", "float16"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the fused-optimizer state is dropped on purpose
            small[dtype] = quantize(full_model, dtype)
        forwards[dtype], sizes[dtype] = small[dtype].embeddings, compressed_num_bytes(small[dtype])
    for bits in (8, 4):
        forward, nbytes = fbgemm_rival(full_model.embeddings, bits)
        if forward is None:
            print(f"note: torch.ops.quantized FBGEMM {bits}-bit embedding bag is not available; rival skipped")
            continue
        forwards[f"torch fbgemm int{bits} (rival)"], sizes[f"torch fbgemm int{bits} (rival)"] = forward, nbytes
    speed = lookups_per_second(forwards, batches)
    rows = []
    for name in forwards:
        row = {"dtype": name, "bytes": sizes[name], "lookups_per_s": speed[name],
               "speed_vs_float32": speed[name] / speed["float32"]}
        if name == "float32":
            row.update(auc=full_row["auc"], auc_change=0.0, log_loss=full_row["log_loss"], max_abs_error=0.0)
        elif name in small:
            test_auc, test_loss = evaluate(small[name], test, args)
            errors = quantization_error(full_model.embeddings, small[name].embeddings)
            row.update(auc=test_auc, auc_change=test_auc - full_row["auc"], log_loss=test_loss,
                       max_abs_error=max(e["max_abs"] for e in errors.values()))
        else:
            row.update(auc=float("nan"), auc_change=float("nan"), log_loss=float("nan"), max_abs_error=float("nan"))
        rows.append(row)
    return rows


def run_large_lookups(args) -> list[dict]:
    """Lookups/s on two random ``--lookup-rows`` x dim tables, uniform ids, bags of 4: memory-bound reads."""
    if args.lookup_rows <= 0:
        return []
    from recembed.sparse import KeyedJaggedTensor
    from recembed.tables import EmbeddingBagCollection

    torch.manual_seed(args.seed)
    features, batch, bag = ("x", "y"), 4096, 4
    collection = EmbeddingBagCollection([
        EmbeddingBagConfig(name=f"t_{f}", num_embeddings=args.lookup_rows, embedding_dim=args.dim, feature_names=[f],
                           init="normal", optimizer="rowwise_adagrad") for f in features])
    rng = np.random.default_rng(args.seed)
    batches = [KeyedJaggedTensor(list(features), torch.from_numpy(rng.integers(0, args.lookup_rows, 2 * batch * bag)),
                                 lengths=torch.full((2 * batch,), bag)) for _ in range(4)]
    forwards, sizes = {"float32": collection}, {"float32": compressed_num_bytes(collection)}
    for dtype in ("int8", "int4", "float16"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            forwards[dtype] = quantize(collection, dtype)
        sizes[dtype] = compressed_num_bytes(forwards[dtype])
    for bits in (8, 4):
        forward, nbytes = fbgemm_rival(collection, bits)
        if forward is not None:
            forwards[f"torch fbgemm int{bits} (rival)"], sizes[f"torch fbgemm int{bits} (rival)"] = forward, nbytes
    speed = lookups_per_second(forwards, batches)
    return [{"dtype": name, "bytes": sizes[name], "lookups_per_s": speed[name],
             "speed_vs_float32": speed[name] / speed["float32"]} for name in forwards]


def print_tables(method_rows: list[dict], quant_rows: list[dict], large_rows: list[dict], full_bytes: int,
                 args) -> None:
    print("\nCompressed tables (DLRM, synthetic CTR; bytes = all embedding tables)")
    print(f"{'method':<10} {'target':>6} {'bytes':>11} {'achieved':>8} {'AUC':>7} {'dAUC':>8} {'logloss':>8} "
          f"{'train ex/s':>10}  notes")
    full_auc = next(r["auc"] for r in method_rows if r["method"] == "full")
    for r in method_rows:
        print(f"{r['method']:<10} {r['target']:>5g}x {r['bytes']:>11,} {full_bytes / r['bytes']:>7.1f}x "
              f"{r['auc']:>7.4f} {r['auc'] - full_auc:>+8.4f} {r['log_loss']:>8.4f} {r['train_examples_per_s']:>10,.0f}"
              f"  {', '.join(r['notes'])}")
    print("\nQuantised inference copies of the full model")
    print(f"{'dtype':<26} {'bytes':>11} {'smaller':>7} {'AUC':>7} {'dAUC':>8} {'max|err|':>9} {'lookups/s':>11} "
          f"{'vs fp32':>7}")
    for r in quant_rows:
        print(f"{r['dtype']:<26} {r['bytes']:>11,} {full_bytes / r['bytes']:>6.2f}x {r['auc']:>7.4f} "
              f"{r['auc_change']:>+8.4f} {r['max_abs_error']:>9.2e} {r['lookups_per_s']:>11,.0f} "
              f"{r['speed_vs_float32']:>6.2f}x")
    if large_rows:
        print(f"\nPooled lookups on two {args.lookup_rows:,} x {args.dim} tables (uniform ids, bags of 4, "
              f"{args.threads} thread(s))")
        print(f"{'dtype':<26} {'bytes':>13} {'lookups/s':>11} {'vs fp32':>7}")
        for r in large_rows:
            print(f"{r['dtype']:<26} {r['bytes']:>13,} {r['lookups_per_s']:>11,.0f} {r['speed_vs_float32']:>6.2f}x")


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
    quant = [r for r in result["quantized"] if not r["dtype"].startswith("torch") and r["dtype"] != "float32"]
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
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {METHODS}")
    factors = [float(x) for x in args.ratios.split(",")]
    started = time.perf_counter()
    train, test = make_data(args)
    print(f"data: {len(train):,} train / {len(test):,} test examples, tables {list(train.cardinalities.values())}, "
          f"dim {args.dim}, teacher AUC on test {test.teacher_auc:.4f}")
    warm_up(train, args)
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
    print_tables(method_rows, quant_rows, large_rows, full_row["bytes"], args)
    result = {
        "benchmark": "compression",
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "teacher_auc": test.teacher_auc,
        "cardinalities": train.cardinalities,
        "methods": method_rows,
        "quantized": quant_rows,
        "large_table_lookups": large_rows,
        "seconds": time.perf_counter() - started,
        "torch": torch.__version__,
        "threads": args.threads,
    }
    write_outputs(Path(args.out), result)
    print(f"\nwrote {args.out} and {Path(args.out).with_suffix('.png')} ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
