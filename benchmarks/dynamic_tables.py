"""Dynamic tables: the id-mapping cost beside the fused training step, and against TorchRec's MCH.

Part 1, the standard workload (issue #8): 8 features (one table each) x batch 2048 x 20 ids,
dim 64, ``--capacity`` rows per table (1,000,000), fused ``--optimizer`` (adagrad). Batch by
batch, alternating so both see the same machine load, it times:

- the plain fused step (forward + backward + update) of 8 plain tables, ids Zipf(1.1) modulo
  the rows, as in ``benchmarks/embedding_training.py``: the target's yardstick;
- the same 8 tables as dynamic tables (LRU) on raw int64 ids, on two streams:

  * **standard** (the target's workload): the plain tables' own batches, each rank scrambled
    to a 62-bit id, after the maps have seen ``--warm-standard`` batches of that stream. The
    vocabulary fits the capacity, so after warm-up few ids are new and nothing is evicted;
  * **drifting** (heavy churn): the drifting Zipf stream of part 3, with the maps full (filled
    by the stream, then ``--warm`` more batches), so ~28% of ids are new and rows are evicted
    every batch.

  Inside that step it times the mapping: the collection's one threaded ``map_ids_many`` call
  (raw ids -> ``IdRowMap.assign`` (lookup + insert + evict) -> row tensors), wall time, with
  the refresh of recycled rows (fresh values, zeroed optimizer state) that runs on the same
  threads counted in.

Target: mapping <= 25% of the plain fused step on the standard stream.

Part 2, mapping only, 8 maps, for other policies (LFU, TTL, min_count with exact or count-min
counters), for a second stream (Zipf(1.2): about 7% new ids per batch instead of 28%), and
for the 8 tables mapped on ``--map-threads`` threads at once ("lru threads": ``assign_many``;
what the collections call for their dynamic features). It also measures what the stream is: the share of ids with no row yet.

Part 3, against TorchRec's ``ManagedCollisionCollection`` with an ``MCHManagedCollisionModule``
(LRU, eviction every batch, ``zch_size = --capacity``) when torchrec is importable: one table,
a stream ``--ids`` ids long (100M), batches of 40,960 ids. recembed maps the whole stream;
MCH runs until ``--rival-seconds`` pass, and both are compared on that prefix.

    python benchmarks/dynamic_tables.py            # full run (about 9 GB of memory, several minutes)
    python benchmarks/dynamic_tables.py --quick    # capacity 100k, 5M ids: a minute or two

Prints tables and writes benchmarks/results/dynamic_tables.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling _dynamic_* modules
from _dynamic_mch import mch_comparison  # noqa: E402
from _dynamic_stream import BAG, BATCH, DIM, PER_TABLE, TABLES, DriftingZipf, ModuloZipf, scramble  # noqa: E402

TARGET_SHARE = 0.25
class _Timed:
    """Wraps a callable, adding its wall time to ``total``."""

    def __init__(self, fn):
        self.fn, self.total = fn, 0.0

    def __call__(self, *a, **k):
        start = time.perf_counter()
        try:
            return self.fn(*a, **k)
        finally:
            self.total += time.perf_counter() - start


def _fill(maps, streams, extra: int, limit: int = 10_000) -> int:
    """Map stream batches until every map is full (min_count may keep it from filling: stop at
    ``limit``), then ``extra`` more; returns the batches used."""
    used = 0
    while used < limit and any(m.num_live() < m.capacity for m in maps):
        for m, s in zip(maps, streams):
            m.advance()
            m.assign(s.next(PER_TABLE))
        used += 1
    for _ in range(extra):
        for m, s in zip(maps, streams):
            m.advance()
            m.assign(s.next(PER_TABLE))
    return used + extra


# ---- part 1 ----------------------------------------------------------------------------------
def _collection(capacity: int, optimizer: str, spec):
    import recembed as rec

    cfgs = [rec.EmbeddingBagConfig(name=f"t{t}", num_embeddings=capacity, embedding_dim=DIM, feature_names=[f"f{t}"],
                                   optimizer=optimizer, lr=0.01, dynamic=spec) for t in range(TABLES)]
    return rec.EmbeddingBagCollection(cfgs)


def _kjt(ids: torch.Tensor):
    import recembed as rec

    offsets = torch.arange(0, TABLES * PER_TABLE + 1, BAG, dtype=torch.int64)
    return rec.KeyedJaggedTensor(keys=[f"f{t}" for t in range(TABLES)], values=ids, offsets=offsets, stride=BATCH)


def standard_workload(args) -> dict:
    """Part 1 on both id streams: ``{"standard": ..., "drifting": ...}`` (see the module doc)."""
    return {name: _step_comparison(args, name) for name in ("standard", "drifting")}


def _step_comparison(args, stream: str) -> dict:
    from recembed.dynamic import DynamicSpec

    cap, steps = args.capacity, args.step_batches
    out: dict = {"capacity": cap, "optimizer": args.optimizer, "steps": steps, "stream": stream}
    rng = np.random.default_rng(0)
    plain_ranks = [(rng.zipf(1.1, TABLES * PER_TABLE) - 1) % cap for _ in range(steps + 2)]
    plain = _collection(cap, args.optimizer, None)
    dyn = _collection(cap, args.optimizer, DynamicSpec())
    tables = [dyn.embedding_bags[f"t{t}"] for t in range(TABLES)]
    if stream == "standard":
        # The plain tables' own batches, as raw ids; the maps first see --warm-standard batches of the same stream.
        streams = [ModuloZipf(100 + t, cap) for t in range(TABLES)]
        out["fill_batches"] = _fill([t.id_map for t in tables], streams, args.warm_standard, limit=0)
        dyn_batches = [torch.from_numpy(scramble(r)) for r in plain_ranks]
    else:
        streams = [DriftingZipf(100 + t) for t in range(TABLES)]
        out["fill_batches"] = _fill([t.id_map for t in tables], streams, args.warm)
        dyn_batches = [torch.from_numpy(np.concatenate([s.next(PER_TABLE) for s in streams])) for _ in range(steps + 2)]
    plain_batches = [torch.from_numpy(r.astype(np.int64)) for r in plain_ranks]
    out["new_id_share"] = float(np.mean([(t.id_map.find(b[k * PER_TABLE:(k + 1) * PER_TABLE].numpy())
                                          == t.id_map.default_row).mean()
                                         for b in dyn_batches[2:] for k, t in enumerate(tables)]))
    import recembed.dynamic.parallel as parallel

    # The collection maps all its dynamic features in one threaded map_ids_many call (looked up
    # on the module at call time, so this wrapper sees it); assign and refresh run inside it.
    map_many = _Timed(parallel.map_ids_many)
    parallel.map_ids_many = map_many
    timers = {"map_ids_many": [map_many], "assign": [_Timed(t.id_map.assign) for t in tables],
              "refresh": [_Timed(t._refresh_rows) for t in tables]}
    for t, a, r in zip(tables, timers["assign"], timers["refresh"]):
        t.id_map.assign, t._refresh_rows = a, r  # instance attributes shadow the methods
    rows = []
    try:
        for i, (pb, db) in enumerate(zip(plain_batches, dyn_batches)):
            start = time.perf_counter()
            plain(_kjt(pb)).values().sum().backward()
            plain_s = time.perf_counter() - start
            for timer in sum(timers.values(), []):
                timer.total = 0.0
            start = time.perf_counter()
            dyn(_kjt(db)).values().sum().backward()
            dyn_s = time.perf_counter() - start
            if i >= 2:  # the first two batches warm caches and compile
                parts = {k: sum(t.total for t in v) for k, v in timers.items()}
                # mapping = the whole threaded call's wall time, refresh of recycled rows included
                # (stricter than the target's lookup + insert + evict); assign and refresh are sums
                # over the tables of per-thread times, so they overlap on 2 threads.
                rows.append({"plain": plain_s, "dynamic": dyn_s, "mapping": parts["map_ids_many"],
                             "assign": parts["assign"], "refresh": parts["refresh"]})
    finally:
        parallel.map_ids_many = map_many.fn
    med = {k: 1000 * statistics.median(r[k] for r in rows) for k in rows[0]}
    out["ms"] = med
    # Means carry the occasional costly batch (an LRU victim-pool refill, or a slow moment of the machine).
    out["mean_ms"] = {k: 1000 * statistics.mean(r[k] for r in rows) for k in rows[0]}
    out["mapping_share_per_batch"] = statistics.median(r["mapping"] / r["plain"] for r in rows)
    out["per_batch_ms"] = [{k: 1000 * v for k, v in r.items()} for r in rows]
    print(f"[{stream} stream, {out['new_id_share']:.1%} of ids new] plain fused step {med['plain']:.1f} ms | "
          f"dynamic step {med['dynamic']:.1f} ms, of which mapping {med['mapping']:.1f} ms wall for map_ids_many "
          f"with the refresh on its threads ({out['mapping_share_per_batch']:.0%} of the plain step); summed over "
          f"tables: assign {med['assign']:.1f} ms, refresh {med['refresh']:.1f} ms", flush=True)
    del plain, dyn, tables
    gc.collect()
    return out


# ---- part 2 ----------------------------------------------------------------------------------
MAP_RUNS = {  # name -> (stream Zipf exponent, IdRowMap options, threads)
    "zipf1.1 lru": (1.1, {}, 1),
    "zipf1.1 lru threads": (1.1, {}, None),
    "zipf1.1 lfu": (1.1, {"eviction": "lfu"}, 1),
    "zipf1.1 lru+ttl=20": (1.1, {"ttl": 20}, 1),
    "zipf1.1 lru+min_count=2 exact": (1.1, {"min_count": 2}, 1),
    "zipf1.1 lru+min_count=2 count_min": (1.1, {"min_count": 2, "counter": "count_min"}, 1),
    "zipf1.2 lru": (1.2, {}, 1),
}
QUICK_RUNS = ("zipf1.1 lru", "zipf1.1 lru threads", "zipf1.1 lfu", "zipf1.2 lru")


def map_only(args) -> dict:
    from recembed.dynamic import IdRowMap
    from recembed.dynamic.parallel import assign_many

    out: dict = {}
    fill_limit = 10_000
    for name, (a, policy, threads) in MAP_RUNS.items():
        if name not in (args.map_runs.split(",") if args.map_runs else QUICK_RUNS if args.quick else MAP_RUNS):
            continue
        threads = threads or args.map_threads
        streams = [DriftingZipf(100 + t, a=a) for t in range(TABLES)]
        maps = [IdRowMap(args.capacity, **policy) for _ in range(TABLES)]
        # min_count and ttl may keep a map from ever filling: such runs get 2.5x the batches plain LRU needed.
        fill = _fill(maps, streams, args.warm, limit=10_000 if not policy else fill_limit)
        if not policy and a == 1.1:
            fill_limit = int(2.5 * fill)
        batches = [[s.next(PER_TABLE) for s in streams] for _ in range(args.steps + 2)]
        walls, cpus, new_share, new_distinct, recycled = [], [], [], [], []
        for i, per_table in enumerate(batches):
            for m, ids in zip(maps, per_table):  # what the stream is (not timed): ids without a live row
                missing = m.find(ids) == m.default_row
                new_share.append(float(missing.mean()))
                new_distinct.append(len(set(ids[missing].tolist())))
                m.advance()
            wall, cpu = time.perf_counter(), time.process_time()
            results = assign_many(maps, per_table, threads=threads)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if i >= 2:
                walls.append(wall)
                cpus.append(cpu)
                recycled.append(float(np.mean([r[1].size for r in results])))
        ms = 1000 * statistics.median(walls)
        out[name] = {"ms": ms, "cpu_ms": 1000 * statistics.median(cpus), "threads": threads, "fill_batches": fill,
                     "ids_per_s": TABLES * PER_TABLE / (ms / 1000), "new_id_share": float(np.mean(new_share)),
                     "new_distinct_per_table": float(np.mean(new_distinct)), "recycled_per_table": float(np.mean(recycled)),
                     "live_share": sum(m.num_live() for m in maps) / (TABLES * args.capacity)}
        print(f"map only ({name}): {ms:.1f} ms per batch of 8 tables ({out[name]['ids_per_s'] / 1e6:.1f} M ids/s), "
              f"{out[name]['new_id_share']:.1%} of ids new", flush=True)
        del maps
        gc.collect()
    return out


# ---- report ----------------------------------------------------------------------------------
def report(results: dict) -> None:
    part1, maps, mch = results.get("standard") or {}, results.get("map_only"), results.get("mch")
    std = part1.get("standard")
    plain = std["ms"]["plain"] if std else None
    for name, r in part1.items():
        ms, base = r["ms"], r["ms"]["plain"]
        share = ms["mapping"] / base
        label = ("the standard workload's ids (Zipf(1.1) modulo the rows) as raw int64 ids: the target"
                 if name == "standard" else "the drifting stream (heavy churn: rows evicted every batch)")
        print(f"\n## Part 1, {label}")
        print(f"{TABLES} tables x {r['capacity']:,} rows x {DIM}, batch {BATCH}, {BAG} ids/bag, fused {r['optimizer']}, "
              f"LRU, {r['new_id_share']:.1%} of ids new, medians of {r['steps']} alternating batches")
        print(f"| {'per batch of 8 tables':<58} | {'ms':>7} | {'of plain fused step':>19} |")
        print(f"|{'-' * 60}|{'-' * 9}|{'-' * 21}|")
        lines = [("plain fused step (fwd + bwd + update)", ms["plain"]),
                 ("dynamic step, all of it", ms["dynamic"]),
                 ("  mapping: map_ids_many, refresh included (target <= 25%)", ms["mapping"]),
                 ("    of which IdRowMap.assign (lookup + insert + evict)", ms["assign"]),
                 ("  refreshing recycled rows (fresh values, zero state)", ms["refresh"])]
        for text, value in lines:
            print(f"| {text:<58} | {value:>7.1f} | {value / base:>18.1%} |")
        mean = r["mean_ms"]
        mean_share = mean["mapping"] / mean["plain"]
        verdict = "met" if max(share, mean_share) <= TARGET_SHARE else "NOT met"
        print(f"means: plain {mean['plain']:.1f} ms, dynamic {mean['dynamic']:.1f} ms, mapping {mean['mapping']:.1f} ms "
              f"({mean_share:.1%}); max batch: mapping {max(b['mapping'] for b in r['per_batch_ms']):.1f} ms")
        print(f"mapping / plain fused step = {share:.1%} of medians, {mean_share:.1%} of means (median of per-batch "
              f"ratios {r['mapping_share_per_batch']:.1%}); target <= {TARGET_SHARE:.0%}: {verdict}")
    if maps:
        print(f"\n## Mapping only, {TABLES} maps of {results['args']['capacity']:,} rows, batches of {PER_TABLE:,} ids "
              "per map")
        print(f"| {'stream, policy':<36} | {'thr':>3} | {'new ids':>7} | {'new distinct/map':>16} | {'ms':>6} | "
              f"{'M ids/s':>7} | {'of plain step':>13} |")
        print(f"|{'-' * 38}|{'-' * 5}|{'-' * 9}|{'-' * 18}|{'-' * 8}|{'-' * 9}|{'-' * 15}|")
        for name, r in maps.items():
            of_plain = f"{r['ms'] / plain:.1%}" if plain else "-"
            print(f"| {name:<36} | {r['threads']:>3} | {r['new_id_share']:>7.1%} | {r['new_distinct_per_table']:>16,.0f} | "
                  f"{r['ms']:>6.1f} | {r['ids_per_s'] / 1e6:>7.1f} | {of_plain:>13} |")
    if mch:
        print(f"\n## Id mapping vs TorchRec MCH: capacity {mch['capacity']:,}, batches of {mch['batch_ids']:,} ids, "
              f"Zipf(1.1), drift {mch['drift']} ranks/batch")
        print(f"| {'method':<36} | {'ids':>12} | {'seconds':>8} | {'M ids/s':>8} | {'vs MCH':>7} |")
        print(f"|{'-' * 38}|{'-' * 14}|{'-' * 10}|{'-' * 10}|{'-' * 9}|")
        theirs = mch.get("torchrec_mch", {})
        base = theirs.get("ids_per_s")
        rows = [("recembed IdRowMap (whole stream)", mch["recembed"])]
        if base:
            rows += [("recembed IdRowMap (MCH's prefix)", mch["recembed_same_prefix"]),
                     ("TorchRec MCH (LRU, every batch)", theirs)]
        for label, r in rows:
            ratio = f"{r['ids_per_s'] / base:.1f}x" if base else "-"
            print(f"| {label:<36} | {r['ids']:>12,} | {r['seconds']:>8.1f} | {r['ids_per_s'] / 1e6:>8.2f} | {ratio:>7} |")
        if not base:
            print(f"TorchRec: {theirs.get('skipped')}")


def _write_json(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, default=1_000_000, help="rows per table (standard: 1,000,000)")
    parser.add_argument("--optimizer", default="adagrad")
    parser.add_argument("--steps", type=int, default=10, help="timed batches in part 2")
    parser.add_argument("--step-batches", type=int, default=60,
                        help="timed batches per stream in part 1 (enough to include LRU victim-pool refills)")
    parser.add_argument("--warm", type=int, default=5, help="drifting stream: batches after the maps are full")
    parser.add_argument("--warm-standard", type=int, default=300,
                        help="standard stream: batches the maps see before timing (a run's first minutes)")
    parser.add_argument("--ids", type=int, default=100_000_000, help="stream length for part 3")
    parser.add_argument("--drift", type=float, default=0.5, help="vocabulary drift, ranks per batch")
    parser.add_argument("--rival-seconds", type=float, default=180.0, help="time budget for TorchRec MCH")
    parser.add_argument("--parts", default="standard,map_only,mch")
    parser.add_argument("--threads", type=int, default=2, help="torch and numba threads")
    parser.add_argument("--map-threads", type=int, default=2, help="threads for the 'zipf1.1 lru threads' run")
    parser.add_argument("--map-runs", default="", help="comma-separated part 2 runs (default: all; --quick: 4)")
    parser.add_argument("--quick", action="store_true", help="capacity 100k, 5 steps, 5M ids, 30 s for MCH")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dynamic_tables.json"))
    args = parser.parse_args()
    if args.quick:
        args.capacity, args.steps, args.warm, args.ids, args.rival_seconds = 100_000, 5, 3, 5_000_000, 30.0
        args.step_batches = 10
        args.warm_standard = 30
    import numba

    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    results: dict = {"args": {k: v for k, v in vars(args).items() if k != "out"},
                     "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}}
    parts = args.parts.split(",")
    if "standard" in parts:
        results["standard"] = standard_workload(args)
        gc.collect()
    if "map_only" in parts:
        results["map_only"] = map_only(args)
    if "mch" in parts:
        results["mch"] = mch_comparison(args)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    report(results)
    print(f"\nload average at start / end: {results['machine']['load_average_at_start']} / "
          f"{results['machine']['load_average_at_end']} on {os.cpu_count()} cpus; torch threads {args.threads}")
    _write_json(Path(args.out), results)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
