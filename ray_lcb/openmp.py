"""OpenMP wait settings for processes that run torch in more than one thread.

torch's CPU kernels (and faiss's) run on libgomp. A thread waiting at the end
of a parallel region spins for a while before it sleeps, unless the process
has more OpenMP threads than CPUs: then libgomp spins only 100 times and every
region pays a futex wake-up. A process gets there as soon as two of its
threads run torch ops -- the LLM engine decodes in its own thread, and the
caller's thread may embed queries with the retriever. On 2 cores that made a
one-row decode step of SmolLM2-135M take 36 ms instead of 25 ms
(bench/synthesis.py's in-process baseline, measured).

``OMP_WAIT_POLICY=ACTIVE`` raises that short spin to 1000, and
``GOMP_SPINCOUNT`` at libgomp's own default (300000, about 3 ms) keeps the
normal wait before an idle thread sleeps -- without it ACTIVE would spin for
minutes. libgomp reads both once, when torch loads it, so they are set when
ray_lcb is imported (before torch) and forwarded to local Ray workers. A user
who chose a wait policy keeps it: then neither is set (GOMP_SPINCOUNT would
override PASSIVE's zero spin).
"""

from __future__ import annotations

import os

OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "300000"}


def set_openmp_defaults() -> None:
    if "OMP_WAIT_POLICY" not in os.environ:
        for name, value in OPENMP_DEFAULTS.items():
            os.environ.setdefault(name, value)
