"""Starting ranks: ``launch`` spawns them on this machine, ``init_from_env`` joins a torchrun job.

``launch(fn, nproc, *args)`` starts ``nproc`` processes on loopback, each with a gloo
process group (timeout set, so a lost peer ends in an error, never a hang), runs
``fn(*args)`` in each and returns the results by rank. If any rank raises, the others'
collectives fail within seconds (gloo notices the closed connection) or at the timeout,
and ``launch`` raises one :class:`~recembed.errors.DistributedError` that names the
failing rank and its error.

Under torchrun (``torchrun --nproc-per-node N script.py``) each process calls
:func:`init_from_env`, which reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``.

Example:
    >>> def world(scale):                                    # doctest: +SKIP
    ...     import torch.distributed as dist
    ...     return dist.get_rank() * scale
    >>> launch(world, 2, 10)                                  # doctest: +SKIP
    [0, 10]
"""

from __future__ import annotations

import datetime
import os
import pickle
import queue
import socket
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

from recembed.errors import ConfigError, DistributedError

__all__ = ["RankInfo", "launch", "init_from_env", "free_port", "DEFAULT_TIMEOUT_S"]

#: Seconds a collective waits for its peers before failing.
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RankInfo:
    """Where this process stands: ``rank`` in ``world_size`` ranks, ``local_rank`` on its machine."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env_int(name: str, default: int | None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise DistributedError(f"environment variable {name} is not set; start the job with torchrun "
                                   "(which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT)")
        return default
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(f"environment variable {name}={raw!r} is not an integer") from None


def init_from_env(backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> RankInfo:
    """Join the process group described by torchrun's environment variables.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default NCCL when CUDA is available, else gloo.
        timeout_s: how long a collective waits for its peers before failing.

    Returns:
        This process's :class:`RankInfo`. If the default group already exists it is reused.

    Raises:
        DistributedError: a variable is missing or malformed.
    """
    if dist.is_initialized():
        return RankInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    rank = _env_int("RANK", None)
    world = _env_int("WORLD_SIZE", None)
    local = _env_int("LOCAL_RANK", 0)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise DistributedError(f"environment variable {name} is not set (torchrun sets it)")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s))
    return RankInfo(rank, world, local)


def _worker(rank: int, world: int, port: int, timeout_s: float, threads: int, fn: Callable, args: tuple,
            results) -> None:
    """Body of one launched rank: join the group, run ``fn``, report the outcome, leave."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover - numba is a dependency, but keep ranks usable without it
        pass
    # After numba: starting numba's OpenMP layer resets the process's OpenMP thread count,
    # which torch reads, so torch's setting must come last.
    torch.set_num_threads(threads)
    try:
        init_from_env("gloo", timeout_s)
        value = fn(*args)
        # Plain pickle copies tensors by value; torch's default queue pickling would pass
        # shared-memory handles that die with this process.
        results.put((rank, "ok", pickle.dumps(value)))
    except BaseException as exc:  # report everything, KeyboardInterrupt included
        results.put((rank, "error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - a broken group cannot always be torn down; we are exiting
                pass


def launch(fn: Callable[..., Any], nproc: int, *args: Any, timeout_s: float = DEFAULT_TIMEOUT_S,
           threads_per_rank: int | None = None, start_method: str = "spawn") -> list[Any]:
    """Run ``fn(*args)`` in ``nproc`` new processes joined by a gloo group on 127.0.0.1.

    Args:
        fn: a module-level function (it is pickled by name into the new processes).
        nproc: number of ranks (>= 1).
        args: passed to ``fn`` on every rank; ``fn`` reads its rank from ``torch.distributed``.
        timeout_s: collective timeout. After a rank fails, ``launch`` waits at most this long
            (plus 2 s) for the others to stop, then terminates those still running.
        threads_per_rank: torch/numba threads in each rank (default: cores // nproc, at least 1).
        start_method: ``"spawn"`` (default) or ``"forkserver"`` (faster repeated launches: the
            server imports torch once).

    Returns:
        ``fn``'s return values, by rank (they must be picklable).

    Raises:
        DistributedError: a rank raised (the message has its error and traceback) or died.
    """
    import multiprocessing as mp

    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"launch: nproc must be an int >= 1, got {nproc!r}")
    if start_method not in ("spawn", "forkserver"):
        raise ConfigError(f"launch: start_method must be 'spawn' or 'forkserver', got {start_method!r}")
    threads = threads_per_rank or max(1, (os.cpu_count() or 1) // nproc)
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(["torch", "torch.distributed", "numba", "recembed.distributed"])
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(r, nproc, port, timeout_s, threads, fn, args, results),
                         name=f"recembed-rank-{r}", daemon=False) for r in range(nproc)]
    for p in procs:
        p.start()
    outcomes: dict[int, tuple] = {}
    terminated: list[int] = []
    try:
        _collect(procs, results, outcomes, timeout_s)
    finally:
        for rank, p in enumerate(procs):  # only our own children, each by its handle
            p.join(timeout=10 if rank in outcomes else 0.1)
            if p.is_alive():
                p.terminate()
                terminated.append(rank)
                p.join(timeout=5)
    failed = sorted(r for r, o in outcomes.items() if o[0] != "ok")
    missing = [r for r in range(nproc) if r not in outcomes]
    if failed or missing:
        raise DistributedError(_failure_message(outcomes, failed, missing, procs, terminated))
    return [pickle.loads(outcomes[r][1]) for r in range(nproc)]


def _collect(procs, results, outcomes: dict, timeout_s: float) -> None:
    """Gather every rank's outcome; after the first failure wait at most ``timeout_s`` + 5 s for the rest."""
    deadline = None
    while len(outcomes) < len(procs):
        try:
            item = results.get(timeout=0.2)
        except queue.Empty:
            if all(not p.is_alive() for p in procs):
                return  # everyone has exited and their reports (flushed at exit) are read
            if deadline is None and any(not p.is_alive() and r not in outcomes for r, p in enumerate(procs)):
                deadline = time.monotonic() + timeout_s + 2.0  # died without a report (killed, crashed)
            if deadline is not None and time.monotonic() > deadline:
                return
            continue
        rank, status, *payload = item
        outcomes[rank] = (status, *payload)
        if status != "ok" and deadline is None:
            deadline = time.monotonic() + timeout_s + 2.0


def _failure_message(outcomes: dict, failed: list[int], missing: list[int], procs, terminated: list[int]) -> str:
    # The root cause is usually the first rank whose error is not a peer-failure report.
    def is_secondary(r: int) -> bool:
        return outcomes[r][1].startswith("DistributedError") and "another rank stopped" in outcomes[r][1]

    roots = [r for r in failed if not is_secondary(r)] or failed
    lines = []
    for r in roots:
        lines.append(f"rank {r} failed: {outcomes[r][1]}\n{outcomes[r][2].rstrip()}")
    for r in failed:
        if r not in roots:
            lines.append(f"rank {r} stopped: {outcomes[r][1]}")
    for r in missing:
        if r in terminated:
            lines.append(f"rank {r} was still running after the others failed (hung?) and was terminated")
        else:
            lines.append(f"rank {r} exited without a result (exit code {procs[r].exitcode})")
    head = f"{len(failed) + len(missing)} of {len(procs)} ranks failed"
    return head + "\n" + "\n".join(lines)
