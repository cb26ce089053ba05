"""Run a function on W local processes joined in a gloo process group.

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


def free_port() -> int:
    """A TCP port that was free a moment ago (for the rendezvous of a local group)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(fn: Callable, rank: int, world_size: int, port: int, num_threads: int, args: tuple,
            results: mp.Queue) -> None:
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(num_threads)
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
        try:
            results.put((rank, True, fn(rank, world_size, *args)))
        finally:
            dist.destroy_process_group()
    except BaseException:  # noqa: BLE001 -- the parent re-raises it with the child's traceback
        results.put((rank, False, traceback.format_exc()))


def run_gloo(fn: Callable[..., Any], world_size: int, *args: Any, num_threads: int = 1,
             timeout_s: float = 600.0) -> list[Any]:
    """Call ``fn(rank, world_size, *args)`` on ``world_size`` fresh gloo processes.

    Args:
        fn: a module-level (picklable) function; its return value must pickle.
        world_size: number of processes.
        *args: extra arguments for ``fn``.
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
        procs = [ctx.Process(target=_worker, args=(fn, rank, world_size, port, num_threads, args, results),
                             daemon=True) for rank in range(world_size)]
        for proc in procs:
            proc.start()
    finally:
        if env_before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_before
    outputs: dict[int, Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(outputs) < world_size:
            try:
                rank, ok, value = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:  # killed (e.g. out of memory) before it could report
                    raise RuntimeError(f"a gloo worker died with exit code {dead[0]}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gloo workers timed out after {timeout_s:.0f} s") from None
                continue
            if not ok:
                raise RuntimeError(f"gloo worker {rank} of {world_size} failed:\n{value}")
            outputs[rank] = value
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return [outputs[rank] for rank in range(world_size)]
