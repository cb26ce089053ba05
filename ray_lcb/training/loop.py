"""Progressive-context training on Ray Train: one ``TorchTrainer`` run per stage.

Entry point: ``ray-lcb train --config CFG --data DATA_DIR --out RUN_DIR``, which
calls :func:`train`. For each stage (config.py) the driver starts a Ray Train V2
``TorchTrainer`` with ``data_parallel × sequence_parallel`` workers (gloo on
CPU, NCCL on GPU) named after the stage under ``RUN_DIR``; a relaunch with the
same ``RUN_DIR`` skips finished stages (``stage_summary.json``) and resumes the
current one from ``ray.train.get_checkpoint()``. Within one launch, Ray Train
restarts a failed worker group (a crashed or killed worker) up to
``max_failures`` times, and the new workers resume the same way from the latest
reported checkpoint. A damaged latest checkpoint is reported by file name
before any worker starts (and again by a worker that meets one on a restart).

Each worker (:func:`train_loop_per_worker`), top to bottom:

1. join its sequence-parallel ring (parallel.py) and load the model with ring
   attention and the stage's RoPE base (model.py) from the previous stage's
   final checkpoint, or from its own latest checkpoint when resuming;
2. per step, for each accumulated sample: read the sample the seeded order
   assigns to its data-parallel group (data.py), zigzag-shard ids, global
   positions and shifted labels, forward, chunked loss (loss.py), backward;
3. average gradients, clip, AdamW step; rank 0 streams a progress line;
4. every ``checkpoint_every`` steps and at the end, rank 0 writes a checkpoint
   (checkpoint.py) and every rank calls ``ray.train.report``.

The step, not any iterator state, decides the samples, the learning rate and
the torch seed, so a resumed run repeats exactly what the uninterrupted run
would have done.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import torch

from ray_lcb.training.checkpoint import check_checkpoint, load_optimizer_state, save_checkpoint
from ray_lcb.training.config import StageConfig, StagePlan, TrainingConfig, plan_stages
from ray_lcb.training.data import ChatParquetSource, Example, build_example, sample_order, tokenize_chat
from ray_lcb.training.loss import sequence_parallel_loss
from ray_lcb.training.model import forward_hidden, get_rope_theta, load_training_model
from ray_lcb.training.parallel import average_gradients, build_sequence_parallel_group
from ray_lcb.training.zigzag import zigzag_shard

STAGE_SUMMARY = "stage_summary.json"


# ---------------------------------------------------------------- driver


def train(config: TrainingConfig, data_dir: str | Path, out_dir: str | Path, *,
          progress: Callable[[str], None] = print) -> dict:
    """Run (or resume) every stage of ``config`` on the connected Ray cluster.

    Args:
        config: the training section of a preset.
        data_dir: folder of Parquet files with a ``messages`` column (data.py).
        out_dir: the run directory; reusing it resumes the run.
        progress: called with one line per step and per stage event.

    Returns:
        ``{"run_dir", "model", "stages": [{name, seq_len, rope_theta,
        max_position_embeddings, steps, final_loss, truncated_samples,
        tokens_per_s, checkpoint}], "final_checkpoint"}`` (also written to
        ``out_dir/summary.json``).
    """
    import ray
    from transformers import AutoConfig

    from ray_lcb.models import resolve_model

    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir).resolve()
    check_data_dir(data_dir)
    model_path = resolve_model(config.model)
    base = AutoConfig.from_pretrained(model_path, trust_remote_code=False)
    plans = plan_stages(config.stages, get_rope_theta(base), base.max_position_embeddings)
    if not ray.is_initialized():
        ray.init()
    use_gpu = _use_gpu(config)
    out_dir.mkdir(parents=True, exist_ok=True)

    init_path, summaries = str(model_path), []
    for plan in plans:
        summary_path = out_dir / plan.name / STAGE_SUMMARY
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
            if summary["stage_config"] != _comparable(plan.stage):
                raise ValueError(f"stages[{plan.index}] differs from the finished stage '{plan.name}' in '{out_dir}'; "
                                 "use a new --out directory (or the original settings) to resume")
            progress(f"[{plan.name}] already complete, skipping (checkpoint {summary['checkpoint']})")
        else:
            progress(f"[{plan.name}] seq_len {plan.stage.seq_len}, rope_theta {plan.rope_theta:g}, "
                     f"{plan.stage.steps} steps, {config.world_size} workers (sp={config.sequence_parallel}, "
                     f"dp={config.data_parallel}, {'cuda' if use_gpu else 'cpu'})")
            summary = _run_stage(config, plan, init_path, data_dir, out_dir, use_gpu, progress)
            summary_path.write_text(json.dumps(summary, indent=2))
            truncated = summary["truncated_samples"]
            progress(f"[{plan.name}] done: loss {summary['final_loss']:.4f}, checkpoint {summary['checkpoint']}"
                     + (f"; {truncated} samples were truncated to {plan.stage.seq_len} tokens" if truncated else ""))
        init_path = summary["checkpoint"]
        summaries.append(summary)

    result = {"run_dir": str(out_dir), "model": config.model,
              "stages": [{k: v for k, v in s.items() if k != "stage_config"} for s in summaries],
              "final_checkpoint": init_path}
    (out_dir / "summary.json").write_text(json.dumps(result, indent=2))
    return result


def check_data_dir(data_dir: Path) -> None:
    """Fail before Ray starts when the data folder is missing or has no usable Parquet."""
    import pyarrow.parquet as pq

    files = sorted(data_dir.rglob("*.parquet")) if data_dir.is_dir() else []
    if not files:
        raise ValueError(f"data: no .parquet files under '{data_dir}'; point --data at the synthesis output folder")
    for path in files:
        if "messages" not in pq.read_schema(path).names:
            raise ValueError(f"data: '{path}' has no 'messages' column")


def _use_gpu(config: TrainingConfig) -> bool:
    import ray

    if config.device != "auto":
        return config.device == "cuda"
    return ray.cluster_resources().get("GPU", 0) >= config.world_size


def _comparable(stage: StageConfig) -> dict:
    """The settings that define a stage's result (the testing hooks are not)."""
    return stage.model_dump(exclude={"fail_after_step", "kill_worker_after_step"})


def _run_stage(config: TrainingConfig, plan: StagePlan, init_path: str, data_dir: Path, out_dir: Path,
               use_gpu: bool, progress: Callable[[str], None]) -> dict:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    latest = _latest_checkpoint(out_dir / plan.name)
    if latest is not None:  # fail here, by file name, rather than in every worker of every retry
        check_checkpoint(latest)
    messages = Queue(actor_options={"num_cpus": 0})
    resources = {"CPU": config.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": config, "plan": plan, "init_path": init_path, "data_dir": str(data_dir),
                           "progress": messages},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=config.world_size, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(name=plan.name, storage_path=str(out_dir),
                             failure_config=FailureConfig(max_failures=config.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=config.keep_checkpoints)),
    )
    # fit() blocks (and wants the main thread); a helper thread relays the workers' lines.
    stop = threading.Event()
    relay = threading.Thread(target=_relay_progress, args=(messages, stop, progress), daemon=True)
    relay.start()
    try:
        result = trainer.fit()
    finally:
        stop.set()
        relay.join()
    metrics = result.metrics or {}
    return {"name": plan.name, "seq_len": plan.stage.seq_len, "rope_theta": plan.rope_theta,
            "max_position_embeddings": plan.max_position_embeddings, "steps": plan.stage.steps,
            "final_loss": metrics.get("loss"), "truncated_samples": metrics.get("truncated_samples"),
            "tokens_per_s": metrics.get("tokens_per_s"), "checkpoint": result.checkpoint.path,
            "stage_config": _comparable(plan.stage)}


def _latest_checkpoint(stage_dir: Path) -> str | None:
    """The checkpoint Ray Train resumes the run in ``stage_dir`` from, or None when there is none yet."""
    from ray.train import Result

    if not stage_dir.is_dir():
        return None
    try:
        result = Result.from_path(stage_dir)
    except RuntimeError:  # no checkpoint manager snapshot: the earlier launch reported nothing
        return None
    return result.checkpoint.path if result.checkpoint is not None else None


def _relay_progress(messages, stop: threading.Event, progress: Callable[[str], None]) -> None:
    import queue

    while True:
        try:
            progress(messages.get(timeout=0.5))
        except queue.Empty:
            if stop.is_set():
                return
        except Exception:  # noqa: BLE001 -- the queue actor is gone: the run is over
            return


# ---------------------------------------------------------------- worker


def learning_rate_at(step: int, stage: StageConfig) -> float:
    """Learning rate of 0-based ``step``: linear warm-up, then constant or cosine to 10%."""
    if step < stage.warmup_steps:
        return stage.learning_rate * (step + 1) / stage.warmup_steps
    if stage.schedule == "cosine":
        done = (step - stage.warmup_steps) / max(1, stage.steps - stage.warmup_steps)
        return stage.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))
    return stage.learning_rate


def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train worker function for one stage (see the module docstring)."""
    import ray.train
    import ray.train.torch
    import torch.distributed as dist
    from transformers import AutoTokenizer

    config: TrainingConfig = loop_config["config"]
    plan: StagePlan = loop_config["plan"]
    stage, sp, dp = plan.stage, config.sequence_parallel, config.data_parallel
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    dp_rank, sp_rank = divmod(rank, sp)
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(config.cpus_per_worker)))
    group = build_sequence_parallel_group(rank, world, sp, device)
    torch.manual_seed(config.seed)

    checkpoint = ray.train.get_checkpoint()
    start_step, truncated = 0, 0
    progress = loop_config["progress"]
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as resume_dir:
        state = check_checkpoint(resume_dir) if resume_dir else None
        source_path = resume_dir or loop_config["init_path"]
        model = load_training_model(source_path, dtype=config.dtype, rope_theta=plan.rope_theta,
                                    max_position_embeddings=plan.max_position_embeddings,
                                    gradient_checkpointing=config.gradient_checkpointing).to(device)
        tokenizer = AutoTokenizer.from_pretrained(source_path, trust_remote_code=False)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=stage.learning_rate, betas=config.adam_betas,
                                      weight_decay=config.weight_decay)
        if state is not None:
            if state["stage"] != plan.name or state.get("stage_config") != _comparable(stage):
                raise ValueError(f"the latest checkpoint of '{plan.name}' was written with other stage settings; "
                                 "use a new --out directory to change them")
            start_step, truncated = state["step"], state.get("truncated_samples", 0)
            load_optimizer_state(resume_dir, optimizer, device)
            if rank == 0:
                progress.put(f"[{plan.name}] resuming after step {start_step} from checkpoint {checkpoint.path}")

    source = ChatParquetSource(loop_config["data_dir"])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    per_step = config.grad_accum_steps * dp
    order = sample_order(len(source), stage.steps * per_step, seed=config.seed, stage_index=plan.index)
    lm_head = model.get_output_embeddings()
    loss = float("nan")
    tokens_per_s: list[float] = []

    for step in range(start_step, stage.steps):
        started = time.perf_counter()
        # Seeded by the step, like the samples: anything random in a step (e.g. dropout) repeats after a resume.
        torch.manual_seed(hash((config.seed, plan.index, step)))
        for param_group in optimizer.param_groups:
            param_group["lr"] = learning_rate_at(step, stage)
        optimizer.zero_grad(set_to_none=True)
        local_loss, local_tokens, local_truncated = 0.0, 0, 0
        for micro in range(config.grad_accum_steps):
            index = int(order[(step * config.grad_accum_steps + micro) * dp + dp_rank])
            example = _example(source, index, tokenizer, config, stage.seq_len, pad_id)
            input_ids, position_ids, labels = (zigzag_shard(t, sp_rank, sp).to(device)
                                               for t in (example.input_ids, example.position_ids, example.labels))
            hidden = forward_hidden(model, input_ids, position_ids, group)
            share, sample_loss, _ = sequence_parallel_loss(hidden, lm_head, labels, group, config.loss_chunk_tokens)
            (share / config.grad_accum_steps).backward()
            local_loss += sample_loss.item() / config.grad_accum_steps
            local_tokens += example.num_tokens
            local_truncated += int(example.truncated)
        if stage.kill_worker_after_step == step and start_step < step and rank == world - 1:
            _kill_this_worker(f"[{plan.name}] testing aid: worker rank {rank} (pid {os.getpid()}) kills itself in "
                              f"step {step + 1} (stages[{plan.index}].kill_worker_after_step)", progress)
        average_gradients(params, dp)
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()

        # Every rank of a ring holds its ring's values: sum over the world, then undo the sp-fold count.
        stats = torch.tensor([local_loss, local_tokens, local_truncated], dtype=torch.float64, device=device)
        if world > 1:
            dist.all_reduce(stats)
        loss, tokens, truncated = stats[0].item() / world, stats[1].item() / sp, truncated + round(stats[2].item() / sp)
        elapsed = time.perf_counter() - started
        tokens_per_s.append(tokens / elapsed)
        done = step + 1
        if rank == 0:
            progress.put(f"[{plan.name}] step {done}/{stage.steps} loss {loss:.4f} tokens/s {tokens / elapsed:,.0f} "
                         f"lr {learning_rate_at(step, stage):.2e}" + (f" truncated {truncated}" if truncated else ""))
        if done % config.checkpoint_every == 0 or done == stage.steps:
            _report(model, tokenizer, optimizer, rank, plan, done, loss, truncated, tokens_per_s)
        if stage.fail_after_step == done:
            raise RuntimeError(f"simulated failure after step {done} of '{plan.name}' (stages[{plan.index}]"
                               ".fail_after_step); relaunch with the same --out to resume")
    if start_step >= stage.steps:  # relaunched after the stage finished but before the driver recorded it
        _report(model, tokenizer, None, rank, plan, stage.steps, loss, truncated, tokens_per_s)


def _kill_this_worker(message: str, progress) -> None:
    """The ``kill_worker_after_step`` testing aid: SIGKILL this worker process, as a crash or the OOM killer would.

    Ray Train registers a reported checkpoint when its controller next polls the
    workers, so a worker that died right after ``report`` could lose it and the
    restart would resume earlier and kill again. Waiting for the controller first
    makes the restart resume from the checkpoint just before the kill.
    """
    import ray.train

    ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)
    progress.put(message)
    os.kill(os.getpid(), signal.SIGKILL)


def _example(source: ChatParquetSource, index: int, tokenizer, config: TrainingConfig, seq_len: int,
             pad_id: int) -> Example:
    """Sample ``index`` tokenized, labelled (long or short rule) and padded for the rings."""
    messages, kind = source[index]
    ids, assistant_mask = tokenize_chat(tokenizer, messages)
    kind = kind or ("long" if len(ids) >= config.long_min_tokens else "short")
    return build_example(ids, assistant_mask, kind, seq_len=seq_len, multiple=2 * config.sequence_parallel,
                         pad_id=pad_id)


def _report(model, tokenizer, optimizer, rank: int, plan: StagePlan, done: int, loss: float, truncated: int,
            tokens_per_s: list[float]) -> None:
    """Rank 0 writes a checkpoint; every rank reports (``ray.train.report`` is a barrier)."""
    import ray.train

    complete = done == plan.stage.steps
    metrics = {"stage": plan.name, "step": done, "loss": loss, "truncated_samples": truncated,
               "tokens_per_s": sum(tokens_per_s) / len(tokens_per_s) if tokens_per_s else None}
    state = {"stage": plan.name, "step": done, "steps": plan.stage.steps, "complete": complete, "loss": loss,
             "rope_theta": plan.rope_theta, "truncated_samples": truncated,
             "stage_config": _comparable(plan.stage)}
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:
            from ray.train import Checkpoint

            # A finished stage needs no optimizer state: the next stage starts a fresh AdamW.
            save_checkpoint(folder, model, tokenizer, None if complete else optimizer, state)
            checkpoint = Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"step-{done:06d}")
