"""Part 3 of benchmarks/dynamic_tables.py: recembed's IdRowMap against TorchRec's MCH on one stream."""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from _dynamic_stream import BAG, BATCH, DIM, PER_TABLE, DriftingZipf

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
    del id_map
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
