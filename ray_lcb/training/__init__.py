"""Sequence-parallel long-context training: zigzag ring attention, loss, progressive stages on Ray Train.

Importing this package loads torch only; Ray and transformers are imported by
the functions that need them (``train`` and the model helpers).
"""

from ray_lcb.training.ring_attention import ring_attention
from ray_lcb.training.zigzag import zigzag_shard, zigzag_unshard

__all__ = ["ring_attention", "zigzag_shard", "zigzag_unshard"]
