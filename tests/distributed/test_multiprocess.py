"""2 and 4 gloo ranks on loopback: sharded training equals single-process training, checkpoints
reshard 2 -> 4 -> 1, and a failing rank stops the others with a clear error.

Each rank trains on its slice of every global batch; the single-process reference trains on
the whole global batches with the matching loss (a sum, or a mean over the global batch).
"""

from __future__ import annotations

import shutil
import time

import distributed_workers as w
import pytest
import torch

from recembed.distributed import launch, load_unsharded, read_manifest
from recembed.errors import CheckpointError, DistributedError

RUNS = [("a", "sum"), ("b", "mean")]
ATOL = 2e-5


def _launch(fn, nproc, *args, timeout_s=60.0):
    # forkserver: torch is imported once for all the launches of this module.
    return launch(fn, nproc, *args, timeout_s=timeout_s, start_method="forkserver", threads_per_rank=1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    return {"w2": str(root / "w2"), "w4": str(root / "w4")}


@pytest.fixture(scope="module")
def references():
    """Single-process runs: per loss reduction, and "resumed": one step more (the 4-rank resume)."""
    return {"sum": w.reference("sum"), "mean": w.reference("mean"), "resumed": w.reference("sum", w.STEPS + 1)}


@pytest.fixture(scope="module")
def two_ranks(folders):
    return _launch(w.sharded_training, 2, RUNS, folders["w2"])


@pytest.fixture(scope="module")
def four_ranks(folders, two_ranks):
    out = _launch(w.four_rank_body, 4, RUNS, folders["w2"], folders["w4"])
    return [o["runs"] for o in out], [o["resume"] for o in out]


def _assert_state_close(got: dict, want: dict, what: str) -> None:
    assert set(got) == set(want), what
    for key, value in want.items():
        if key.endswith(".step"):
            assert int(got[key]) == int(value), f"{what}: {key}"
        else:
            torch.testing.assert_close(got[key], value, atol=ATOL, rtol=1e-5, msg=f"{what}: {key}")


def _check_runs(results: list[dict], references: dict, world: int) -> None:
    start = w.make_model().state_dict()
    for run in RUNS:
        ref = references[run[1]]
        for step in range(w.STEPS):
            got = torch.cat([results[r][run]["preds"][step] for r in range(world)])
            torch.testing.assert_close(got, ref["preds"][step], atol=ATOL, rtol=1e-5,
                                       msg=f"{world} ranks, plan {run}: predictions of step {step}")
        state = results[0][run]["state"]
        _assert_state_close(state, ref["state"], f"{world} ranks, plan {run}")
        weights = [k for k in state if k.endswith(".weight") and not k.startswith("head.")]
        assert len(weights) == len(w.TABLES)
        for key in weights:
            assert not torch.allclose(state[key], start[key]), f"{key} did not train"


def test_two_ranks_match_single_process(two_ranks, references):
    _check_runs(two_ranks, references, 2)
    # launch(threads_per_rank=1) holds even after numba starts its OpenMP threads.
    assert [r["torch_threads"] for r in two_ranks] == [1, 1]


def test_four_ranks_match_single_process(four_ranks, references):
    _check_runs(four_ranks[0], references, 4)


def test_plans_cover_every_sharding_type():
    for world in (2, 4):
        for table in w.TABLES:
            kinds = {w.plans(world)[p][table].type.value for p in ("a", "b")}
            assert len(kinds) == 2, table
        used = {spec.type.value for p in ("a", "b") for spec in w.plans(world)[p].values()}
        assert used == {"table_wise", "row_wise", "column_wise", "data_parallel"}


def test_reshard_two_to_four_to_one(two_ranks, four_ranks, references, folders):
    saved_by_two = two_ranks[0][("a", "sum")]["state"]
    resume = four_ranks[1]
    loaded = resume[0]["loaded"]
    assert set(loaded) == set(saved_by_two)
    for key, value in saved_by_two.items():  # 2 -> 4: weights and optimizer state identical
        assert torch.equal(loaded[key], value), key
    # Training on from the resharded state continues the single-process run.
    ref = references["resumed"]
    torch.testing.assert_close(torch.cat([r["pred"] for r in resume]), ref["preds"][w.STEPS], atol=ATOL, rtol=1e-5)
    _assert_state_close(resume[0]["final"], ref["state"], "4 ranks after resuming")
    # 4 -> 1: the whole tables in one process, identical to what the 4 ranks held.
    whole = load_unsharded(folders["w4"])
    assert set(whole) == set(resume[0]["final"])
    for key, value in resume[0]["final"].items():
        assert torch.equal(whole[key], value), key
    plain = w.make_model(seed=5)
    plain.load_state_dict(whole)
    features, weighted, _ = w.global_batch(0, 8)
    sharded_start = {k: v for k, v in load_unsharded(folders["w2"], collection="embeddings").items()}
    assert torch.equal(sharded_start["fused.state.t_tw.step"], torch.tensor(w.STEPS))
    assert plain(features, weighted).shape == (8,)


def test_manifest_lists_every_file_with_its_checksum(four_ranks, folders):
    manifest = read_manifest(folders["w4"])
    assert manifest["world_size"] == 4
    shards = manifest["collections"]["embeddings"]["tables"]["t_tw"]["shards"]
    assert [s["rank"] for s in shards] == [0, 1, 2, 3]  # plan b: t_tw row-wise over 4 ranks
    assert [s["rows"] for s in shards] == [[0, 4], [4, 7], [7, 10], [10, 13]]
    for entry in manifest["files"].values():
        assert len(entry["sha256"]) == 64


def test_corrupted_shard_file_is_refused(four_ranks, folders, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(folders["w4"], copy)
    name = next(n for n in read_manifest(copy)["files"] if n.startswith("shard-") and n.endswith("r00002.pt"))
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_unsharded(copy)


def test_failing_rank_stops_the_others_with_a_clear_error():
    started = time.monotonic()
    with pytest.raises(DistributedError) as info:
        _launch(w.fail_on_rank_one, 2, timeout_s=30.0)
    message = str(info.value)
    assert "rank 1 failed: ValueError: rank one broke on purpose" in message
    assert "rank 0 stopped: DistributedError" in message  # rank 0 raised too, it was not killed
    assert time.monotonic() - started < 30.0


def test_hung_rank_makes_the_others_time_out():
    started = time.monotonic()
    with pytest.raises(DistributedError) as info:
        _launch(w.hang_on_rank_one, 2, 120.0, timeout_s=3.0)
    message = str(info.value)
    assert "rank 0 of 2: collective 'batch sizes and id counts' failed" in message
    assert "rank 1 was still running after the others failed (hung?) and was terminated" in message
    assert time.monotonic() - started < 60.0  # not the 120 s rank 1 would sleep
