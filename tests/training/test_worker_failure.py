"""Training under faults: a worker killed mid-stage, and a damaged checkpoint.

A tiny Llama trains one stage on Ray Train (2 gloo workers, sp=2, a checkpoint
every step). In the faulted run the last worker SIGKILLs its own process in the
middle of step 3 (``kill_worker_after_step: 2``); with ``max_failures: 1`` Ray
Train restarts the worker group inside the same ``train()`` call, the new
workers resume from the step-2 checkpoint, and the final weights must equal an
uninterrupted run's. A truncated file in the latest checkpoint must be reported
by name before any worker starts.
"""

import re
import shutil

import pytest
import torch

from ray_lcb.training import TrainingConfig, train
from ray_lcb.training.checkpoint import CheckpointError, check_checkpoint
from tiny_training import STAGE0, losses, tiny_config


def _weights(checkpoint: str) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(checkpoint, use_safetensors=True).state_dict()


def test_killed_worker_restarts_from_the_latest_checkpoint_and_matches_an_uninterrupted_run(
        ray_session, tiny_model_dir, chat_data, uninterrupted, tmp_path):
    lines: list[str] = []
    config = tiny_config(tiny_model_dir, kill_worker_after_step=2, max_failures=1)
    summary = train(config, chat_data, tmp_path / "run", progress=lines.append)

    # The worker really died mid-step 3, and a new worker group resumed after step 2 within the same train().
    kills = [i for i, line in enumerate(lines) if re.search(r"worker rank 1 \(pid \d+\) kills itself in step 3", line)]
    resumes = [i for i, line in enumerate(lines) if "resuming after step" in line]
    assert len(kills) == 1 and len(resumes) == 1 and kills[0] < resumes[0], lines
    assert re.search(r"resuming after step 2 from checkpoint \S*step-000002$", lines[resumes[0]])
    steps = [int(m[1]) for m in (re.search(rf"\[{STAGE0}\] step (\d+)/4 loss", line) for line in lines) if m]
    assert steps == [1, 2, 3, 4]  # step 3 of the killed attempt never finished; nothing was repeated after it

    # Same samples, learning rates and optimizer state after the restart: same losses, same weights.
    assert losses(lines, STAGE0) == pytest.approx(losses(uninterrupted["lines"], STAGE0), abs=1e-4)
    assert summary["stages"][0]["steps"] == 4
    restarted = _weights(summary["final_checkpoint"])
    assert restarted.keys() == uninterrupted["weights"].keys()
    for name, tensor in restarted.items():
        assert (tensor - uninterrupted["weights"][name]).abs().max().item() <= 1e-5, name


@pytest.mark.parametrize("file_name", ["model.safetensors", "train_state.json"])
def test_damaged_latest_checkpoint_is_reported_by_file_name(
        ray_session, tiny_model_dir, chat_data, uninterrupted, file_name):
    # The driver died after the last report, before recording the stage: a relaunch resumes from step 4.
    stage_dir = uninterrupted["run_dir"] / STAGE0
    summary_path, damaged = stage_dir / "stage_summary.json", stage_dir / "step-000004" / file_name
    summary_text, content = summary_path.read_text(), damaged.read_bytes()
    summary_path.unlink()
    damaged.write_bytes(content[: len(content) // 2])
    try:
        with pytest.raises(CheckpointError) as caught:
            train(tiny_config(tiny_model_dir), chat_data, uninterrupted["run_dir"],
                  progress=lambda line: None)
    finally:
        damaged.write_bytes(content)
        summary_path.write_text(summary_text)
    assert f"checkpoint file '{damaged}' is damaged" in str(caught.value)
    assert "new --out directory" in str(caught.value)


@pytest.mark.parametrize("file_name, reason", [
    ("model.safetensors", "but its header indexes"),
    ("optimizer.pt", "not a complete torch.save archive"),
    ("train_state.json", "not valid JSON"),
    ("config.json", "not valid JSON"),
])
def test_check_checkpoint_names_a_truncated_file(uninterrupted, tmp_path, file_name, reason):
    # step-000003 is a mid-stage checkpoint, so it also holds the optimizer state.
    folder = shutil.copytree(uninterrupted["run_dir"] / STAGE0 / "step-000003", tmp_path / "step-000003")
    assert check_checkpoint(folder)["step"] == 3
    path = folder / file_name
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=rf"checkpoint file '{re.escape(str(path))}' is damaged \(.*{reason}"):
        check_checkpoint(folder)


@pytest.mark.parametrize("kill, message", [
    (3, r"stages\[0\]\.kill_worker_after_step \(3\) must be less than steps \(3\)"),
    (1, r"stages\[0\]\.kill_worker_after_step \(1\) must be .* a multiple of checkpoint_every \(2\)"),
])
def test_kill_worker_after_step_must_follow_a_checkpoint_and_precede_a_step(kill, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig.model_validate({"sequence_parallel": 2, "checkpoint_every": 2, "max_failures": 1,
                                       "stages": [{"seq_len": 64, "steps": 3, "kill_worker_after_step": kill}]})
