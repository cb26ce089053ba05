"""Process groups and gradient averaging for sequence × data parallelism.

Global rank ``r`` belongs to data-parallel group ``r // sp`` and holds
position ``r % sp`` of that group's sequence-parallel ring (so the ranks of a
ring are contiguous, which keeps a ring on one node when ``sp`` divides the
GPUs per node). Every rank of a ring holds a full model replica and a zigzag
shard of the same sample; its gradient is its share of the ring's loss, so the
ring's gradient is the *sum* over its ranks and the step's gradient is the
mean of the rings' gradients: one all-reduce (sum) over the world, divided by
``dp``. Used by :mod:`ray_lcb.training.loop`, the tests and the benchmark.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

BUCKET_ELEMENTS = 8 * 1024 * 1024  # 32 MiB of fp32 per all-reduce: the flat copy is extra memory per worker


def build_sequence_parallel_group(rank: int, world_size: int, sequence_parallel: int,
                                  device: torch.device | None = None) -> dist.ProcessGroup | None:
    """Create every ring's group (all ranks must call this) and return this rank's; ``None`` if sp == 1."""
    if world_size % sequence_parallel:
        raise ValueError(f"world size {world_size} is not a multiple of sequence_parallel {sequence_parallel}")
    if sequence_parallel == 1:
        return None
    mine = None
    for start in range(0, world_size, sequence_parallel):
        ranks = list(range(start, start + sequence_parallel))
        group = dist.new_group(ranks)  # collective over the world: same order on every rank
        if rank in ranks:
            mine = group
    # The first operation on a group must be joined by all its members before P2P
    # ops use it (pytorch/pytorch#74701), so open it with a collective.
    dist.all_reduce(torch.zeros(1, device=device or torch.device("cpu")), group=mine)
    return mine


def average_gradients(parameters: list[torch.nn.Parameter], data_parallel: int) -> None:
    """Sum gradients over the world and divide by ``data_parallel``, in buckets.

    Parameters without a gradient get zeros first, so every rank sends buffers
    of the same size.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    for param in parameters:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
    bucket: list[torch.Tensor] = []
    size = 0
    for param in parameters:
        bucket.append(param.grad)
        size += param.grad.numel()
        if size >= BUCKET_ELEMENTS:
            _reduce_bucket(bucket, data_parallel)
            bucket, size = [], 0
    if bucket:
        _reduce_bucket(bucket, data_parallel)


def _reduce_bucket(grads: list[torch.Tensor], data_parallel: int) -> None:
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for grad in grads:
        by_dtype.setdefault(grad.dtype, []).append(grad)
    for same_dtype in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in same_dtype]).float()  # reduce bf16 grads in fp32
        dist.all_reduce(flat)
        flat /= data_parallel
        offset = 0
        for grad in same_dtype:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()
