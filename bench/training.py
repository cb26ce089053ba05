"""Training benchmark: memory per sequence-parallel worker, longest trainable sequence, throughput.

Run:  python bench/training.py            (about 10 minutes on 2 idle CPU cores)
      python bench/training.py --quick    (shorter sequences, a smoke run)

Every measurement is one training step of SmolLM2-135M
(``bundled:smollm2-135m-instruct``) in fresh processes started by
``ray_lcb.training.launch.run_local_group`` (gloo, one torch thread each), so
each process's peak RSS is its own. Three tables, all ratios from this run:

(a) peak memory per worker at one total sequence length for 1, 2 and 4
    sequence-parallel workers (forward + backward). "step" is the peak minus
    the resident size just before the step, i.e. what the sequence costs; the
    replicated weights and gradients are the rest.
(b) the longest sequence (doubling search) that takes a full training step
    (forward, backward, AdamW) within a per-process memory cap (peak RSS; a
    hard ``setrlimit(RLIMIT_DATA)`` at 1.5 × the cap aborts runs far over it)
    for plain transformers (SDPA attention, full logits,
    ``model(labels=...)``), for our path on 1 worker (ring attention entry
    point + chunked loss) and on 2 sequence-parallel workers.
(c) tokens/s and model FLOP utilisation of a full training step (best of
    two) for the same three set-ups, against the fp32 matmul peak of one
    thread measured in this run.

Gradient checkpointing is off everywhere, so the three set-ups do the same
compute and the memory difference is the sharding and the chunked loss.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GUARD_FACTOR = 1.5  # table (b): hard RLIMIT_DATA at 1.5 × the cap aborts runs far over it
MEMORY_ERRORS = ("can't allocate memory", "Cannot allocate memory", "MemoryError", "out of memory", "bad_alloc",
                 "died with exit code")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _training_step(rank: int, world_size: int, spec: dict) -> dict:
    """One training step in this process; returns memory and time (runs inside run_local_group)."""
    import torch

    from ray_lcb.training.loss import sequence_parallel_loss
    from ray_lcb.training.model import forward_hidden, load_training_model
    from ray_lcb.training.parallel import average_gradients, build_sequence_parallel_group
    from ray_lcb.training.zigzag import zigzag_shard

    if spec["mode"] == "plain":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(spec["model_path"], attn_implementation="sdpa",
                                                     dtype=torch.float32, use_safetensors=True)
        model.train()
    else:
        model = load_training_model(spec["model_path"], gradient_checkpointing=False)
    group = build_sequence_parallel_group(rank, world_size, world_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=False) if spec["optimizer"] else None
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.config.vocab_size, (1, spec["seq_len"] + 1), generator=generator)
    input_ids, labels = tokens[:, :-1], tokens[:, 1:]

    # Weights may still be backed by the safetensors file and gradients are created lazily: make
    # both resident now, so the step's memory is what the sequence costs (same for every set-up).
    with torch.no_grad():
        for param in model.parameters():
            param.data = param.data.clone()
            param.grad = torch.zeros_like(param)
    soft_limit, hard_limit = resource.getrlimit(resource.RLIMIT_DATA)
    if spec["cap_mb"]:
        # A guard above the cap stops runs that are clearly over it early; whether a run fits is judged
        # on its peak RSS, because the data segment also counts reserved, untouched memory.
        guard = int(spec["cap_mb"] * GUARD_FACTOR * 2**20)
        resource.setrlimit(resource.RLIMIT_DATA, (guard, hard_limit))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS mark (VmHWM, ru_maxrss) to the current size
    before = _rss_mb()
    step_seconds = []
    try:
        for _ in range(spec.get("steps", 1)):
            started = time.perf_counter()
            if spec["mode"] == "plain":
                # transformers shifts `labels` itself; pass the unshifted ids.
                model(input_ids=input_ids, labels=input_ids).loss.backward()
            else:
                positions = torch.arange(spec["seq_len"]).unsqueeze(0)
                ids, pos, lab = (zigzag_shard(t, rank, world_size) for t in (input_ids, positions, labels))
                hidden = forward_hidden(model, ids, pos, group)
                share, _, _ = sequence_parallel_loss(hidden, model.get_output_embeddings(), lab, group,
                                                     spec["chunk_tokens"])
                share.backward()
                average_gradients(list(model.parameters()), 1)
            if optimizer is not None:
                optimizer.step()
            step_seconds.append(time.perf_counter() - started)
    except (RuntimeError, MemoryError) as err:
        resource.setrlimit(resource.RLIMIT_DATA, (soft_limit, hard_limit))  # room to report the failure
        if any(marker in str(err) for marker in MEMORY_ERRORS) or isinstance(err, MemoryError):
            raise MemoryError(f"over the memory guard: {err}") from None
        raise
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"before_mb": before, "peak_mb": peak, "step_s": min(step_seconds)}


def _matmul_peak_gflops(rank: int, world_size: int) -> float:
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = float("inf")
    for _ in range(20):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * 1024**3 / best / 1e9


def run(spec: dict, world_size: int) -> dict | None:
    """One step on ``world_size`` processes; ``None`` if a process went over ``spec["cap_mb"]``."""
    from ray_lcb.training.launch import run_local_group

    try:
        per_rank = run_local_group(_training_step, world_size, spec, timeout_s=900)
    except RuntimeError as err:
        if spec["cap_mb"] and any(marker in str(err) for marker in MEMORY_ERRORS):
            return None
        raise
    result = {"peak_mb": max(r["peak_mb"] for r in per_rank), "before_mb": max(r["before_mb"] for r in per_rank),
              "step_s": max(r["step_s"] for r in per_rank)}
    if spec["cap_mb"] and result["peak_mb"] > spec["cap_mb"]:
        return None
    return result


def flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per token: 6 × matmul parameters (LM head included) + causal attention.

    Attention: QK^T and PV are 2 × 2 × seq × heads × head_dim multiply-adds per
    token and layer in forward, halved by the causal mask, ×3 for forward+backward.
    """
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    q_dim, kv_dim = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    per_layer = config.hidden_size * (2 * q_dim + 2 * kv_dim) + 3 * config.hidden_size * config.intermediate_size
    matmul_params = config.num_hidden_layers * per_layer + config.vocab_size * config.hidden_size
    attention = 6 * config.num_hidden_layers * seq_len * q_dim
    return 6 * matmul_params + attention


def memory_per_worker(base: dict, seq_len: int, worker_counts: list[int]) -> None:
    """Table (a)."""
    print(f"\n(a) peak memory per worker, SmolLM2-135M, {seq_len} tokens in total, forward + backward")
    print(f"{'workers':>8} {'tokens/worker':>14} {'peak MB':>9} {'step MB':>9} {'peak ratio':>11} {'step ratio':>11}")
    reference = None
    for workers in worker_counts:
        result = run({**base, "mode": "ring", "seq_len": seq_len}, workers)
        step_mb = result["peak_mb"] - result["before_mb"]
        reference = reference or (result["peak_mb"], step_mb)
        print(f"{workers:>8} {seq_len // workers:>14} {result['peak_mb']:>9.0f} {step_mb:>9.0f} "
              f"{result['peak_mb'] / reference[0]:>11.2f} {step_mb / reference[1]:>11.2f}", flush=True)


def longest_sequences(base: dict, setups: list[tuple[str, str, int]], lengths: list[int], cap: float) -> None:
    """Table (b)."""
    print(f"\n(b) longest trainable sequence, cap {cap:.0f} MB peak RSS per process, "
          f"search {lengths[0]}..{lengths[-1]}, forward + backward + AdamW")
    print(f"{'setup':>32} {'longest':>8} {'vs plain':>9} {'peak MB':>9}")
    start, longest_plain = 0, None
    for label, mode, workers in setups:
        peaks = {}

        def fits(index: int) -> bool:
            result = run({**base, "mode": mode, "seq_len": lengths[index], "cap_mb": cap, "optimizer": True},
                         workers)
            if result is not None:
                peaks[lengths[index]] = result["peak_mb"]
            return result is not None

        # Memory grows with the length: start from the previous set-up's longest and walk up or down.
        index = start
        if fits(index):
            while index + 1 < len(lengths) and fits(index + 1):
                index += 1
        else:
            index -= 1
            while index >= 0 and not fits(index):
                index -= 1
        longest = lengths[index] if index >= 0 else 0
        start = max(index, 0)
        longest_plain = longest if longest_plain is None else longest_plain
        bound = " (search bound)" if index == len(lengths) - 1 else ""
        print(f"{label:>32} {longest:>8} {longest / max(longest_plain, 1):>8.1f}x {peaks.get(longest, 0):>9.0f}"
              f"{bound}", flush=True)


def throughput(base: dict, config, setups: list[tuple[str, str, int]], seq_len: int) -> None:
    """Table (c): the faster of two steps per set-up (the first one also warms up the allocator)."""
    from ray_lcb.training.launch import run_local_group

    peak_gflops = max(run_local_group(_matmul_peak_gflops, 1))
    print(f"\n(c) training throughput at {seq_len} tokens, best of 2 steps; fp32 matmul peak {peak_gflops:.1f} "
          "GFLOP/s per thread (measured now, one thread per worker)")
    print(f"{'setup':>32} {'tokens/s':>9} {'GFLOP/s':>8} {'MFU':>6}")
    for label, mode, workers in setups:
        step_s = run({**base, "mode": mode, "seq_len": seq_len, "optimizer": True, "steps": 2}, workers)["step_s"]
        achieved = flops_per_token(config, seq_len) * seq_len / step_s / 1e9
        print(f"{label:>32} {seq_len / step_s:>9.1f} {achieved:>8.1f} {achieved / (peak_gflops * workers):>6.1%}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short sequences (smoke run)")
    parser.add_argument("--memory-seq-len", type=int, default=None, help="total length for table (a)")
    parser.add_argument("--memory-workers", default="1,2,4", help="worker counts for table (a)")
    parser.add_argument("--cap-mb", type=float, default=None, help="per-process memory cap for table (b)")
    parser.add_argument("--tables", default="abc", help="which tables to run, e.g. 'a' or 'bc'")
    args = parser.parse_args()

    from transformers import AutoConfig

    from ray_lcb.models import resolve_model

    model_path = str(resolve_model("bundled:smollm2-135m-instruct"))
    started = time.perf_counter()
    base = {"model_path": model_path, "chunk_tokens": 256, "cap_mb": None, "optimizer": False}
    setups = [("plain transformers, 1 process", "plain", 1), ("ray_lcb, 1 worker", "ring", 1),
              ("ray_lcb, 2 sp workers", "ring", 2)]
    print(f"load average at start: {os.getloadavg()[0]:.1f} (other processes share these cores)")
    if "a" in args.tables:
        memory_per_worker(base, args.memory_seq_len or (256 if args.quick else 2048),
                          [int(n) for n in args.memory_workers.split(",")])
    if "b" in args.tables:
        longest_sequences(base, setups, [128, 256, 512] if args.quick else [512, 1024, 2048, 4096],
                          args.cap_mb or (3000 if args.quick else 3800))
    if "c" in args.tables:
        throughput(base, AutoConfig.from_pretrained(model_path), setups, 256 if args.quick else 512)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    print(f"\ntotal bench time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
