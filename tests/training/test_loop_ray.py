"""Two progressive stages of a tiny Llama on Ray Train (2 gloo workers, sp=2), crash and resume.

The first launch fails after step 2 of stage 0 (its ``fail_after_step``); the
relaunch under the same run directory resumes stage 0 from its step-2
checkpoint and runs stage 1; a third launch finds both stages complete and
skips them. An uninterrupted run of stage 0 must give the same losses and
weights as the interrupted one.
"""

import re

import pandas as pd
import pytest
import torch

from ray_lcb.training import TrainingConfig, train

NATIVE_THETA, NATIVE_MAX_POSITIONS = 10_000.0, 32


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, smollm2_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=12,
                         max_position_embeddings=NATIVE_MAX_POSITIONS, tie_word_embeddings=True,
                         rope_parameters={"rope_theta": NATIVE_THETA, "rope_type": "default"},
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    path = tmp_path_factory.mktemp("tiny-llama-chat")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory):
    words = "one two three four five six seven eight nine ten".split()
    long_text = " ".join(words * 12)
    rows = []
    for i in range(6):
        rows.append({"messages": [{"role": "user", "content": f"Count on from {words[i % 5]}."},
                                  {"role": "assistant", "content": " ".join(words[i % 5:])}], "kind": "short"})
        rows.append({"messages": [{"role": "user", "content": long_text},
                                  {"role": "assistant", "content": "That was counting."}], "kind": "long"})
    folder = tmp_path_factory.mktemp("chat-data")
    pd.DataFrame(rows[:8]).to_parquet(folder / "part-0.parquet")
    # A second file without 'kind': length decides (long_min_tokens below).
    pd.DataFrame(rows[8:]).drop(columns=["kind"]).to_parquet(folder / "part-1.parquet")
    return folder


def _config(model_dir, fail: bool, num_stages: int = 2) -> TrainingConfig:
    return TrainingConfig.model_validate({
        "model": str(model_dir), "sequence_parallel": 2, "data_parallel": 1, "cpus_per_worker": 0.5,
        "checkpoint_every": 2, "loss_chunk_tokens": 32, "long_min_tokens": 100, "max_grad_norm": 1.0,
        "stages": [
            {"seq_len": 64, "steps": 4, "learning_rate": 3e-3, "warmup_steps": 1,
             "fail_after_step": 2 if fail else None},
            {"seq_len": 128, "steps": 2, "learning_rate": 3e-3},
        ][:num_stages],
    })


def _losses(lines: list[str], stage: str) -> dict[int, float]:
    pattern = re.compile(rf"\[{stage}\] step (\d+)/\d+ loss ([0-9.]+)")
    return {int(m[1]): float(m[2]) for m in map(pattern.search, lines) if m}


def test_two_stages_crash_resume_and_match_an_uninterrupted_run(ray_session, tiny_model_dir, chat_data, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    run_dir = tmp_path / "run"
    first: list[str] = []
    with pytest.raises(Exception, match="simulated failure after step 2"):
        train(_config(tiny_model_dir, fail=True), chat_data, run_dir, progress=first.append)
    assert sorted(_losses(first, "stage0-64")) == [1, 2]

    second: list[str] = []
    summary = train(_config(tiny_model_dir, fail=True), chat_data, run_dir, progress=second.append)
    assert sorted(_losses(second, "stage0-64")) == [3, 4]  # resumed from the step-2 checkpoint
    assert sorted(_losses(second, "stage1-128")) == [1, 2]

    third: list[str] = []
    assert train(_config(tiny_model_dir, fail=True), chat_data, run_dir, progress=third.append) == summary
    assert sum("already complete, skipping" in line for line in third) == 2 and not _losses(third, "stage1-128")

    # Loss goes down over the run.
    stage0 = {**_losses(first, "stage0-64"), **_losses(second, "stage0-64")}
    assert _losses(second, "stage1-128")[2] < stage0[1] - 0.5

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

    # Stage 0 without the crash: the same losses and the same weights.
    uninterrupted: list[str] = []
    reference = train(_config(tiny_model_dir, fail=False, num_stages=1), chat_data, tmp_path / "reference",
                      progress=uninterrupted.append)
    assert _losses(uninterrupted, "stage0-64") == pytest.approx(stage0, abs=1e-4)
    resumed = AutoModelForCausalLM.from_pretrained(stages[0]["checkpoint"], use_safetensors=True)
    straight = AutoModelForCausalLM.from_pretrained(reference["final_checkpoint"], use_safetensors=True)
    for (name, p), p_ref in zip(resumed.named_parameters(), straight.parameters()):
        assert torch.allclose(p, p_ref, atol=1e-6), name
