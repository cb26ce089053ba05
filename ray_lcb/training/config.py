"""Configuration of a training run: the model, the parallel layout and the stages.

``TrainingConfig`` is the ``training:`` section of a preset; ``ray_lcb.config``
composes it and the CLI (``ray-lcb train --config CFG --data DATA --out RUN``)
hands it to :func:`ray_lcb.training.loop.train`. Values are checked when the
config is parsed, before Ray starts: a bad stage fails with the field's name.

:func:`plan_stages` turns the stages into concrete per-stage RoPE bases and
context lengths once the base model's config is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from ray_lcb.configbase import ComponentConfig


class StageConfig(ComponentConfig):
    """One progressive-context stage: train at ``seq_len`` with a (larger) RoPE base."""

    name: str | None = Field(None, description="Stage name, used for its checkpoint folder under the run directory; "
                                               "default 'stage{index}-{seq_len}'.")
    seq_len: int = Field(..., gt=0, description="Maximum tokens per training sequence in this stage (longer samples "
                                                "are truncated with a counted warning). Must be a multiple of 2 × "
                                                "sequence_parallel.")
    steps: int = Field(..., gt=0, description="Optimizer steps in this stage.")
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate of AdamW.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps from 0 to learning_rate at the stage start.")
    schedule: Literal["constant", "cosine"] = Field("constant", description="Learning rate after warm-up: constant "
                                                    "(EasyContext) or cosine decay to 10% of learning_rate.")
    rope_theta: float | None = Field(None, gt=0, description="RoPE base for this stage. Default: the previous base × "
                                                             "4 per doubling of the context length over the longest "
                                                             "length so far (the model's max_position_embeddings to "
                                                             "start with), i.e. theta × 4 ** log2(len_new / len_old).")
    fail_after_step: int | None = Field(None, gt=0, description="Testing aid: raise right after this (1-based) step of "
                                                                "the stage, unless the run resumed at or after it; "
                                                                "exercises crash-and-relaunch resume.")
    kill_worker_after_step: int | None = Field(None, gt=0, description="Testing aid: during the step after this "
                                               "(1-based) step, after its backward and before the optimizer step, "
                                               "the last worker kills its own process (SIGKILL), unless the run "
                                               "resumed at or after this step; with max_failures >= 1 Ray Train "
                                               "restarts the workers from the latest checkpoint. Must be a multiple "
                                               "of checkpoint_every and less than steps.")


class TrainingConfig(ComponentConfig):
    """A sequence-parallel, progressive-context training run on Ray Train."""

    model: str = Field("bundled:smollm2-135m-instruct", description="Model reference resolved with "
                       "ray_lcb.models.resolve_model: bundled:NAME, a local HF folder or a hub id.")
    stages: list[StageConfig] = Field(..., min_length=1, description="Progressive stages in order; each starts from "
                                      "the previous stage's final weights, with strictly increasing seq_len.")
    sequence_parallel: int = Field(1, ge=1, description="Ranks that share one sequence (zigzag ring attention group).")
    data_parallel: int = Field(1, ge=1, description="Sequence-parallel groups that train on different samples; "
                                                    "gradients are averaged across them.")
    num_workers: int | None = Field(None, ge=1, description="Total Ray Train workers; if set it must equal "
                                                            "data_parallel × sequence_parallel (the default).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="cuda: one GPU per worker and NCCL; cpu: gloo; "
                                                   "auto: cuda when the Ray cluster has a GPU per worker.")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per worker (fractions allowed); also sets "
                                                          "the worker's torch threads (at least 1).")
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="Parameter and compute dtype of the model; "
                                                  "attention merges and the loss run in fp32 either way.")
    gradient_checkpointing: bool = Field(True, description="Recompute each decoder layer in backward instead of "
                                                           "keeping its activations.")
    loss_chunk_tokens: int = Field(1024, ge=1, description="Tokens per chunk of the LM head + cross-entropy; bounds "
                                                           "the logits memory to chunk × vocab.")
    grad_accum_steps: int = Field(1, ge=1, description="Samples per sequence-parallel group per optimizer step.")
    long_min_tokens: int = Field(8192, ge=1, description="Without a 'kind' column, a sample with at least this many "
                                                         "tokens is 'long' (loss on all tokens), else 'short' "
                                                         "(loss on assistant tokens).")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay.")
    adam_betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the global gradient norm to this; null: no clip.")
    seed: int = Field(0, description="Seed of the sample order (per stage and epoch) and of torch.")
    checkpoint_every: int = Field(50, ge=1, description="Save a resumable checkpoint every this many steps (and "
                                                        "always at the end of a stage).")
    keep_checkpoints: int = Field(2, ge=1, description="Checkpoints kept per stage (the newest ones).")
    max_failures: int = Field(0, ge=0, description="Worker failures Ray Train recovers from automatically (from "
                                                   "the latest checkpoint) before the run fails.")

    @model_validator(mode="after")
    def _check_layout(self) -> "TrainingConfig":
        world = self.data_parallel * self.sequence_parallel
        if self.num_workers is not None and self.num_workers != world:
            raise ValueError(f"num_workers ({self.num_workers}) must equal data_parallel × sequence_parallel "
                             f"({self.data_parallel} × {self.sequence_parallel} = {world}); fix one of the three")
        multiple = 2 * self.sequence_parallel
        for i, stage in enumerate(self.stages):
            if stage.seq_len % multiple:
                raise ValueError(f"stages[{i}].seq_len ({stage.seq_len}) must be a multiple of 2 × sequence_parallel "
                                 f"= {multiple}; use {-(-stage.seq_len // multiple) * multiple}")
            if i and stage.seq_len <= self.stages[i - 1].seq_len:
                raise ValueError(f"stages[{i}].seq_len ({stage.seq_len}) must be greater than stages[{i - 1}].seq_len "
                                 f"({self.stages[i - 1].seq_len}): stages grow the context")
            kill = stage.kill_worker_after_step
            if kill is not None and (kill >= stage.steps or kill % self.checkpoint_every):
                # Otherwise the restart resumes before the kill step and the worker kills itself again.
                raise ValueError(f"stages[{i}].kill_worker_after_step ({kill}) must be less than steps ({stage.steps}) "
                                 f"and a multiple of checkpoint_every ({self.checkpoint_every}), so that a checkpoint "
                                 "exists at that step and a step follows it")
        names = [stage_name(i, s) for i, s in enumerate(self.stages)]
        if len(set(names)) != len(names):
            raise ValueError(f"stages[].name must be unique, got {names}")
        return self

    @property
    def world_size(self) -> int:
        return self.data_parallel * self.sequence_parallel


def stage_name(index: int, stage: StageConfig) -> str:
    return stage.name or f"stage{index}-{stage.seq_len}"


@dataclass(frozen=True)
class StagePlan:
    """A stage with its concrete RoPE base and context length."""

    index: int
    name: str
    stage: StageConfig
    rope_theta: float
    max_position_embeddings: int


def plan_stages(stages: list[StageConfig], base_rope_theta: float, base_max_positions: int) -> list[StagePlan]:
    """Resolve each stage's RoPE base and ``max_position_embeddings``.

    The context so far starts at the model's ``max_position_embeddings``; a
    stage longer than it multiplies the base by 4 per doubling
    (``theta × 4 ** log2(seq_len / context)``, reference/paper.md §6) unless the
    stage sets ``rope_theta``. A stage never shrinks the base or the context.
    """
    theta, context = float(base_rope_theta), int(base_max_positions)
    plans = []
    for index, stage in enumerate(stages):
        growth = max(1.0, stage.seq_len / context)
        theta = stage.rope_theta if stage.rope_theta is not None else theta * 4 ** math.log2(growth)
        context = max(context, stage.seq_len)
        plans.append(StagePlan(index, stage_name(index, stage), stage, theta, context))
    return plans
