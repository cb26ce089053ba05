"""The CPU engine's attention: transformers' SDPA, except a bfloat16 decode step on CPU.

A decode step has one query token per row. torch's CPU SDPA kernels are
built for blocks of queries, and in bfloat16 they are slow on a single one:
per layer over 6 rows of 1.5k tokens 0.74 ms (masked, grouped heads packed)
or 0.85 ms for one row with ``enable_gqa`` -- against 0.32 ms for two plain
matmuls around a float32 softmax, which read the KV cache once at memory
speed (2 cores, measured). Attention was half of a 6-row decode step.
Float32 and prefill keep SDPA, which is as fast or faster there.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ENGINE_ATTENTION = "ray_lcb_sdpa"


def grouped_decode_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: torch.Tensor | None, scaling: float | None) -> torch.Tensor:
    """Attention of one query token per row; returns [batch, 1, heads, dim] as transformers expects.

    query [batch, heads, 1, dim]; key/value [batch, kv_heads, length, dim]; attention_mask None, or
    boolean (True: attend) or additive, broadcastable to [batch, 1, 1, length].
    """
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    # The query heads of a group share one KV head (head h reads KV head h // group): stacking them
    # as that head's queries reads each KV column once instead of once per query head.
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * (scaling or dim ** -0.5)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, float("-inf")) if attention_mask.dtype == torch.bool \
            else scores + attention_mask.float()
    out = torch.matmul(scores.softmax(-1).to(value.dtype), value)
    return out.reshape(batch, 1, heads, dim)


def _engine_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    if query.shape[2] == 1 and query.dtype == torch.bfloat16 and query.device.type == "cpu":
        return grouped_decode_attention(query, key, value, attention_mask, scaling), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)


AttentionInterface.register(ENGINE_ATTENTION, _engine_attention)
AttentionMaskInterface.register(ENGINE_ATTENTION, sdpa_mask)
