"""Helpers of the reliability tests: the cheapest real synthesis job, and reading its output.

Long-output samples take one LLM call each (instruction back-translation),
which keeps a run short; their rows still flow through every stage of the
Ray Data pipeline, so every stage actor and the shared LLM replica are live
while they run.
"""

import sys
from pathlib import Path

import pyarrow.parquet as pq

FAULT_SYNTHESIS = {
    "num_samples": 0, "num_long_output_samples": 4,
    "long_output_tokens_min": 512, "long_output_tokens_max": 4096,
    "retrieval_candidates": 32, "chunk_tokens": 256, "summary_max_tokens": 64, "summaries_budget_tokens": 100,
    "instruction_max_tokens": 64, "response_max_tokens": 96, "min_response_chars": 30, "truncated_responses": "trim",
    "max_retries": 1, "max_rounds": 8, "samples_per_shard": 1,
    # One batch of two rows in flight per stage actor: rows finish in waves, so the first commit
    # comes while later rows still wait on the LLM (the moment the tests strike).
    "stage_batch_size": 2, "batches_per_actor": 1,
}


def synthesize_argv(out: Path, address: str, **overrides) -> list[str]:
    """``ray-lcb synthesize`` joining the cluster at ``address`` with the settings above."""
    argv = [sys.executable, "-m", "ray_lcb.cli", "synthesize", "--out", str(out), "--set", f"ray.address={address}"]
    for key, value in {**FAULT_SYNTHESIS, **overrides}.items():
        argv += ["--set", f"synthesis.{key}={value}"]
    return argv


def committed_sample_ids(out: Path) -> list[str]:
    files = sorted((out / "data").glob("samples-*.parquet"))
    return [i for f in files for i in pq.read_table(f, columns=["sample_id"]).column(0).to_pylist()]


def ledger_rows(out: Path) -> list[dict]:
    return [row for f in sorted((out / "_state").glob("ledger-*.parquet")) for row in pq.read_table(f).to_pylist()]
