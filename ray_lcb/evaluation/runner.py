"""Run RULER, needle in a haystack and the long-output check through one ``generate`` callable.

``evaluate`` builds samples with the evaluated model's own tokenizer, renders
each prompt (chat template + answer prefix), sends them to ``generate``, scores
the replies and writes, under ``out_dir``::

    samples/<task>_<length>.jsonl   every generated sample (niah: samples/niah_<length>.jsonl)
    predictions.jsonl               one line per sample: prediction, references, score, error
    results.json                    scores per task x length, averages, nulls, errors, skips, model info
    results.md                      the same as markdown tables
    niah_heatmap.png                when 'niah' runs

``generate`` is any callable ``list[request] -> list[response]`` with::

    request  = {"id": str, "prompt": str, "max_tokens": int}
    response = {"id": str, "text": str, "error": str | None}

``prompt`` is fully rendered text (``apply_chat_template(..., tokenize=False,
add_generation_prompt=True) + answer_prefix``) to be continued greedily as a
raw completion; the model must not add its own template or special tokens.
Responses may come back in any order. A response with ``error`` set, or no
response for an id, scores 0 and is counted. The serving layer
(``ray_lcb.serving``) provides such a callable; tests use a transformers one.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

from ray_lcb.evaluation import niah as niah_mod
from ray_lcb.evaluation.config import (LONG_OUTPUT_TASK, NIAH_TASK, EvaluationConfig, check_lengths,
                                       check_tasks)
from ray_lcb.evaluation.length_fit import PromptRenderer
from ray_lcb.evaluation.long_output import build_long_output_samples, score_long_output
from ray_lcb.evaluation.plots import plot_niah_heatmap, score_grid
from ray_lcb.evaluation.report import write_markdown
from ray_lcb.evaluation.ruler import RULER_TASKS, build_ruler_samples, missing_qa_data
from ray_lcb.evaluation.scoring import (effective_length, mean, postprocess_prediction, score_prediction,
                                        task_score, weighted_averages)

logger = logging.getLogger(__name__)

GenerateFn = Callable[[list[dict]], list[dict]]


def evaluate(config: EvaluationConfig, generate: GenerateFn, out_dir: str | Path, *, model_ref: str,
             tasks: list[str] | None = None, lengths: list[int] | None = None, tokenizer=None) -> dict:
    """Evaluate one model and write the result files (see the module docstring).

    Args:
        config: what to run and how samples are made.
        generate: the model, as a batch completion callable (module docstring).
        out_dir: output folder, created if missing; earlier files are overwritten.
        model_ref: the evaluated model (``ray_lcb.models.resolve_model`` form); its
            tokenizer builds the prompts and its config.json gives the RoPE settings.
        tasks: overrides ``config.tasks``.
        lengths: overrides ``config.lengths`` and the heatmap's ``niah.context_lengths``.
        tokenizer: the model's tokenizer if already loaded.

    Returns:
        The dict written to results.json.

    Raises:
        ValueError: unknown task, a length too small for a task (before any
            generation), or a QA dataset file that cannot be read.
    """
    started = time.time()
    tasks = check_tasks(tasks) if tasks is not None else list(config.tasks)
    ruler_lengths = check_lengths(lengths) if lengths is not None else list(config.lengths)
    niah_lengths = ruler_lengths if lengths is not None else list(config.niah.context_lengths)
    out = Path(out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    model = read_model_info(model_ref)
    if tokenizer is None:
        from ray_lcb.models import load_tokenizer
        tokenizer = load_tokenizer(model_ref)
    renderer = PromptRenderer(tokenizer, config.prompt_format)

    ruler_tasks = [t for t in tasks if t in RULER_TASKS]
    skipped = {t: r for t in ruler_tasks if (r := missing_qa_data(t, config.squad_path, config.hotpotqa_path))}
    for task, reason in skipped.items():
        logger.warning("skipping %s: %s", task, reason)
    ruler_tasks = [t for t in ruler_tasks if t not in skipped]
    _check_shortest_lengths(config, renderer, ruler_tasks, min(ruler_lengths), tasks, min(niah_lengths))
    used_lengths = sorted(set((ruler_lengths if ruler_tasks else []) + (niah_lengths if NIAH_TASK in tasks else [])))

    results: dict = {
        "model_ref": model_ref, "rope_theta": model["rope_theta"], "model": model, "tasks": tasks,
        "lengths": ruler_lengths, "num_samples": config.num_samples, "seed": config.seed,
        "scores": {}, "per_length_average": {}, "average": None, "nulls": {}, "errors": {},
        "skipped": skipped, "warnings": _length_warnings(model, used_lengths),
    }
    predictions_file = out / "predictions.jsonl"
    predictions_file.write_text("")

    cells = []
    for task in ruler_tasks:
        for length in ruler_lengths:
            samples = build_ruler_samples(task, length, config.num_samples, renderer, seed=config.seed,
                                          squad_path=config.squad_path, hotpotqa_path=config.hotpotqa_path)
            _write_jsonl(out / "samples" / f"{task}_{length}.jsonl", samples)
            cells.append((task, length, samples))
    # One generate call for every RULER sample, so the replica can batch across tasks and lengths.
    all_samples = [s for _, _, samples in cells for s in samples]
    all_replies = iter(_run(generate, renderer, all_samples,
                            [f"{task}/{length}/{s['index']}" for task, length, samples in cells for s in samples]))
    for task, length, samples in cells:
        rows = [_score_ruler(s, next(all_replies)) for s in samples]
        _append_jsonl(predictions_file, rows)
        results["scores"].setdefault(task, {})[str(length)] = task_score(r["score"] / 100 for r in rows)
        results["nulls"].setdefault(task, {})[str(length)] = sum(r["prediction"] == "" for r in rows)
        results["errors"].setdefault(task, {})[str(length)] = sum(r["error"] is not None for r in rows)
        logger.info("%s @ %d: %.2f", task, length, results["scores"][task][str(length)])
    _summarise_ruler(results, ruler_tasks, ruler_lengths)

    if NIAH_TASK in tasks:
        results["niah"] = _run_niah(config, generate, renderer, niah_lengths, out, predictions_file, model_ref)
    if LONG_OUTPUT_TASK in tasks:
        results["long_output"] = _run_long_output(config, generate, renderer, out, predictions_file, model)

    results["config"] = config.model_dump(mode="json")
    results["elapsed_s"] = round(time.time() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_markdown(results, out / "results.md")
    return results


def read_model_info(model_ref: str) -> dict:
    """RoPE settings and position limit from the model's config.json (a checkpoint folder's own)."""
    from ray_lcb.models import resolve_model

    path = resolve_model(model_ref)
    config = json.loads((path / "config.json").read_text())
    config = config.get("text_config", config)  # multimodal wrappers nest the language model
    rope = config.get("rope_parameters") or {}
    if rope and all(isinstance(v, dict) for v in rope.values()):
        rope = next(iter(rope.values()))  # per-layer-type parameters: report the first
    theta = config.get("rope_theta", rope.get("rope_theta"))
    scaling = config.get("rope_scaling") or {k: v for k, v in rope.items() if k != "rope_theta"} or None
    return {"path": str(path), "model_type": config.get("model_type"), "rope_theta": theta,
            "rope_scaling": scaling, "max_position_embeddings": config.get("max_position_embeddings")}


def _length_warnings(model: dict, lengths: list[int]) -> list[str]:
    limit = model["max_position_embeddings"]
    over = [n for n in lengths if limit and n > limit]
    if not over:
        return []
    message = (f"lengths {over} exceed the model's max_position_embeddings {limit} "
               f"(rope_theta {model['rope_theta']}): scores there measure length extrapolation")
    logger.warning(message)
    return [message]


def _check_shortest_lengths(config: EvaluationConfig, renderer: PromptRenderer, ruler_tasks: list[str],
                            ruler_min: int, tasks: list[str], niah_min: int) -> None:
    """Build one sample per task at the shortest length, so a too-short length fails before any generation."""
    for task in ruler_tasks:
        build_ruler_samples(task, ruler_min, 1, renderer, seed=config.seed, squad_path=config.squad_path,
                            hotpotqa_path=config.hotpotqa_path)
    if NIAH_TASK in tasks:
        _niah_sample(config, renderer, niah_min, config.niah.depths[0], 0)


def _run(generate: GenerateFn, renderer: PromptRenderer, samples: list[dict], ids: list[str],
         prompts: list[str] | None = None, max_tokens: list[int] | None = None) -> list[dict]:
    """Send one request per sample; return ``{"text", "error"}`` per sample, in sample order."""
    if prompts is None:
        prompts = [renderer.render(s["input"], s["answer_prefix"], s.get("system")) for s in samples]
    if max_tokens is None:
        max_tokens = [s["tokens_to_generate"] for s in samples]
    requests = [{"id": i, "prompt": p, "max_tokens": m} for i, p, m in zip(ids, prompts, max_tokens)]
    responses = generate(requests) if requests else []
    if not isinstance(responses, list):
        raise TypeError(f"generate must return a list of response dicts, got {type(responses).__name__}")
    by_id = {r.get("id"): r for r in responses if isinstance(r, dict)}
    replies = []
    for request_id in ids:
        response = by_id.get(request_id)
        if response is None:
            replies.append({"text": "", "error": "no response for this request id"})
        elif response.get("error"):
            replies.append({"text": "", "error": str(response["error"])})
        else:
            replies.append({"text": response.get("text") or "", "error": None})
    return replies


def _score_ruler(sample: dict, reply: dict) -> dict:
    score = 0.0 if reply["error"] else score_prediction(reply["text"], sample["answers"], sample["metric"])
    return {"id": f"{sample['task']}/{sample['length']}/{sample['index']}", "task": sample["task"],
            "length": sample["length"], "index": sample["index"], "depth": sample["depth"],
            "prediction": postprocess_prediction(reply["text"]), "answers": sample["answers"],
            "score": 100.0 * score, "error": reply["error"]}


def _summarise_ruler(results: dict, tasks: list[str], lengths: list[int]) -> None:
    per_length = {n: mean(results["scores"][t][str(n)] for t in tasks) for n in lengths} if tasks else {}
    per_length = {n: v for n, v in per_length.items() if v is not None}
    results["per_length_average"] = {str(n): v for n, v in per_length.items()}
    results["average"] = mean(per_length.values())
    results["weighted_average_inc"], results["weighted_average_dec"] = weighted_averages(per_length)
    results["effective_length"] = effective_length(per_length)


def _niah_sample(config: EvaluationConfig, renderer: PromptRenderer, length: int, depth: float, index: int) -> dict:
    cfg = config.niah
    return niah_mod.build_niah_sample(renderer, length, depth, needle=cfg.needle, question=cfg.question,
                                      key_facts=cfg.key_facts, max_tokens=cfg.max_tokens,
                                      system_prompt=cfg.system_prompt, index=index, seed=config.seed)


def _run_niah(config: EvaluationConfig, generate: GenerateFn, renderer: PromptRenderer, lengths: list[int],
              out: Path, predictions_file: Path, model_ref: str) -> dict:
    cfg = config.niah
    cells, errors, unparsable = [], 0, 0
    samples = []
    for length in lengths:
        per_length = [_niah_sample(config, renderer, length, depth, index)
                      for depth in cfg.depths for index in range(cfg.num_samples)]
        _write_jsonl(out / "samples" / f"niah_{length}.jsonl", per_length)
        samples += per_length
    # One generate call for the whole grid, so the replica can batch across lengths.
    ids = [f"niah/{s['length']}/{s['depth']:g}/{s['index']}" for s in samples]
    replies = _run(generate, renderer, samples, ids)
    judged: list[int | None] = [None] * len(samples)
    if cfg.scoring == "judge":
        todo = [i for i, r in enumerate(replies) if not r["error"]]
        prompts = [renderer.render(niah_mod.judge_prompt(cfg.question, cfg.needle, replies[i]["text"]),
                                   niah_mod.JUDGE_ANSWER_PREFIX) for i in todo]
        verdicts = _run(generate, renderer, [samples[i] for i in todo], [ids[i] + "/judge" for i in todo],
                        prompts, [cfg.judge_max_tokens] * len(todo))
        for i, verdict in zip(todo, verdicts):
            judged[i] = None if verdict["error"] else niah_mod.parse_judge_score(verdict["text"])
    rows = []
    for i, (sample, reply) in enumerate(zip(samples, replies)):
        if reply["error"]:
            score = 0.0
            errors += 1
        elif cfg.scoring == "judge":
            score = None if judged[i] is None else 10.0 * judged[i]
            unparsable += judged[i] is None
        else:
            score = niah_mod.substring_score(reply["text"], cfg.key_facts)
        cells.append({"length": sample["length"], "depth": sample["depth"], "index": sample["index"],
                      "score": score})
        rows.append({"id": ids[i], "task": NIAH_TASK, "length": sample["length"], "index": sample["index"],
                     "depth": sample["depth"], "prediction": postprocess_prediction(reply["text"]),
                     "answers": sample["answers"], "score": score, "judge_score": judged[i],
                     "error": reply["error"]})
    _append_jsonl(predictions_file, rows)
    plot_niah_heatmap(cells, out / "niah_heatmap.png", model_name=model_ref)
    lengths_sorted, depths, grid = score_grid(cells)
    scored = [c["score"] for c in cells if c["score"] is not None]
    return {
        "scoring": cfg.scoring, "mean_score": mean(scored), "lengths": lengths_sorted, "depths": depths,
        "grid": [[None if v != v else round(float(v), 2) for v in row] for row in grid],  # NaN -> null
        "cells": cells, "errors": errors, "judge_unparsable": unparsable, "heatmap": "niah_heatmap.png",
    }


def _run_long_output(config: EvaluationConfig, generate: GenerateFn, renderer: PromptRenderer, out: Path,
                     predictions_file: Path, model: dict) -> dict:
    cfg = config.long_output
    samples = build_long_output_samples(cfg.target_words, cfg.tokens_per_word)
    _write_jsonl(out / "samples" / "long_output.jsonl", samples)
    ids = [f"long_output/{s['length']}" for s in samples]
    replies = _run(generate, renderer, samples, ids)
    summary = score_long_output(samples, [r["text"] for r in replies])
    summary["errors"] = sum(r["error"] is not None for r in replies)
    limit = model["max_position_embeddings"]
    summary["warnings"] = [f"max_tokens {s['tokens_to_generate']} for {s['length']} words exceeds "
                           f"max_position_embeddings {limit}" for s in samples
                           if limit and s["tokens_to_generate"] > limit]
    _append_jsonl(predictions_file, [
        {"id": i, "task": LONG_OUTPUT_TASK, "length": s["length"], "index": 0, "depth": None,
         "prediction": r["text"], "answers": [], "score": summary["per_length"][str(s["length"])]["length_score"],
         "error": r["error"]} for i, s, r in zip(ids, samples, replies)])
    return summary


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _append_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
