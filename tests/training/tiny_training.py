"""The tiny Llama run shared by the Ray Train tests: model, chat data, config, progress parsing.

One stage of 4 steps at 64 tokens (2 gloo workers, sp=2, a checkpoint every
step) is the unit every fault test compares against an uninterrupted run of;
the session fixture ``uninterrupted`` in conftest.py trains it once.
"""

import re

import pandas as pd
import torch

from ray_lcb.training import TrainingConfig

NATIVE_THETA, NATIVE_MAX_POSITIONS = 10_000.0, 32
STAGE0 = "stage0-64"


def make_tiny_model(path, smollm2_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=12,
                         max_position_embeddings=NATIVE_MAX_POSITIONS, tie_word_embeddings=True,
                         rope_parameters={"rope_theta": NATIVE_THETA, "rope_type": "default"},
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_chat_data(folder):
    words = "one two three four five six seven eight nine ten".split()
    long_text = " ".join(words * 12)
    rows = []
    for i in range(6):
        rows.append({"messages": [{"role": "user", "content": f"Count on from {words[i % 5]}."},
                                  {"role": "assistant", "content": " ".join(words[i % 5:])}], "kind": "short"})
        rows.append({"messages": [{"role": "user", "content": long_text},
                                  {"role": "assistant", "content": "That was counting."}], "kind": "long"})
    pd.DataFrame(rows[:8]).to_parquet(folder / "part-0.parquet")
    # A second file without 'kind': length decides (long_min_tokens below).
    pd.DataFrame(rows[8:]).drop(columns=["kind"]).to_parquet(folder / "part-1.parquet")
    return folder


def tiny_config(model_dir, *, fail_after_step=None, kill_worker_after_step=None, max_failures=0,
                num_stages=1) -> TrainingConfig:
    """Stage 0 (and optionally a second stage at 128 tokens); the fault fields only change when it stops."""
    return TrainingConfig.model_validate({
        "model": str(model_dir), "sequence_parallel": 2, "data_parallel": 1, "cpus_per_worker": 0.5,
        "checkpoint_every": 1, "keep_checkpoints": 2, "loss_chunk_tokens": 32, "long_min_tokens": 100,
        "max_grad_norm": 1.0, "max_failures": max_failures,
        "stages": [
            {"seq_len": 64, "steps": 4, "learning_rate": 3e-3, "warmup_steps": 1,
             "fail_after_step": fail_after_step, "kill_worker_after_step": kill_worker_after_step},
            {"seq_len": 128, "steps": 2, "learning_rate": 3e-3},
        ][:num_stages],
    })


def losses(lines: list[str], stage: str) -> dict[int, float]:
    pattern = re.compile(rf"\[{stage}\] step (\d+)/\d+ loss ([0-9.]+)")
    return {int(m[1]): float(m[2]) for m in map(pattern.search, lines) if m}
