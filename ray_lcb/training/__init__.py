"""Sequence-parallel long-context training: zigzag ring attention, loss, progressive stages on Ray Train.

Importing this package loads torch, numpy and pydantic only; Ray and
transformers are imported by the functions that need them. See README.md in
this folder for the data flow.
"""

from ray_lcb.training.config import StageConfig, TrainingConfig
from ray_lcb.training.loop import train
from ray_lcb.training.ring_attention import ring_attention
from ray_lcb.training.zigzag import zigzag_shard, zigzag_unshard

__all__ = ["StageConfig", "TrainingConfig", "ring_attention", "train", "zigzag_shard", "zigzag_unshard"]
