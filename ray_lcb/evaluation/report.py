"""Markdown rendering of results.json (results.md), in the layout of RULER's result tables.

Called by ``runner.evaluate`` after results.json is written.
"""

from __future__ import annotations

from pathlib import Path


def _cell(value) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def render_markdown(results: dict) -> str:
    """Tables for RULER (task x length), needle in a haystack and long output, plus skips and warnings."""
    model = results["model"]
    lines = [f"# Evaluation of `{results['model_ref']}`", "",
             f"RoPE theta {results['rope_theta']}, rope scaling {model['rope_scaling']}, "
             f"max_position_embeddings {model['max_position_embeddings']}; "
             f"{results['num_samples']} samples per task and length, seed {results['seed']}.", ""]
    lengths = [str(n) for n in results["lengths"]]
    if results["scores"]:
        lines += ["## RULER", "", "| Task | " + " | ".join(lengths) + " |",
                  "|---|" + "---:|" * len(lengths)]
        for task, by_length in results["scores"].items():
            nulls = results["nulls"][task]
            row = [_cell(by_length.get(n)) + (f" ({nulls[n]} null)" if nulls.get(n) else "") for n in lengths]
            lines.append(f"| {task} | " + " | ".join(row) + " |")
        averages = results["per_length_average"]
        lines.append("| **Average** | " + " | ".join(f"**{_cell(averages.get(n))}**" for n in lengths) + " |")
        lines += ["", f"Average over lengths: **{_cell(results['average'])}**; "
                      f"wAvg (inc) {_cell(results['weighted_average_inc'])}, "
                      f"wAvg (dec) {_cell(results['weighted_average_dec'])}; "
                      f"effective length (> 85.6): {_cell(results['effective_length'])}.", ""]
        failed = {t: {n: c for n, c in v.items() if c} for t, v in results["errors"].items()}
        failed = {t: v for t, v in failed.items() if v}
        if failed:
            lines += [f"Failed generations (scored 0): {failed}", ""]
    if results["skipped"]:
        lines += ["## Skipped", ""] + [f"- **{t}**: {reason}" for t, reason in results["skipped"].items()] + [""]
    niah = results.get("niah")
    if niah:
        lines += ["## Needle in a haystack", "",
                  f"Scoring: {niah['scoring']}; mean score {_cell(niah['mean_score'])} (0-100); "
                  f"failed generations {niah['errors']}; unparsable judge replies {niah['judge_unparsable']}.", "",
                  "| Depth % | " + " | ".join(str(n) for n in niah["lengths"]) + " |",
                  "|---|" + "---:|" * len(niah["lengths"])]
        for depth, row in zip(niah["depths"], niah["grid"]):
            lines.append(f"| {depth:g} | " + " | ".join(_cell(v) for v in row) + " |")
        lines += ["", f"![needle in a haystack]({niah['heatmap']})", ""]
    long_output = results.get("long_output")
    if long_output:
        lines += ["## Long output (LongBench-Write length score)", "",
                  "| Requested words | Output words | S_l |", "|---:|---:|---:|"]
        for entry in long_output["per_length"].values():
            lines.append(f"| {entry['required_words']} | {entry['output_words']} | {entry['length_score']:.2f} |")
        lines += ["", f"Mean S_l: {_cell(long_output['mean_length_score'])}", ""]
    if results["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in results["warnings"]] + [""]
    return "\n".join(lines)


def write_markdown(results: dict, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render_markdown(results), encoding="utf-8")
    return path
