"""A transformers causal LM running ring attention, with RoPE set per stage.

The ring attention enters through transformers' attention-function registry:
:func:`register_ring_attention` adds :func:`ring_attention_forward` under the
name ``"ray_lcb_ring"`` and :func:`load_training_model` loads the model with
``attn_implementation="ray_lcb_ring"``; no model code is forked. The
sequence-parallel group reaches the attention layers as the ``ring_group``
keyword of the model's forward (transformers hands extra keywords down to the
attention function, and activation checkpointing captures them for the
recompute). Without a group the function is plain causal attention, so a
loaded model also works for ordinary single-process evaluation.

Called by :mod:`ray_lcb.training.loop` (training workers), the tests and
``bench/training.py``. Transformers is imported lazily by each function.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.distributed as dist

from ray_lcb.training.ring_attention import ring_attention

RING_ATTENTION_NAME = "ray_lcb_ring"


def ring_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                           ring_group: dist.ProcessGroup | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers attention function (the ``AttentionInterface`` signature).

    Args:
        module: the calling attention layer (unused).
        query: ``[B, H, L, D]`` (transformers' layout); key, value: ``[B, Hk, L, D]``.
        attention_mask: must be ``None``: sequences are right-padded and causal,
            so padding never influences real tokens (a custom implementation
            gets no mask from transformers' mask factory).
        scaling: softmax scale.
        dropout: must be 0 (the ring does not replay dropout masks).
        ring_group: the sequence-parallel group; the tensors are its zigzag shards.

    Returns:
        ``(out [B, L, H, D], None)``, the layout transformers reshapes to hidden size.
    """
    if attention_mask is not None:
        raise ValueError("ray_lcb_ring attention takes no attention_mask: right-pad sequences and mask the labels")
    if dropout:
        raise ValueError(f"ray_lcb_ring attention does not support dropout (got {dropout}); set attention_dropout=0")
    out = ring_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
                         group=ring_group, causal=True, softmax_scale=scaling)
    return out, None


def register_ring_attention() -> None:
    """Register :func:`ring_attention_forward` as ``attn_implementation="ray_lcb_ring"`` (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(RING_ATTENTION_NAME, ring_attention_forward)


def get_rope_theta(config) -> float:
    """RoPE base of a transformers config (v5 ``rope_parameters`` or v4 ``rope_theta``)."""
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict) and "rope_theta" in params:
        return float(params["rope_theta"])
    theta = getattr(config, "rope_theta", None)
    if theta is None:
        raise ValueError(f"model config {type(config).__name__} has no RoPE base (rope_parameters.rope_theta)")
    return float(theta)


def set_rope(config, rope_theta: float, max_position_embeddings: int) -> None:
    """Set the RoPE base and context length in place (both spellings of the base)."""
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict):
        config.rope_parameters = {**params, "rope_theta": float(rope_theta)}
    if getattr(config, "rope_theta", None) is not None:
        config.rope_theta = float(rope_theta)
    config.max_position_embeddings = int(max_position_embeddings)


def load_training_model(path: str | Path, *, dtype: str = "float32", rope_theta: float | None = None,
                        max_position_embeddings: int | None = None, gradient_checkpointing: bool = True):
    """Load a causal LM from an HF folder for ring-attention training.

    Args:
        path: a folder with ``config.json`` and safetensors weights.
        dtype: parameter dtype, ``"float32"`` or ``"bfloat16"``.
        rope_theta, max_position_embeddings: override the RoPE base / context
            length before the rotary tables are built (both or neither).
        gradient_checkpointing: recompute each decoder layer in backward.

    Returns:
        The model in train mode, ``attn_implementation="ray_lcb_ring"``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    register_ring_attention()
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    if rope_theta is not None:
        set_rope(config, rope_theta, max_position_embeddings or config.max_position_embeddings)
    if getattr(config, "attention_dropout", 0.0):
        warnings.warn(f"attention_dropout={config.attention_dropout} in '{path}' is set to 0: ring attention "
                      "does not replay dropout masks", stacklevel=2)
        config.attention_dropout = 0.0
    model = AutoModelForCausalLM.from_pretrained(
        path, config=config, dtype=getattr(torch, dtype), attn_implementation=RING_ATTENTION_NAME,
        trust_remote_code=False, use_safetensors=True)
    model.config.use_cache = False
    if gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:  # transformers >= 5.x name
            enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model


def forward_hidden(model, input_ids: torch.Tensor, position_ids: torch.Tensor,
                   group: dist.ProcessGroup | None) -> torch.Tensor:
    """Final hidden states (after the last norm, before the LM head) of a zigzag shard.

    Args:
        model: a ``*ForCausalLM`` loaded by :func:`load_training_model`.
        input_ids: ``[B, L]`` local shard of the token ids.
        position_ids: ``[B, L]`` the *global* positions of those tokens, so RoPE
            sees where each zigzag chunk really sits.
        group: the sequence-parallel group, or ``None`` for the whole sequence.

    Returns:
        ``[B, L, hidden]``.
    """
    outputs = model.model(input_ids=input_ids, position_ids=position_ids, use_cache=False, ring_group=group)
    return outputs.last_hidden_state
