"""Zigzag (head-tail) sharding of a sequence over a sequence-parallel group.

With ``W`` ranks the sequence is cut into ``2W`` equal chunks ``c0 … c(2W-1)``
and rank ``r`` holds ``[c_r, c_(2W-1-r)]`` in that order (W=4: rank 0 holds
c0,c7; rank 1 c1,c6; rank 2 c2,c5; rank 3 c3,c4). Under a causal mask every
rank then does the same amount of attention work at every ring step. This is
the layout of ring-flash-attn's zigzag functions, EasyContext and PyTorch's
``_HeadTailLoadBalancer`` (reference/ring_attention.md §1).

Pure index logic, no collectives: the training loop shards ``input_ids``,
``position_ids`` and ``labels`` with :func:`zigzag_shard`; tests and the
benchmark rebuild full tensors with :func:`zigzag_unshard`.
"""

from __future__ import annotations

import torch


def check_divisible(seq_len: int, world_size: int) -> None:
    """Raise ``ValueError`` unless ``seq_len`` splits into ``2 * world_size`` chunks."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if seq_len % (2 * world_size) != 0:
        raise ValueError(
            f"sequence length {seq_len} is not divisible by 2 * world_size = {2 * world_size}; "
            f"pad the sequence to a multiple of {2 * world_size} (see ray_lcb.training.data.pad_to_multiple)"
        )


def zigzag_chunk_ids(rank: int, world_size: int) -> tuple[int, int]:
    """The two chunk indices (out of ``2 * world_size``) that ``rank`` holds."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside [0, {world_size})")
    return rank, 2 * world_size - 1 - rank


def zigzag_indices(seq_len: int, rank: int, world_size: int) -> torch.Tensor:
    """Global positions held by ``rank``, in local order. Shape ``[seq_len / world_size]``."""
    check_divisible(seq_len, world_size)
    chunk = seq_len // (2 * world_size)
    first, second = zigzag_chunk_ids(rank, world_size)
    return torch.cat([torch.arange(first * chunk, (first + 1) * chunk),
                      torch.arange(second * chunk, (second + 1) * chunk)])


def zigzag_shard(x: torch.Tensor, rank: int, world_size: int, dim: int = 1) -> torch.Tensor:
    """The slice of ``x`` along ``dim`` that ``rank`` holds in the zigzag layout.

    Args:
        x: the full sequence, e.g. ``input_ids`` ``[B, T]`` or hidden states ``[B, T, ...]``.
        rank: this rank's index in the sequence-parallel group.
        world_size: size of the sequence-parallel group ``W``.
        dim: the sequence dimension.

    Returns:
        A contiguous tensor with ``T / W`` entries along ``dim``: chunk ``rank``
        followed by chunk ``2W - 1 - rank``.

    Raises:
        ValueError: if ``T`` is not divisible by ``2W`` or ``rank`` is out of range.
    """
    check_divisible(x.shape[dim], world_size)
    chunks = x.chunk(2 * world_size, dim=dim)
    first, second = zigzag_chunk_ids(rank, world_size)
    return torch.cat([chunks[first], chunks[second]], dim=dim).contiguous()


def zigzag_unshard(shards: list[torch.Tensor] | tuple[torch.Tensor, ...], dim: int = 1) -> torch.Tensor:
    """Inverse of :func:`zigzag_shard`: rebuild the full sequence from every rank's shard.

    Args:
        shards: the shards of ranks ``0 … W-1``, in rank order (e.g. from ``all_gather``).
        dim: the sequence dimension.

    Returns:
        The full sequence with ``W * shards[0].shape[dim]`` entries along ``dim``.
    """
    world_size = len(shards)
    if world_size == 0:
        raise ValueError("zigzag_unshard needs at least one shard")
    local_len = shards[0].shape[dim]
    if any(s.shape[dim] != local_len for s in shards) or local_len % 2 != 0:
        raise ValueError(f"every shard needs the same even length along dim {dim}; got "
                         f"{[s.shape[dim] for s in shards]}")
    chunks: list[torch.Tensor | None] = [None] * (2 * world_size)
    for rank, shard in enumerate(shards):
        head, tail = shard.chunk(2, dim=dim)
        first, second = zigzag_chunk_ids(rank, world_size)
        chunks[first], chunks[second] = head, tail
    return torch.cat(chunks, dim=dim)  # type: ignore[arg-type]
