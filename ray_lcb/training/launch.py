"""Run a function on W local processes joined in one process group (gloo, or NCCL for GPU tests).

Ray Train starts the real training workers (:mod:`ray_lcb.training.loop`);
this small launcher is for the places that need bare ``torch.distributed``
processes on one machine: the multi-process tests in ``tests/training`` and
``bench/training.py``. Each process gets a fresh interpreter (``spawn``), so
peak-memory numbers measured inside it are its own.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import socket
import time
import traceback
from typing import Any, Callable

FAILURE_GRACE_S = 5.0  # after a failure, how long to wait for the other workers' reports


def free_port() -> int:
    """A TCP port that was free a moment ago (for the rendezvous of a local group)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(fn: Callable, rank: int, world_size: int, port: int, num_threads: int, backend: str, args: tuple,
            results: mp.Queue) -> None:
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(num_threads)
        if backend == "nccl":
            torch.cuda.set_device(rank)
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
        try:
            results.put((rank, True, fn(rank, world_size, *args)))
        finally:
            dist.destroy_process_group()
    except BaseException:  # noqa: BLE001 -- the parent re-raises it with the child's traceback
        results.put((rank, False, traceback.format_exc()))


def run_local_group(fn: Callable[..., Any], world_size: int, *args: Any, backend: str = "gloo",
                    num_threads: int = 1, timeout_s: float = 600.0) -> list[Any]:
    """Call ``fn(rank, world_size, *args)`` on ``world_size`` fresh processes of one process group.

    Args:
        fn: a module-level (picklable) function; its return value must pickle.
        world_size: number of processes.
        *args: extra arguments for ``fn``.
        backend: ``"gloo"``, or ``"nccl"`` with one GPU per rank (rank ``r`` uses ``cuda:r``).
        num_threads: ``torch.set_num_threads`` in each process.
        timeout_s: give up (and kill the processes) after this long.

    Returns:
        ``fn``'s return values in rank order.

    Raises:
        RuntimeError: with the child's traceback if any process fails or times out.
    """
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    env_before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(num_threads)  # inherited by the children at spawn
    try:
        procs = [ctx.Process(target=_worker, args=(fn, rank, world_size, port, num_threads, backend, args, results),
                             daemon=True) for rank in range(world_size)]
        for proc in procs:
            proc.start()
    finally:
        if env_before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_before
    outputs: dict[int, Any] = {}
    failures: dict[int, str] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(outputs) + len(failures) < world_size:
            if failures and time.monotonic() > deadline:
                break
            try:
                rank, ok, value = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead and not failures:  # killed (e.g. out of memory) before it could report
                    failures[-1] = f"a worker died with exit code {dead[0]}"
                    deadline = time.monotonic() + FAILURE_GRACE_S
                elif time.monotonic() > deadline and not failures:
                    raise RuntimeError(f"workers timed out after {timeout_s:.0f} s") from None
                continue
            if ok:
                outputs[rank] = value
            else:
                # The first failure often makes its peers fail too ("connection closed by peer"):
                # wait briefly for their reports so the root cause is in the message.
                if not failures:
                    deadline = time.monotonic() + FAILURE_GRACE_S
                failures[rank] = value
    finally:
        for proc in procs:
            proc.join(timeout=1 if failures else 10)
            if proc.is_alive():
                proc.kill()
    if failures:
        report = "\n".join(f"--- worker {rank} of {world_size}:\n{text}" for rank, text in sorted(failures.items()))
        raise RuntimeError(f"{len(failures)} worker(s) failed:\n{report}")
    return [outputs[rank] for rank in range(world_size)]
