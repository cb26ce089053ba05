"""Two progressive stages of a tiny Llama on Ray Train (2 gloo workers, sp=2), crash and resume.

The first launch fails after step 2 of stage 0 (its ``fail_after_step``); the
relaunch under the same run directory resumes stage 0 from its step-2
checkpoint and runs stage 1; a third launch finds both stages complete and
skips them. An uninterrupted run of stage 0 must give the same losses and
weights as the interrupted one.
"""

import pytest
import torch

from ray_lcb.training import train
from tiny_training import NATIVE_THETA, STAGE0, losses, tiny_config


def test_two_stages_crash_resume_and_match_an_uninterrupted_run(ray_session, tiny_model_dir, chat_data,
                                                                 uninterrupted, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    run_dir = tmp_path / "run"
    config = tiny_config(tiny_model_dir, fail_after_step=2, num_stages=2)
    first: list[str] = []
    with pytest.raises(Exception, match="simulated failure after step 2"):
        train(config, chat_data, run_dir, progress=first.append)
    assert sorted(losses(first, STAGE0)) == [1, 2]

    second: list[str] = []
    summary = train(config, chat_data, run_dir, progress=second.append)
    assert sorted(losses(second, STAGE0)) == [3, 4]  # resumed from the step-2 checkpoint
    assert sorted(losses(second, "stage1-128")) == [1, 2]

    third: list[str] = []
    assert train(config, chat_data, run_dir, progress=third.append) == summary
    assert sum("already complete, skipping" in line for line in third) == 2 and not losses(third, "stage1-128")

    # Loss goes down over the run.
    stage0 = {**losses(first, STAGE0), **losses(second, STAGE0)}
    assert losses(second, "stage1-128")[2] < stage0[1] - 0.5

    # RoPE base ×4 per doubling over the native 32 positions; max positions follow the stage length.
    stages = summary["stages"]
    assert [s["seq_len"] for s in stages] == [64, 128]
    assert [s["rope_theta"] for s in stages] == pytest.approx([4 * NATIVE_THETA, 16 * NATIVE_THETA])
    assert [s["max_position_embeddings"] for s in stages] == [64, 128]
    assert stages[0]["truncated_samples"] > 0  # the long samples exceed 64 tokens
    for stage in stages:
        config = AutoConfig.from_pretrained(stage["checkpoint"])
        assert config.rope_parameters["rope_theta"] == pytest.approx(stage["rope_theta"])
        assert config.max_position_embeddings == stage["max_position_embeddings"]
    final = AutoModelForCausalLM.from_pretrained(summary["final_checkpoint"], use_safetensors=True)
    assert final.model.rotary_emb.inv_freq[1].item() == pytest.approx((16 * NATIVE_THETA) ** (-2 / 12), rel=1e-5)

    # Stage 0 without the crash (the session's uninterrupted run): the same losses and the same weights.
    assert losses(uninterrupted["lines"], STAGE0) == pytest.approx(stage0, abs=1e-4)
    resumed = AutoModelForCausalLM.from_pretrained(stages[0]["checkpoint"], use_safetensors=True)
    for name, tensor in resumed.state_dict().items():
        assert torch.allclose(tensor, uninterrupted["weights"][name], atol=1e-6), name
