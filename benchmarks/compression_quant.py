"""The quantisation section of the compression benchmark: bytes, AUC change and lookups/s against float32.

The trained full (uncompressed) DLRM's tables are quantised with
:func:`recembed.compress.quantize` - int8 (float16 scales, the default), int8 with float32
scales, int4, float16 - and each copy is scored on the test split and timed on pooled
lookups of test batches. float32 is timed the two ways a user would run it, side by side in
the same rounds: recembed's own collection forward (``model.embeddings(kjt)``) and plain
``torch.nn.functional.embedding_bag`` per feature (+ ``torch.cat``). PyTorch's FBGEMM
row-wise int8/int4 operators, called per feature on tables packed by torch's own prepack,
are a rival (those operators ignore ``mode``, so MEAN is divided here, as recembed does).

A second table times two large random tables (``--lookup-rows`` x dim, uniform ids, bags of
4), where lookups are bound by memory rather than by the cache: ``--lookup-batches``
distinct batches per round (64 by default: about 63% of each table's rows, more than a
32 MB L3 holds even as int8). Session 2 used 4 batches, whose rows (4.7 MB as int8,
16.7 MB as float32) stayed in the L3 from one variant to the next - and float32's two
forwards read the very same rows, so whichever ran second found them cached.

Run it through ``benchmarks/compression.py --quant-only`` (see there).
"""

from __future__ import annotations

import random
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from _compression_ctr import evaluate

from recembed.compress import compressed_num_bytes, quantization_error, quantize

# (label, dtype, scale_dtype) of every quantised copy
VARIANTS = (("int8", "int8", "float16"), ("int8 (f32 scales)", "int8", "float32"), ("int4", "int4", "float16"),
            ("float16", "float16", "float16"))
RECEMBED_FP32, TORCH_FP32 = "float32 (recembed)", "float32 (F.embedding_bag)"


def lookup_batches(test, count: int = 6, size: int = 4096) -> list:
    batches = []
    for batch in test.to_batches(size):
        batches.append(batch.sparse)
        if len(batches) == count:
            break
    return batches


@torch.no_grad()
def lookups_per_second(fns: dict, batches, rounds: int, clock: str = "wall") -> dict[str, float]:
    """Best pooled lookups/s of each forward over ``rounds``, run in a new random order each round
    so machine load and cache state affect every variant alike. ``clock="cpu"`` times this
    process's CPU time instead of wall time: with one thread it leaves out the time other
    processes hold the core, so ratios stay steady on a loaded machine."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    ids = sum(int(b.values().numel()) for b in batches)
    for fn in fns.values():
        fn(batches[0])  # compile / warm up
    best = dict.fromkeys(fns, float("inf"))
    order = list(fns)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            start = now()
            for b in batches:
                fns[name](b)
            best[name] = min(best[name], now() - start)
    return {name: ids / seconds for name, seconds in best.items()}


def _per_feature(collection, lookup):
    """A forward calling ``lookup(cfg, ids, offsets)`` per feature (ids sliced from the KJT's values, offsets
    from 0 - the cheapest split), concatenating the (B, D) results."""
    feature_table = {f: c for c in collection.embedding_bag_configs() for f in c.feature_names}

    def forward(kjt):
        values, offsets, batch = kjt.values(), kjt.offsets(), kjt.stride()
        bounds = offsets[::batch].tolist()
        pooled = []
        for k, key in enumerate(kjt.keys()):
            start, end = bounds[k], bounds[k + 1]
            bag_offsets = offsets[k * batch : (k + 1) * batch + 1] - start
            pooled.append(lookup(feature_table[key], values[start:end], bag_offsets))
        return torch.cat(pooled, dim=1)

    return forward


def torch_float32(collection):
    """``F.embedding_bag`` per feature on the collection's own float32 weights: (forward, bytes)."""
    weights = {c.name: collection.embedding_bags[c.name].weight.detach() for c in collection.embedding_bag_configs()}

    def lookup(cfg, ids, offsets):
        return F.embedding_bag(ids, weights[cfg.name], offsets, mode=cfg.pooling.value, include_last_offset=True)

    return _per_feature(collection, lookup), sum(w.numel() * 4 for w in weights.values())


def fbgemm_rival(collection, bits: int):
    """PyTorch's FBGEMM row-wise quantised embedding bag over the same tables: (forward, bytes), or (None, 0)."""
    ops = torch.ops.quantized
    try:
        prepack = ops.embedding_bag_byte_prepack if bits == 8 else ops.embedding_bag_4bit_prepack
        op = ops.embedding_bag_byte_rowwise_offsets if bits == 8 else ops.embedding_bag_4bit_rowwise_offsets
        packed = {c.name: prepack(collection.embedding_bags[c.name].weight.detach().contiguous())
                  for c in collection.embedding_bag_configs()}
    except (AttributeError, RuntimeError):
        return None, 0
    if any(c.pooling.value == "max" for c in collection.embedding_bag_configs()):
        return None, 0

    def lookup(cfg, ids, offsets):
        pooled = op(packed[cfg.name], ids, offsets, mode=0, include_last_offset=True)
        if cfg.pooling.value == "mean":  # the operator sums whatever mode says
            pooled = pooled / (offsets[1:] - offsets[:-1]).clamp(min=1).unsqueeze(1)
        return pooled

    return _per_feature(collection, lookup), sum(p.numel() for p in packed.values())


def _forwards(collection, small: dict) -> tuple[dict, dict]:
    """Every timed forward over ``collection``'s tables and their bytes, float32 baselines first."""
    forwards, sizes = {RECEMBED_FP32: collection}, {RECEMBED_FP32: compressed_num_bytes(collection)}
    forwards[TORCH_FP32], sizes[TORCH_FP32] = torch_float32(collection)
    for label, module in small.items():
        forwards[label], sizes[label] = module, compressed_num_bytes(module)
    for bits in (8, 4):
        forward, nbytes = fbgemm_rival(collection, bits)
        if forward is None:
            print(f"note: torch.ops.quantized FBGEMM {bits}-bit embedding bag is not available; rival skipped")
            continue
        name = f"torch fbgemm int{bits} (rival)"
        forwards[name], sizes[name] = forward, nbytes
    return forwards, sizes


def _speed_rows(forwards: dict, sizes: dict, speed: dict) -> list[dict]:
    return [{"dtype": name, "bytes": sizes[name], "lookups_per_s": speed[name],
             "vs_recembed_fp32": speed[name] / speed[RECEMBED_FP32], "vs_torch_fp32": speed[name] / speed[TORCH_FP32]}
            for name in forwards]


def quantize_quietly(module, dtype: str, scale_dtype: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fused-optimizer state is dropped on purpose
        return quantize(module, dtype, scale_dtype)


def run_quantized(full_model, full_row, test, args) -> list[dict]:
    """Bytes, AUC change and lookups/s of every quantised copy of the full model, with float32 and rivals."""
    small = {label: quantize_quietly(full_model, dtype, scales) for label, dtype, scales in VARIANTS}
    forwards, sizes = _forwards(full_model.embeddings, {k: m.embeddings for k, m in small.items()})
    speed = lookups_per_second(forwards, lookup_batches(test), args.rounds, args.clock)
    rows = _speed_rows(forwards, sizes, speed)
    for row in rows:
        name = row["dtype"]
        if name in small:
            test_auc, test_loss = evaluate(small[name], test, args)
            errors = quantization_error(full_model.embeddings, small[name].embeddings)
            row.update(auc=test_auc, auc_change=test_auc - full_row["auc"], log_loss=test_loss,
                       max_abs_error=max(e["max_abs"] for e in errors.values()))
        elif name.startswith("float32"):
            row.update(auc=full_row["auc"], auc_change=0.0, log_loss=full_row["log_loss"], max_abs_error=0.0)
        else:
            row.update(auc=float("nan"), auc_change=float("nan"), log_loss=float("nan"), max_abs_error=float("nan"))
    return rows


def run_large_lookups(args) -> list[dict]:
    """Lookups/s on two random ``--lookup-rows`` x dim tables, uniform ids, bags of 4: memory-bound reads."""
    if args.lookup_rows <= 0:
        return []
    from recembed.sparse import KeyedJaggedTensor
    from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig

    torch.manual_seed(args.seed)
    features, batch, bag = ("x", "y"), 4096, 4
    collection = EmbeddingBagCollection([
        EmbeddingBagConfig(name=f"t_{f}", num_embeddings=args.lookup_rows, embedding_dim=args.dim, feature_names=[f],
                           init="normal", optimizer="rowwise_adagrad") for f in features])
    rng = np.random.default_rng(args.seed)
    batches = [KeyedJaggedTensor(list(features), torch.from_numpy(rng.integers(0, args.lookup_rows, 2 * batch * bag)),
                                 lengths=torch.full((2 * batch,), bag)) for _ in range(args.lookup_batches)]
    small = {label: quantize_quietly(collection, dtype, scales) for label, dtype, scales in VARIANTS}
    forwards, sizes = _forwards(collection, small)
    return _speed_rows(forwards, sizes, lookups_per_second(forwards, batches, args.rounds, args.clock))


def print_quant_tables(quant_rows: list[dict], large_rows: list[dict], full_bytes: int, args) -> None:
    print(f"\nQuantised inference copies of the full model ({args.threads} thread(s); speed = pooled lookups/s "
          f"by {args.clock} clock, against float32 timed both ways)")
    print(f"{'dtype':<26} {'bytes':>11} {'smaller':>7} {'AUC':>7} {'dAUC':>8} {'max|err|':>9} {'lookups/s':>11} "
          f"{'vs rec32':>8} {'vs F.eb32':>9}")
    for r in quant_rows:
        print(f"{r['dtype']:<26} {r['bytes']:>11,} {full_bytes / r['bytes']:>6.2f}x {r['auc']:>7.4f} "
              f"{r['auc_change']:>+8.4f} {r['max_abs_error']:>9.2e} {r['lookups_per_s']:>11,.0f} "
              f"{r['vs_recembed_fp32']:>7.2f}x {r['vs_torch_fp32']:>8.2f}x")
    if large_rows:
        print(f"\nPooled lookups on two {args.lookup_rows:,} x {args.dim} tables (uniform ids, bags of 4, "
              f"{args.lookup_batches} batches of 4,096 x 2 bags a round)")
        print(f"{'dtype':<26} {'bytes':>13} {'lookups/s':>11} {'vs rec32':>8} {'vs F.eb32':>9}")
        for r in large_rows:
            print(f"{r['dtype']:<26} {r['bytes']:>13,} {r['lookups_per_s']:>11,.0f} {r['vs_recembed_fp32']:>7.2f}x "
                  f"{r['vs_torch_fp32']:>8.2f}x")
