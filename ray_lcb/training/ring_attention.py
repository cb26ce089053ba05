"""Causal zigzag ring attention in pure PyTorch over ``torch.distributed`` P2P.

Each rank of a sequence-parallel group holds its zigzag shard of q, k and v
(:mod:`ray_lcb.training.zigzag`). K/V travel once around the ring with
``batch_isend_irecv`` (gloo, NCCL and UCC all support it); every rank merges the
partial attention of each block it sees with a log-sum-exp in fp32. The
backward sends the fp32 dK/dV accumulators around the same ring, one step
behind K/V, so after W hops each rank owns the complete gradient of its own
K/V. No rank ever holds more than two K/V shards: there is no all-gather of the
sequence. The step rules follow ring-flash-attn's zigzag variant
(reference/ring_attention.md §2-3).

Callers use :func:`ring_attention`; it dispatches to ring-flash-attn
(:mod:`ray_lcb.training.ring_flash`) on CUDA when that is installed, and to
plain attention when there is no group. Per block it uses PyTorch's fused
kernels (CPU flash; CUDA flash / memory-efficient via
:mod:`ray_lcb.training.cuda_blocks`) and an fp32 math path otherwise. The
transformers integration lives in :mod:`ray_lcb.training.model`.

Shape legend: B batch, L local sequence length (T / W), H query heads,
Hk key/value heads (H % Hk == 0, GQA), D head dim.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ray_lcb.training import cuda_blocks

# Tags keep the K/V ring and the dK/dV ring apart when both are in flight (gloo matches by tag).
_TAG_K, _TAG_V, _TAG_DK, _TAG_DV = 11, 12, 13, 14


# ---------------------------------------------------------------- communication


class RingComm:
    """Send to rank+1 and receive from rank-1 of ``group``, posted as one batch."""

    def __init__(self, group: dist.ProcessGroup):
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        # P2P ops address peers by their global rank.
        self.send_peer = dist.get_global_rank(group, (self.rank + 1) % self.world_size)
        self.recv_peer = dist.get_global_rank(group, (self.rank - 1) % self.world_size)
        self._requests: list = []

    def send_recv(self, tensors: list[torch.Tensor], tags: list[int]) -> list[torch.Tensor]:
        """Post sends of ``tensors`` and receives into fresh buffers; returns the buffers."""
        assert not self._requests, "wait() for the previous transfer first"
        buffers = [torch.empty_like(t) for t in tensors]
        ops = [dist.P2POp(dist.isend, t, self.send_peer, self.group, tag) for t, tag in zip(tensors, tags)]
        ops += [dist.P2POp(dist.irecv, b, self.recv_peer, self.group, tag) for b, tag in zip(buffers, tags)]
        self._requests = dist.batch_isend_irecv(ops)
        return buffers

    def wait(self) -> None:
        for request in self._requests:
            request.wait()
        self._requests = []


# ---------------------------------------------------------------- one block


def _has_cpu_flash_kernel() -> bool:
    return hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward")


def block_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                  scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of one query block against one K/V block.

    Args:
        q: ``[B, Lq, H, D]``; k, v: ``[B, Lk, Hk, D]``.
        causal: lower-triangular mask (only used with ``Lq == Lk``).

    Returns:
        ``out [B, Lq, H, D]`` in q's dtype and ``lse [B, H, Lq]`` in fp32.
    """
    if q.device.type == "cpu" and _has_cpu_flash_kernel():
        # PyTorch's CPU flash kernel: tiled (no [Lq, Lk] score matrix), GQA-aware, returns the lse.
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), 0.0, causal, scale=scale)
        return out.transpose(1, 2), lse
    if q.is_cuda and cuda_blocks.supports(q):
        return cuda_blocks.block_forward(q, k, v, causal, scale)
    return _math_block_forward(q, k, v, causal, scale)


def block_backward(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   out: torch.Tensor, lse: torch.Tensor, causal: bool,
                   scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of one block, given the *global* ``out`` and ``lse`` of the query rows.

    With the global softmax statistics the per-block gradients are exact and
    simply add up over blocks (the flash-attention backward identity).

    Returns:
        ``dq [B, Lq, H, D]``, ``dk``, ``dv`` ``[B, Lk, Hk, D]`` in the inputs' dtype.
    """
    if q.device.type == "cpu" and _has_cpu_flash_kernel():
        dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            dout.transpose(1, 2), q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            out.transpose(1, 2), lse, 0.0, causal, scale=scale)
        return dq.transpose(1, 2), dk.transpose(1, 2), dv.transpose(1, 2)
    if q.is_cuda and cuda_blocks.supports(q):
        return cuda_blocks.block_backward(dout, q, k, v, out, lse, causal, scale)
    return _math_block_backward(dout, q, k, v, out, lse, causal, scale)


def _scores(q: torch.Tensor, k: torch.Tensor, causal: bool, scale: float) -> torch.Tensor:
    """fp32 scores ``[B, Hk, G, Lq, Lk]`` with query heads grouped by their K/V head."""
    batch, q_len, num_heads, head_dim = q.shape
    num_kv_heads = k.shape[2]
    q_grouped = q.float().view(batch, q_len, num_kv_heads, num_heads // num_kv_heads, head_dim)
    scores = torch.einsum("bqhgd,bkhd->bhgqk", q_grouped, k.float()) * scale
    if causal:
        mask = torch.ones(q_len, k.shape[1], dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return scores


def _math_block_forward(q, k, v, causal, scale):
    # Reference path for blocks no fused kernel takes (odd head dims, other devices).
    scores = _scores(q, k, causal, scale)  # [B, Hk, G, Lq, Lk]
    lse = scores.logsumexp(dim=-1)
    out = torch.einsum("bhgqk,bkhd->bqhgd", torch.exp(scores - lse.unsqueeze(-1)), v.float())
    batch, q_len, num_heads, _ = q.shape
    return out.reshape(batch, q_len, num_heads, -1).to(q.dtype), lse.reshape(batch, num_heads, q_len)


def _math_block_backward(dout, q, k, v, out, lse, causal, scale):
    batch, q_len, num_heads, head_dim = q.shape
    num_kv_heads = k.shape[2]
    groups = num_heads // num_kv_heads
    scores = _scores(q, k, causal, scale)
    probs = torch.exp(scores - lse.float().view(batch, num_kv_heads, groups, q_len, 1))
    dout_g = dout.float().view(batch, q_len, num_kv_heads, groups, head_dim)
    out_g = out.float().view(batch, q_len, num_kv_heads, groups, head_dim)
    dv = torch.einsum("bhgqk,bqhgd->bkhd", probs, dout_g)
    dprobs = torch.einsum("bqhgd,bkhd->bhgqk", dout_g, v.float())
    delta = (dout_g * out_g).sum(-1).permute(0, 2, 3, 1).unsqueeze(-1)  # [B, Hk, G, Lq, 1]
    dscores = probs * (dprobs - delta) * scale
    dq = torch.einsum("bhgqk,bkhd->bqhgd", dscores, k.float()).reshape(batch, q_len, num_heads, head_dim)
    q_grouped = q.float().view(batch, q_len, num_kv_heads, groups, head_dim)
    dk = torch.einsum("bhgqk,bqhgd->bkhd", dscores, q_grouped)
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def merge_block(out: torch.Tensor | None, lse: torch.Tensor | None, block_out: torch.Tensor,
                block_lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold one block's ``(out, lse)`` into the running fp32 result.

    ``out [B, L, H, D]`` and ``lse [B, L, H, 1]`` are fp32; ``block_lse`` is
    ``[B, H, L]`` as the kernels return it. Uses the sigmoid/logsigmoid form,
    which equals ``lse' = log(e^lse + e^lse_b)`` without overflow (the
    ``log(1 + exp(.))`` form broke vocabularies over 120K, EasyContext #14,
    fixed in ring-flash-attn #30).
    """
    block_out = block_out.float()
    block_lse = block_lse.transpose(1, 2).unsqueeze(-1).float()
    if out is None:
        return block_out, block_lse
    out = out - torch.sigmoid(block_lse - lse) * (out - block_out)
    lse = lse - F.logsigmoid(lse - block_lse)
    return out, lse


# ---------------------------------------------------------------- ring forward / backward


def ring_attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: dist.ProcessGroup,
                           causal: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Zigzag ring forward. Returns ``out [B, L, H, D]`` (q's dtype) and ``lse [B, L, H, 1]`` (fp32)."""
    comm = RingComm(group)
    rank, world_size = comm.rank, comm.world_size
    half = q.shape[1] // 2
    out = lse = None
    for step in range(world_size):
        if step + 1 < world_size:
            next_k, next_v = comm.send_recv([k, v], [_TAG_K, _TAG_V])
        src = (rank - step) % world_size  # whose K/V this rank holds now
        if not causal:
            out, lse = merge_block(out, lse, *block_forward(q, k, v, False, scale))
        elif step == 0:
            # [c_r, c_(2W-1-r)] is itself in causal order: a plain triangular mask is right.
            out, lse = merge_block(out, lse, *block_forward(q, k, v, True, scale))
        elif src < rank:
            # Both local query chunks come after c_src and before c_(2W-1-src): see only its head.
            out, lse = merge_block(out, lse, *block_forward(q, k[:, :half], v[:, :half], False, scale))
        else:
            # Only the tail query chunk c_(2W-1-r) comes after both of src's chunks.
            out_tail, lse_tail = merge_block(out[:, half:], lse[:, half:],
                                             *block_forward(q[:, half:], k, v, False, scale))
            out[:, half:], lse[:, half:] = out_tail, lse_tail
        if step + 1 < world_size:
            comm.wait()
            k, v = next_k, next_v
    return out.to(q.dtype), lse


def ring_attention_backward(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            out: torch.Tensor, lse: torch.Tensor, group: dist.ProcessGroup, causal: bool,
                            scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zigzag ring backward: K/V go round again and the fp32 dK/dV accumulators follow one step behind."""
    kv_comm, dkv_comm = RingComm(group), RingComm(group)
    rank, world_size = kv_comm.rank, kv_comm.world_size
    half = q.shape[1] // 2
    lse = lse.squeeze(-1).transpose(1, 2).contiguous()  # [B, H, L], the kernels' layout
    dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    next_dk = next_dv = None
    for step in range(world_size):
        if step + 1 < world_size:
            next_k, next_v = kv_comm.send_recv([k, v], [_TAG_K, _TAG_V])
        src = (rank - step) % world_size
        if not causal or step == 0:
            dq_b, dk_b, dv_b = block_backward(dout, q, k, v, out, lse, causal and step == 0, scale)
            dq += dq_b
            kv_slice = slice(None)
        elif src < rank:
            dq_b, dk_b, dv_b = block_backward(dout, q, k[:, :half], v[:, :half], out, lse, False, scale)
            dq += dq_b
            kv_slice = slice(0, half)
        else:
            dq_b, dk_b, dv_b = block_backward(dout[:, half:], q[:, half:], k, v, out[:, half:],
                                              lse[:, :, half:].contiguous(), False, scale)
            dq[:, half:] += dq_b
            kv_slice = slice(None)
        if step == 0:
            dk, dv = dk_b.float().contiguous(), dv_b.float().contiguous()  # sent around the ring
        else:
            # The accumulator that arrived belongs to the K/V of `src`, the block just used.
            dkv_comm.wait()
            dk, dv = next_dk, next_dv
            dk[:, kv_slice] += dk_b
            dv[:, kv_slice] += dv_b
        if step + 1 < world_size:
            kv_comm.wait()
            k, v = next_k, next_v
        next_dk, next_dv = dkv_comm.send_recv([dk, dv], [_TAG_DK, _TAG_DV])
    dkv_comm.wait()  # after W hops each accumulator is back with the rank that owns its K/V
    return dq.to(q.dtype), next_dk.to(k.dtype), next_dv.to(v.dtype)


# ---------------------------------------------------------------- autograd + public API


class RingAttentionFunc(torch.autograd.Function):
    """Autograd wrapper: saves local q/k/v plus the global out/lse, reruns the ring in backward."""

    @staticmethod
    def forward(ctx, q, k, v, group, causal, scale):
        k, v = k.contiguous(), v.contiguous()  # P2P sends need contiguous buffers
        out, lse = ring_attention_forward(q, k, v, group, causal, scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.group, ctx.causal, ctx.scale = group, causal, scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = ring_attention_backward(dout.contiguous(), q, k, v, out, lse, ctx.group, ctx.causal, ctx.scale)
        return dq, dk, dv, None, None, None


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                    softmax_scale: float | None = None) -> torch.Tensor:
    """Plain (single-rank) attention on ``[B, T, H, D]`` tensors with GQA, via PyTorch SDPA."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                         is_causal=causal, scale=softmax_scale, enable_gqa=True)
    return out.transpose(1, 2)


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, group: dist.ProcessGroup | None = None,
                   causal: bool = True, softmax_scale: float | None = None) -> torch.Tensor:
    """Attention over a sequence sharded in the zigzag layout across ``group``.

    Args:
        q: local query shard ``[B, L, H, D]`` (``L = T / W``, zigzag layout).
        k, v: local key/value shards ``[B, L, Hk, D]``; ``H`` must be a multiple of ``Hk``.
        group: the sequence-parallel process group. ``None`` or a group of one
            rank means the tensors hold the whole sequence: plain attention.
        causal: causal mask over *global* positions.
        softmax_scale: defaults to ``D ** -0.5``.

    Returns:
        The local output shard ``[B, L, H, D]`` in q's dtype.

    Uses ring-flash-attn on CUDA (bf16/fp16, causal) when it is installed, the
    pure-PyTorch ring otherwise. Every rank of ``group`` must call it together.
    """
    if q.dim() != 4 or k.shape != v.shape or k.dim() != 4:
        raise ValueError(f"q, k, v must be [batch, seq, heads, head_dim] with k.shape == v.shape; "
                         f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[0] != k.shape[0] or q.shape[1] != k.shape[1] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q and k/v differ in batch, seq or head_dim: q {tuple(q.shape)}, k {tuple(k.shape)}")
    if q.shape[2] % k.shape[2] != 0:
        raise ValueError(f"query heads ({q.shape[2]}) must be a multiple of key/value heads ({k.shape[2]})")
    scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
    if group is None or dist.get_world_size(group) == 1:
        return local_attention(q, k, v, causal, scale)
    if q.shape[1] % 2 != 0:
        raise ValueError(f"local sequence length {q.shape[1]} must be even (two zigzag chunks per rank)")
    if q.is_cuda and causal and q.dtype in (torch.float16, torch.bfloat16):
        from ray_lcb.training import ring_flash

        if ring_flash.has_ring_flash_attn():
            return ring_flash.zigzag_ring_flash_attention(q, k, v, group=group, softmax_scale=scale)
    return RingAttentionFunc.apply(q, k, v, group, causal, scale)
