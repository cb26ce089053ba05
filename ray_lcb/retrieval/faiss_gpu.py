"""Every GPU FAISS code path, behind :func:`has_faiss_gpu`.

faiss-gpu is the same ``faiss`` module as faiss-cpu plus GPU classes; with
faiss-cpu (or no visible GPU) every function here is a no-op returning CPU
objects, so callers never branch on hardware. Used by ``faiss_index`` to train
IVF quantizers and add vectors on a GPU; the files written are CPU indexes
(``index_gpu_to_cpu``), so they load anywhere.
"""

from __future__ import annotations

import functools

import faiss


@functools.cache
def has_faiss_gpu() -> bool:
    """True when this faiss build has GPU support and sees at least one GPU."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    return get_num_gpus is not None and hasattr(faiss, "StandardGpuResources") and get_num_gpus() > 0


@functools.cache
def _gpu_resources():
    return faiss.StandardGpuResources()


def maybe_to_gpu(index: faiss.Index, enabled: bool) -> faiss.Index:
    """A GPU copy of ``index`` when enabled and a GPU is there; else ``index`` itself.

    HNSW has no GPU implementation in FAISS and stays on the CPU.
    """
    if not (enabled and has_faiss_gpu()) or isinstance(index, faiss.IndexHNSW):
        return index
    return faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)


def to_cpu(index: faiss.Index) -> faiss.Index:
    """The CPU version of ``index`` (itself if it is already a CPU index)."""
    if has_faiss_gpu() and type(index).__name__.startswith("Gpu"):
        return faiss.index_gpu_to_cpu(index)
    return index
