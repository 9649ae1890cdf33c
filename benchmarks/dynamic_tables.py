"""Dynamic tables: id-mapping cost beside the fused training step, and against TorchRec's MCH.

Part 1, the standard workload: 8 features (one table each) x batch 2048 x 20 ids, dim 64,
``--capacity`` rows per table (default 1,000,000, the standard table size), fused
``--optimizer`` (default adagrad). It times, per batch:

- the plain fused step (forward + backward + update) of 8 plain tables, ids Zipf(1.1)
  modulo the rows, as in ``benchmarks/embedding_training.py``;
- alternating with it batch by batch, the dynamic fused step of the same 8 tables as
  dynamic tables (LRU) on raw int64 ids of a drifting Zipf stream, once the maps are full
  (filled by the stream, then ``--warm`` more batches) so rows are evicted every batch:
  raw ids -> map -> refresh recycled rows -> fused forward + backward + update; the time
  spent in the mapping (``IdRowMap.assign``: lookup + insert + evict) is measured inside it;
- the mapping alone for other policies (LFU, TTL, min_count with exact or count-min counters).

Part 2, against TorchRec's ``ManagedCollisionCollection`` with an ``MCHManagedCollisionModule``
(LRU policy, eviction every batch, ``zch_size = --capacity``), when torchrec is importable:
one table, the stream ``--ids`` ids long (100M is the target), batches of 40,960 ids drawn
Zipf(1.1) over a vocabulary that drifts by ``--drift`` ranks per batch. recembed maps the
whole stream; MCH runs until ``--rival-seconds`` pass, and both are compared on that prefix.

    python benchmarks/dynamic_tables.py                        # full run
    python benchmarks/dynamic_tables.py --quick                # small sizes, a minute or two

Prints tables and writes benchmarks/results/dynamic_tables.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

TABLES, BATCH, BAG, DIM = 8, 2048, 20, 64
PER_TABLE = BATCH * BAG
_MASK62 = np.uint64((1 << 62) - 1)


def _fmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


class DriftingZipf:
    """Batches of raw int64 ids: Zipf(a) ranks over a vocabulary shifted by ``drift`` ranks per batch."""

    def __init__(self, seed: int, a: float = 1.1, drift: float = 0.5):
        self.rng, self.a, self.drift, self.t = np.random.default_rng(seed), a, drift, 0

    def next(self, n: int) -> np.ndarray:
        ranks = self.rng.zipf(self.a, n).astype(np.uint64) + np.uint64(int(self.t * self.drift))
        self.t += 1
        with np.errstate(over="ignore"):
            return (_fmix64(ranks) & _MASK62).astype(np.int64)  # non-negative: TorchRec's MCH needs that


def _median_ms(fn, batches) -> float:
    times = []
    for b in batches:
        start = time.perf_counter()
        fn(b)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


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


def _raw_batches(streams, count: int) -> list[torch.Tensor]:
    return [torch.from_numpy(np.concatenate([s.next(PER_TABLE) for s in streams])) for _ in range(count)]


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


def standard_workload(args) -> dict:
    from recembed.dynamic import DynamicSpec, IdRowMap

    cap, steps = args.capacity, args.steps
    out: dict = {"capacity": cap, "optimizer": args.optimizer, "steps": steps, "extra_warm_batches": args.warm}
    # Plain and dynamic steps alternate batch by batch, so both see the same machine load.
    rng = np.random.default_rng(0)
    plain_batches = [torch.from_numpy(((rng.zipf(1.1, TABLES * PER_TABLE) - 1) % cap).astype(np.int64))
                     for _ in range(steps + 2)]
    plain = _collection(cap, args.optimizer, None)
    dyn = _collection(cap, args.optimizer, DynamicSpec())
    streams = [DriftingZipf(100 + t) for t in range(TABLES)]
    tables = [dyn.embedding_bags[f"t{t}"] for t in range(TABLES)]
    out["dynamic_warm_batches"] = _fill([t.id_map for t in tables], streams, args.warm)
    dyn_batches = _raw_batches(streams, steps + 2)
    assign_timers = [_Timed(t.id_map.assign) for t in tables]
    refresh_timers = [_Timed(t._refresh_rows) for t in tables]
    for table, a, r in zip(tables, assign_timers, refresh_timers):
        table.id_map.assign, table._refresh_rows = a, r  # instance attributes shadow the methods
    rows = []
    for i, (pb, db) in enumerate(zip(plain_batches, dyn_batches)):
        start = time.perf_counter()
        plain(_kjt(pb)).values().sum().backward()
        plain_s = time.perf_counter() - start
        for timer in assign_timers + refresh_timers:
            timer.total = 0.0
        start = time.perf_counter()
        dyn(_kjt(db)).values().sum().backward()
        dyn_s = time.perf_counter() - start
        if i >= 2:  # the first two batches warm caches and compile
            rows.append((plain_s, dyn_s, sum(t.total for t in assign_timers), sum(t.total for t in refresh_timers)))
    plain_ms, dyn_ms, map_ms, refresh_ms = (1000 * statistics.median(col) for col in zip(*rows))
    out.update(plain_step_ms=plain_ms, dynamic_step_ms=dyn_ms, map_in_step_ms=map_ms, refresh_in_step_ms=refresh_ms,
               map_over_plain_per_batch=statistics.median(r[2] / r[0] for r in rows))
    print(f"plain fused step {plain_ms:.1f} ms | dynamic fused step {dyn_ms:.1f} ms, of which mapping "
          f"{map_ms:.1f} ms and refreshing recycled rows {refresh_ms:.1f} ms", flush=True)
    del plain, dyn, plain_batches, dyn_batches
    gc.collect()

    policies = {"lru": {}, "lfu": {"eviction": "lfu"}, "lru+ttl=20": {"ttl": 20},
                "lru+min_count=2 exact": {"min_count": 2}, "lru+min_count=2 count_min": {"min_count": 2, "counter": "count_min"}}
    out["map_ms"] = {}
    for name, policy in policies.items():
        if args.quick and name not in ("lru", "lfu"):
            continue
        streams = [DriftingZipf(100 + t) for t in range(TABLES)]
        maps = [IdRowMap(cap, **policy) for _ in range(TABLES)]
        # Policies with min_count fill more slowly; give them 2.5x the batches LRU needed.
        limit = int(2.5 * out["map_detail"]["lru"]["warm_batches"]) if "map_detail" in out else 10_000
        warm = _fill(maps, streams, args.warm, limit=limit)
        batches = [[s.next(PER_TABLE) for s in streams] for _ in range(steps)]
        recycled: list[int] = []

        def map_all(per_table, maps=maps, recycled=recycled):
            for m, ids in zip(maps, per_table):
                m.advance()
                recycled.append(m.assign(ids)[1].size)

        out["map_ms"][name] = _median_ms(map_all, batches)
        fill = sum(m.num_live() for m in maps) / (TABLES * cap)
        out.setdefault("map_detail", {})[name] = {"warm_batches": warm, "recycled_per_table": float(np.mean(recycled)),
                                                  "fill": fill}
        print(f"map only ({name}): {out['map_ms'][name]:.1f} ms per batch of 8 tables, "
              f"{np.mean(recycled):.0f} rows recycled per table, maps {fill:.0%} full after "
              f"{warm} warm batches", flush=True)
        del maps
        gc.collect()
    return out


# ---- part 2 ----------------------------------------------------------------------------------
def _torchrec_mch(capacity: int):
    warnings.filterwarnings("ignore")
    from torchrec.modules.embedding_configs import EmbeddingConfig
    from torchrec.modules.mc_modules import (
        LRU_EvictionPolicy,
        ManagedCollisionCollection,
        MCHManagedCollisionModule,
    )
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    module = MCHManagedCollisionModule(zch_size=capacity, device=torch.device("cpu"),
                                       eviction_policy=LRU_EvictionPolicy(), eviction_interval=1)
    mcc = ManagedCollisionCollection({"t": module}, [EmbeddingConfig(name="t", embedding_dim=DIM,
                                                                     num_embeddings=capacity, feature_names=["f"])])
    mcc.train()
    lengths = torch.full((BATCH,), BAG, dtype=torch.int64)

    def remap(ids: np.ndarray) -> None:
        mcc(KeyedJaggedTensor(keys=["f"], values=torch.from_numpy(ids), lengths=lengths))

    return remap


def _stream_run(remap, total_batches: int, seconds: float | None, drift: float) -> dict:
    stream = DriftingZipf(7, drift=drift)
    elapsed, done, cumulative = 0.0, 0, []
    while done < total_batches and (seconds is None or elapsed < seconds):
        ids = stream.next(PER_TABLE)
        start = time.perf_counter()
        remap(ids)
        elapsed += time.perf_counter() - start
        done += 1
        cumulative.append(elapsed)
    return {"batches": done, "ids": done * PER_TABLE, "seconds": elapsed, "cumulative": cumulative}


def mch_comparison(args) -> dict:
    from recembed.dynamic import IdRowMap

    batches = max(1, args.ids // PER_TABLE)
    out: dict = {"capacity": args.capacity, "requested_ids": args.ids, "batch_ids": PER_TABLE, "drift": args.drift}
    id_map = IdRowMap(args.capacity)

    def ours(ids):
        id_map.advance()
        id_map.assign(ids)

    mine = _stream_run(ours, batches, None, args.drift)
    out["recembed"] = {k: mine[k] for k in ("batches", "ids", "seconds")}
    out["recembed"]["ids_per_s"] = mine["ids"] / mine["seconds"]
    print(f"recembed IdRowMap: {mine['ids']:,} ids in {mine['seconds']:.1f} s", flush=True)
    try:
        remap = _torchrec_mch(args.capacity)
    except (ImportError, OSError, RuntimeError) as exc:  # torchrec is optional
        print(f"TorchRec MCH skipped: {type(exc).__name__}: {exc}")
        out["torchrec_mch"] = {"skipped": f"{type(exc).__name__}: {exc}"}
        return out
    theirs = _stream_run(remap, batches, args.rival_seconds, args.drift)
    n = theirs["batches"]
    out["torchrec_mch"] = {k: theirs[k] for k in ("batches", "ids", "seconds")}
    out["torchrec_mch"]["ids_per_s"] = theirs["ids"] / theirs["seconds"]
    out["recembed_same_prefix"] = {"batches": n, "ids": n * PER_TABLE, "seconds": mine["cumulative"][n - 1],
                                   "ids_per_s": n * PER_TABLE / mine["cumulative"][n - 1]}
    print(f"TorchRec MCH: {theirs['ids']:,} ids in {theirs['seconds']:.1f} s", flush=True)
    return out


# ---- report ----------------------------------------------------------------------------------
def report(results: dict) -> None:
    std = results.get("standard")
    if std:
        plain = std["plain_step_ms"]
        print(f"\n## Standard workload: {TABLES} tables x {std['capacity']:,} rows x {DIM} dims, batch {BATCH}, "
              f"{BAG} ids/bag, fused {std['optimizer']} (medians of {std['steps']} batches; plain and dynamic "
              "steps alternate)")
        print(f"| {'what (per batch, 8 tables)':<52} | {'ms':>8} | {'vs plain fused step':>19} |")
        print(f"|{'-' * 54}|{'-' * 10}|{'-' * 21}|")
        print(f"| {'plain fused step':<52} | {plain:>8.1f} | {'1.00x':>19} |")
        dyn = std["dynamic_step_ms"]
        print(f"| {'dynamic fused step (lru), all of it':<52} | {dyn:>8.1f} | {dyn / plain:>18.2f}x |")
        print(f"| {'  of which mapping (lookup+insert+evict)':<52} | {std['map_in_step_ms']:>8.1f} | "
              f"{std['map_in_step_ms'] / plain:>18.1%} |")
        print(f"| {'  of which refreshing recycled rows':<52} | {std['refresh_in_step_ms']:>8.1f} | "
              f"{std['refresh_in_step_ms'] / plain:>18.1%} |")
        for name, ms in std["map_ms"].items():
            detail = std["map_detail"][name]
            label = f"mapping only, {name} ({detail['fill']:.0%} full)"
            print(f"| {label:<52} | {ms:>8.1f} | {ms / plain:>18.1%} |")
    mch = results.get("mch")
    if mch:
        print(f"\n## Id mapping vs TorchRec MCH: capacity {mch['capacity']:,}, batches of {mch['batch_ids']:,} ids, "
              f"Zipf(1.1), drift {mch['drift']} ranks/batch")
        print(f"| {'method':<36} | {'ids':>12} | {'seconds':>8} | {'M ids/s':>8} | {'vs MCH':>7} |")
        print(f"|{'-' * 38}|{'-' * 14}|{'-' * 10}|{'-' * 10}|{'-' * 9}|")
        theirs = mch.get("torchrec_mch", {})
        base = theirs.get("ids_per_s")
        rows = [("recembed IdRowMap (whole stream)", mch["recembed"])]
        if base:
            rows += [("recembed IdRowMap (MCH's prefix)", mch["recembed_same_prefix"]), ("TorchRec MCH (LRU, every batch)", theirs)]
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
    parser.add_argument("--steps", type=int, default=10, help="timed batches in part 1")
    parser.add_argument("--warm", type=int, default=5, help="batches after the maps are full, before timing")
    parser.add_argument("--ids", type=int, default=100_000_000, help="stream length for part 2")
    parser.add_argument("--drift", type=float, default=0.5, help="vocabulary drift, ranks per batch")
    parser.add_argument("--rival-seconds", type=float, default=180.0, help="time budget for TorchRec MCH")
    parser.add_argument("--parts", default="standard,mch")
    parser.add_argument("--threads", default="2,1", help="torch and numba thread counts to run with, e.g. 2,1")
    parser.add_argument("--quick", action="store_true", help="capacity 100k, 5 steps, 5M ids, 30 s for MCH")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dynamic_tables.json"))
    args = parser.parse_args()
    if args.quick:
        args.capacity, args.steps, args.warm, args.ids, args.rival_seconds = 100_000, 5, 3, 5_000_000, 30.0
    import numba

    results: dict = {"args": {k: v for k, v in vars(args).items() if k != "out"},
                     "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}, "runs": {}}
    parts = args.parts.split(",")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        print(f"\n# {threads} thread(s)", flush=True)
        run: dict = {"torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads()}
        if "standard" in parts:
            run["standard"] = standard_workload(args)
        if "mch" in parts:
            run["mch"] = mch_comparison(args)
        results["runs"][str(threads)] = run
    results["machine"]["load_average_at_end"] = os.getloadavg()
    for threads, run in results["runs"].items():
        print(f"\n# torch and numba threads: {threads}")
        report(run)
    print(f"\nload average at start / end: {results['machine']['load_average_at_start']} / "
          f"{results['machine']['load_average_at_end']} on {os.cpu_count()} cpus")
    _write_json(Path(args.out), results)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
