"""Language-modelling loss over a sequence-parallel group, without full logits.

Labels are shifted on the full sequence before sharding
(:func:`ray_lcb.training.data.build_example`), so each rank's shard holds the
targets of its own tokens and positions ``-100`` carry no loss. The LM head and
cross-entropy run over chunks of tokens, each chunk under activation
checkpointing: neither forward nor backward ever holds more than one chunk's
``[chunk, vocab]`` logits (SmolLM2's vocabulary is 49K, Llama-3's 128K).

The sample's loss is the mean over every counted token of the group: each rank
returns ``local_sum / group_count``, so summing the ranks' gradients (the
training loop all-reduces them) gives the gradient of the group mean even when
ranks hold different numbers of counted tokens (reference/ring_attention.md §4).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100


def _chunk_loss_sum(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    labels: torch.Tensor) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias).float()  # [N, V], fp32 for a stable softmax
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")


def chunked_cross_entropy(hidden: torch.Tensor, lm_head: torch.nn.Linear, labels: torch.Tensor,
                          chunk_tokens: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy of ``lm_head(hidden)`` against ``labels``, chunk by chunk.

    Args:
        hidden: ``[B, L, hidden]`` final hidden states.
        lm_head: the output projection (``model.get_output_embeddings()``).
        labels: ``[B, L]`` target ids, ``-100`` where no loss is counted.
        chunk_tokens: tokens per chunk; peak logits memory is ``chunk_tokens × vocab``.

    Returns:
        ``(loss_sum, count)``: fp32 scalar sum over counted tokens (differentiable)
        and the number of counted tokens (int64 scalar).
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])  # [B*L, hidden]
    flat_labels = labels.reshape(-1)
    total = flat_hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, flat_labels.numel(), chunk_tokens):
        chunk_labels = flat_labels[start:start + chunk_tokens]
        if not (chunk_labels != IGNORE_INDEX).any():
            continue  # all positions ignored: skipping is exact and saves the LM head
        total = total + checkpoint(_chunk_loss_sum, flat_hidden[start:start + chunk_tokens], lm_head.weight,
                                   lm_head.bias, chunk_labels, use_reentrant=False)
    if not total.requires_grad and flat_hidden.requires_grad:
        # Keep the sum attached to the graph: every rank of a ring must run the model's
        # backward (it carries other ranks' dK/dV), even with nothing to count here.
        total = total + 0.0 * flat_hidden.sum()
    count = (flat_labels != IGNORE_INDEX).sum()
    return total, count


def sequence_parallel_loss(hidden: torch.Tensor, lm_head: torch.nn.Linear, labels: torch.Tensor,
                           group: dist.ProcessGroup | None, chunk_tokens: int = 1024
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This rank's share of the group's mean token loss.

    Args:
        hidden: ``[B, L, hidden]`` this rank's shard of the final hidden states.
        lm_head: the output projection.
        labels: ``[B, L]`` this rank's shard of the shifted labels.
        group: the sequence-parallel group (``None``: the sequence is not sharded).
        chunk_tokens: see :func:`chunked_cross_entropy`.

    Returns:
        ``(loss, group_loss, group_count)``: ``loss = local_sum / group_count``
        to call ``backward()`` on (sum gradients over the group); the group's
        mean loss (detached, the value to log); the group's counted tokens.
        A sample with no counted token has loss 0 and no gradient.
    """
    local_sum, local_count = chunked_cross_entropy(hidden, lm_head, labels, chunk_tokens)
    stats = torch.stack([local_sum.detach(), local_count.to(torch.float32)])
    if group is not None and dist.get_world_size(group) > 1:
        dist.all_reduce(stats, group=group)
    group_sum, group_count = stats[0], stats[1]
    denominator = group_count.clamp(min=1.0)
    return local_sum / denominator, group_sum / denominator, group_count
