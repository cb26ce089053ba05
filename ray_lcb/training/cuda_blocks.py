"""One attention block on CUDA with PyTorch's own fused kernels, for the pure-PyTorch ring.

The ring needs, per block, the output *and* its log-sum-exp (to merge blocks)
and a backward that takes the *global* out/lse. PyTorch's fused SDPA kernels
expose both through their ATen ops: the flash kernel for fp16/bf16 and the
memory-efficient kernel for fp32. With them the ring runs on a GPU without
flash-attn / ring-flash-attn installed and never builds the ``[Lq, Lk]`` score
matrix. They take equal head counts, so GQA K/V are repeated per query group
and their gradients summed back.

Shapes as in :mod:`ray_lcb.training.ring_attention`: q ``[B, Lq, H, D]``,
k/v ``[B, Lk, Hk, D]``, lse ``[B, H, Lq]`` fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EFFICIENT_LSE_ALIGN = 32  # the memory-efficient kernel pads its lse to a multiple of 32 rows


def supports(q: torch.Tensor) -> bool:
    """True when a fused kernel handles this block (else the caller uses the math path)."""
    head_dim = q.shape[-1]
    if q.dtype in (torch.float16, torch.bfloat16):
        return head_dim % 8 == 0 and head_dim <= 256
    return q.dtype == torch.float32 and head_dim % 4 == 0


def _heads_first(q, k, v):
    groups = q.shape[2] // k.shape[2]
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return q, k, v, groups


def _fold_groups(grad: torch.Tensor, groups: int) -> torch.Tensor:
    """``[B, H, L, D]`` gradient of repeated K/V heads → ``[B, L, Hk, D]``."""
    if groups > 1:
        batch, heads, length, dim = grad.shape
        grad = grad.view(batch, heads // groups, groups, length, dim).sum(2)
    return grad.transpose(1, 2)


def block_forward(q, k, v, causal: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    qh, kh, vh, _ = _heads_first(q, k, v)
    if q.dtype == torch.float32:
        out, lse, _, _ = torch.ops.aten._scaled_dot_product_efficient_attention(
            qh, kh, vh, None, True, 0.0, causal, scale=scale)
        lse = lse[..., : q.shape[1]]
    else:
        out, lse, *_ = torch.ops.aten._scaled_dot_product_flash_attention(qh, kh, vh, 0.0, causal, False, scale=scale)
    return out.transpose(1, 2), lse.float()


def block_backward(dout, q, k, v, out, lse, causal: bool, scale: float):
    qh, kh, vh, groups = _heads_first(q, k, v)
    douth, outh = dout.transpose(1, 2), out.transpose(1, 2)
    q_len, k_len = q.shape[1], k.shape[1]
    if q.dtype == torch.float32:
        padded = -q_len % _EFFICIENT_LSE_ALIGN
        lse = F.pad(lse, (0, padded)).contiguous()
        seed = offset = torch.zeros((), dtype=torch.int64, device=q.device)  # no dropout: unused
        dq, dk, dv, _ = torch.ops.aten._scaled_dot_product_efficient_attention_backward(
            douth, qh, kh, vh, None, outh, lse, seed, offset, 0.0, [True, True, True, False], causal, scale=scale)
    else:
        rng_state = torch.zeros(2, dtype=torch.uint64, device=q.device)  # no dropout: unused
        unused = torch.zeros((), dtype=torch.uint64, device=q.device)
        dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_backward(
            douth, qh, kh, vh, outh, lse.contiguous(), None, None, q_len, k_len, 0.0, causal, rng_state, unused,
            scale=scale)
    return dq.transpose(1, 2), _fold_groups(dk, groups), _fold_groups(dv, groups)
