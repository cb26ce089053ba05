"""Engine choices that make a CPU decode step cheap: the weights dtype and the attention kernel.

A decode step reads every weight and every row's KV cache once and computes
little, so on CPU its cost is the bytes it reads. bfloat16 halves them where
the CPU computes bf16 natively (AVX512-BF16, AMX): a 6-row step over
1.5k-token rows of SmolLM2-135M takes 46 ms instead of 93 ms, and a
1.5k-token prefill 1.2 s instead of 2.4 s (2 cores, measured).

Attention: transformers' SDPA path gives a single query token with no mask to
torch with ``enable_gqa=True``, which on CPU in bf16 is 6x slower than the same
attention with the grouped query heads packed onto their key/value head
(0.66 vs 0.10 ms per layer at 1.5k tokens, measured); transformers packs
them only when a mask is present. ``ENGINE_ATTENTION`` is SDPA that always
takes the packed path when decoding.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ENGINE_ATTENTION = "ray_lcb_sdpa"


def _decode_packed_sdpa(module, query, key, value, attention_mask, **kwargs):
    if query.shape[2] == 1 and attention_mask is None:
        # An all-true mask that every row and head broadcasts against: transformers then packs.
        attention_mask = torch.ones((1, 1, 1, key.shape[2]), dtype=torch.bool, device=key.device)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(ENGINE_ATTENTION, _decode_packed_sdpa)
AttentionMaskInterface.register(ENGINE_ATTENTION, sdpa_mask)


def engine_dtype(name: str) -> torch.dtype:
    """The torch dtype for a configured weights dtype; ``auto``: bfloat16 on a GPU or a CPU with native
    bf16 arithmetic, else float32 (emulated bf16 matmuls are slower than float32 ones)."""
    if name != "auto":
        return getattr(torch, name)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return torch.bfloat16 if native else torch.float32
