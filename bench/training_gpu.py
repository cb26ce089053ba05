"""Training on one CUDA GPU: peak memory, tokens/s and MFU of SmolLM2-135M up to long contexts.

Run:  python bench/training_gpu.py [--config-dir DIR] [--lengths 16384,65536,262144]

One process, one GPU, bf16 weights and AdamW, one full training step
(forward, backward, optimizer) per cell, SmolLM2-135M's architecture with
random weights (memory and speed do not depend on the values; the config comes
from the bundled model, or ``--config-dir`` where that is not installed).
Three set-ups at each total sequence length:

* plain transformers: SDPA attention, ``model(labels=...)`` (full logits);
* plain + checkpointing: the same with transformers' gradient checkpointing;
* ray_lcb: :func:`ray_lcb.training.model.load_training_model` (ring-attention
  entry point, which is SDPA on one rank, and gradient checkpointing) and the
  chunked LM head + cross-entropy of :mod:`ray_lcb.training.loss`.

MFU counts model FLOPs only (no recompute) against the bf16 matmul peak of
this GPU measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

CHUNK_TOKENS = 8192  # LM-head chunk: 8192 × 49K vocab × 4 B = 1.6 GB of fp32 logits at a time


def _flops_per_token():
    # Shared with the CPU bench so both count FLOPs the same way.
    spec = importlib.util.spec_from_file_location("cpu_bench", Path(__file__).with_name("training.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.flops_per_token


def matmul_peak_tflops() -> float:
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (start.elapsed_time(end) / 1e3) / 1e12


def save_random_model(config_dir: Path, out_dir: Path) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(config_dir, trust_remote_code=False)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(out_dir)
    return out_dir


def load(setup: str, model_dir: Path):
    from transformers import AutoModelForCausalLM

    from ray_lcb.training.model import load_training_model

    if setup == "ray_lcb":
        return load_training_model(model_dir, dtype="bfloat16").cuda()
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa", dtype=torch.bfloat16,
                                                 use_safetensors=True).cuda()
    model.config.use_cache = False
    if setup == "plain + checkpointing":
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x name
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model


def training_step(setup: str, model, optimizer, seq_len: int) -> None:
    from ray_lcb.training.loss import chunked_cross_entropy
    from ray_lcb.training.model import forward_hidden

    tokens = torch.randint(0, model.config.vocab_size, (1, seq_len + 1), device="cuda")
    input_ids, labels = tokens[:, :-1], tokens[:, 1:]
    if setup == "ray_lcb":
        positions = torch.arange(seq_len, device="cuda").unsqueeze(0)
        hidden = forward_hidden(model, input_ids, positions, None)
        loss_sum, count = chunked_cross_entropy(hidden, model.get_output_embeddings(), labels, CHUNK_TOKENS)
        (loss_sum / count).backward()
    else:
        model(input_ids=input_ids, labels=input_ids).loss.backward()  # transformers shifts the labels
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measure(setup: str, model_dir: Path, lengths: list[int], config, peak: float, flops_per_token) -> list[str]:
    model = load(setup, model_dir)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    training_step(setup, model, optimizer, 4096)  # warm-up: kernels, optimizer state
    cells = []
    for seq_len in lengths:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            training_step(setup, model, optimizer, seq_len)
            torch.cuda.synchronize()
        except torch.cuda.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.empty_cache()
            cells.append(f"{'OOM':>9} {'':>9} {'':>6}")
            print(f"  {setup} {seq_len}: out of memory", flush=True)
            continue
        seconds = time.perf_counter() - started
        peak_gb = torch.cuda.max_memory_allocated() / 2**30
        mfu = flops_per_token(config, seq_len) * seq_len / seconds / 1e12 / peak
        print(f"  {setup} {seq_len}: {peak_gb:.1f} GiB, {seconds:.1f} s, MFU {mfu:.1%}", flush=True)
        cells.append(f"{peak_gb:>9.1f} {seq_len / seconds:>9.0f} {mfu:>6.1%}")
    del model, optimizer
    gc.collect()
    torch.cuda.empty_cache()
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-dir", default=None, help="folder with config.json (default: the bundled SmolLM2)")
    parser.add_argument("--lengths", default="16384,65536,131072,262144")
    parser.add_argument("--setups", default="plain transformers,plain + checkpointing,ray_lcb",
                        help="comma-separated subset of the three set-ups")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/training_gpu.py needs a CUDA GPU")
    from transformers import AutoConfig

    if args.config_dir is None:
        from ray_lcb.models import resolve_model

        args.config_dir = resolve_model("bundled:smollm2-135m-instruct")
    lengths = [int(n) for n in args.lengths.split(",")]
    config = AutoConfig.from_pretrained(args.config_dir)
    peak = matmul_peak_tflops()
    print(f"{torch.cuda.get_device_name()}: bf16 matmul peak {peak:.0f} TFLOP/s (8192^3, measured now)")
    flops_per_token = _flops_per_token()
    setups = args.setups.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_random_model(Path(args.config_dir), Path(tmp) / "model")
        results = {setup: measure(setup, model_dir, lengths, config, peak, flops_per_token) for setup in setups}
    print("\nSmolLM2-135M, one training step (bf16, AdamW) per cell: peak GiB, tokens/s, MFU")
    print(f"{'tokens':>8} | " + " | ".join(f"{setup:^26}" for setup in setups))
    for row, seq_len in enumerate(lengths):
        print(f"{seq_len:>8} | " + " | ".join(results[setup][row] for setup in setups))


if __name__ == "__main__":
    main()
