"""``report.json`` and the length histogram of a synthesis output folder.

Counts come from the committed files, so a resumed job reports the whole
dataset; throughput is of the last invocation only.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from ray_lcb.synthesis.records import LONG_INPUT, LONG_OUTPUT

STAGES = ["instruction", "retrieval", "summarize", "response", "sample"]


def _stats(values: list[int]) -> dict:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {"count": len(values), "min": ordered[0], "median": statistics.median(ordered),
            "mean": round(statistics.fmean(ordered), 1), "p90": ordered[int(0.9 * (len(ordered) - 1))],
            "max": ordered[-1]}


def write_histogram(lengths: dict[str, list[int]], path: Path) -> None:
    # A bare Figure, not pyplot: no global backend switch in the caller's process (a notebook).
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5))
    axis = figure.subplots()
    for label, values in lengths.items():
        if values:
            axis.hist(values, bins=min(30, max(5, len(values))), alpha=0.6, label=f"{label} (n={len(values)})")
    axis.set_xlabel("tokens (student tokenizer)")
    axis.set_ylabel("samples")
    axis.set_title("Synthesized sample lengths")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def write_report(out_dir: Path, config, writer, prepared, run_stats: dict, elapsed_s: float, notes: list[str], *,
                 generator_model: str, student_model: str, index_dir: Path) -> dict:
    samples = pq.read_table([str(p) for p in writer.sample_files()],
                            columns=["sample_id", "data_type", "input_tokens", "output_tokens", "total_tokens",
                                     "num_chunks", "summary_levels"]).to_pylist() if writer.sample_files() else []
    drops = [row for row in writer.ledger() if row["drop_reason"] is not None]
    by_type = Counter(s["data_type"] for s in samples)
    drop_reasons = Counter(d["drop_reason"] for d in drops)
    drop_stages = Counter(d["drop_stage"] for d in drops)
    # Rows that reached each stage: every processed row, minus those dropped earlier.
    reached, remaining = {}, len(samples) + len(drops)
    for stage in STAGES:
        reached[stage] = remaining
        remaining -= drop_stages.get(stage, 0)
    minutes = max(elapsed_s, 1e-9) / 60
    report = {
        "samples": {"total": len(samples), LONG_INPUT: by_type.get(LONG_INPUT, 0), LONG_OUTPUT: by_type.get(LONG_OUTPUT, 0),
                    "requested": {LONG_INPUT: config.num_samples, LONG_OUTPUT: config.num_long_output_samples}},
        "rows_reaching_stage": reached,
        "dropped": {"total": len(drops), "by_reason": dict(drop_reasons), "by_stage": dict(drop_stages)},
        "lengths": {
            "input_tokens": _stats([s["input_tokens"] for s in samples if s["data_type"] == LONG_INPUT]),
            "long_output_tokens": _stats([s["output_tokens"] for s in samples if s["data_type"] == LONG_OUTPUT]),
            "total_tokens": _stats([s["total_tokens"] for s in samples]),
            "chunks_per_sample": _stats([s["num_chunks"] for s in samples if s["data_type"] == LONG_INPUT]),
            "summary_levels": _stats([s["summary_levels"] for s in samples if s["data_type"] == LONG_INPUT]),
        },
        "this_run": {"elapsed_s": round(elapsed_s, 1), "rows_processed": run_stats["rows"],
                     "samples_written": run_stats["samples"],
                     "samples_per_min": round(run_stats["samples"] / minutes, 2),
                     "llm_completion_tokens": run_stats["llm_completion_tokens"],
                     "llm_tokens_per_s": round(run_stats["llm_completion_tokens"] / max(elapsed_s, 1e-9), 2)},
        "corpus": prepared.report.as_dict(),
        "index_dir": str(index_dir),
        "generator_model": generator_model,
        "student_model": student_model,
        "config": config.model_dump(),
        "notes": notes,
        "files": {"samples": [str(p.relative_to(out_dir)) for p in writer.sample_files()],
                  "histogram": "length_histogram.png"},
    }
    write_histogram({"long input (input tokens)": [s["input_tokens"] for s in samples if s["data_type"] == LONG_INPUT],
                     "long output (output tokens)": [s["output_tokens"] for s in samples if s["data_type"] == LONG_OUTPUT]},
                    out_dir / "length_histogram.png")
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report
