"""GPU path of :func:`ray_lcb.training.ring_attention`: ring-flash-attn's zigzag ring.

The only file that imports ``ring_flash_attn`` / ``flash_attn`` (both optional,
``pip install ray_lcb[gpu]``). :func:`ray_lcb.training.ring_attention.ring_attention`
calls :func:`zigzag_ring_flash_attention` for causal bf16/fp16 CUDA tensors
when :func:`has_ring_flash_attn` is true; the layout is the same zigzag layout
as the pure-PyTorch ring, so the two paths are interchangeable.

Pitfalls from reference/ring_attention.md §5: we call the zigzag function
directly (the HF adapter ``substitute_hf_flash_attn`` is the llama3 all-gather
variant, not a zigzag ring); precision of the backward degrades as the ring
grows (#42), so GPU tests scale tolerances with the ring size.
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def has_ring_flash_attn() -> bool:
    """True when ring-flash-attn and flash-attn import and a CUDA device is visible."""
    if not torch.cuda.is_available():
        return False
    try:
        import flash_attn  # noqa: F401
        import ring_flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def zigzag_ring_flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, group,
                                softmax_scale: float) -> torch.Tensor:
    """Causal zigzag ring attention with flash-attn kernels.

    Args:
        q: ``[B, L, H, D]`` local zigzag shard on CUDA, bf16 or fp16.
        k, v: ``[B, L, Hk, D]`` (flash-attn handles GQA natively).
        group: the sequence-parallel process group (NCCL).
        softmax_scale: the attention scale.

    Returns:
        ``[B, L, H, D]`` local output shard.
    """
    from ring_flash_attn import zigzag_ring_flash_attn_func

    return zigzag_ring_flash_attn_func(q, k.contiguous(), v.contiguous(), dropout_p=0.0,
                                       softmax_scale=softmax_scale, causal=True, group=group)
