"""The ``generate`` callable of the evaluation runner, backed by the shared LLM deployment.

Requests go through a Ray Data processor (``serving.client.build_llm_processor``)
as raw-prompt completions: the runner has already rendered the chat template
and appended RULER's answer prefix. Errors come back per request.
"""

from __future__ import annotations

from pathlib import Path

import ray

from ray_lcb.evaluation.config import EvaluationConfig
from ray_lcb.evaluation.runner import evaluate
from ray_lcb.serving.client import build_llm_processor
from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.serving.launch import start_llm_service


def build_serving_generate(llm: LLMServingConfig, *, batch_size: int = 4, concurrency: int = 2):
    """Return ``generate(requests) -> replies`` for :func:`ray_lcb.evaluation.evaluate`."""

    def make_request(row: dict) -> dict:
        request = {"prompt": row["prompt"], "max_tokens": int(row["max_tokens"]), "temperature": 0.0}
        if llm.engine == "vllm":
            request["add_special_tokens"] = False  # the rendered prompt already starts with BOS
        return request

    processor = build_llm_processor(llm, make_request, method="completions", batch_size=batch_size,
                                    concurrency=concurrency)

    def generate(requests: list[dict]) -> list[dict]:
        if not requests:
            return []
        rows = [{"id": r["id"], "prompt": r["prompt"], "max_tokens": r["max_tokens"]} for r in requests]
        dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), 64))
        return [{"id": row["id"], "text": row["generated_text"], "error": row["error"]}
                for row in processor(dataset).take_all()]

    return generate


def evaluate_with_deployment(config: EvaluationConfig, llm: LLMServingConfig, model: str, out_dir: str | Path, *,
                             tasks: list[str] | None = None, lengths: list[int] | None = None) -> dict:
    """Deploy ``model`` as its own Serve app ("ray_lcb_eval", so a running generator
    deployment is left alone) with a context window that fits the longest length,
    and evaluate it."""
    longest = max(lengths or config.lengths)
    eval_llm = llm.model_copy(update={"model": model, "app_name": "ray_lcb_eval", "deployment_name": "ray_lcb_eval",
                                      "max_model_len": longest + 1024})
    start_llm_service(eval_llm)
    return evaluate(config, build_serving_generate(eval_llm), out_dir, model_ref=model, tasks=tasks, lengths=lengths)
