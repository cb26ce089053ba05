"""Synthesis throughput: the Ray pipeline vs a naive sequential run of the same workflow.

    HF_HUB_OFFLINE=1 python bench/synthesis.py [--samples 12] [--set synthesis.target_tokens_max=4096 ...]

Both make the same number of long-input samples with the same model
(SmolLM2-135M-Instruct), the same prompts, validators, retrieval and seeds,
and the same rule for drops: a dropped sample is replaced by the next seed
(the pipeline releases a reserve seed at once; with ``oversample`` > 0 it
would also keep extra rows in flight):

* naive: the same stage objects called one row at a time in this process, the
  model in-process, one ``generate`` call at a time, no Ray;
* pipeline: ``run_synthesis`` (Ray Data stages sharing one Serve deployment
  that batches concurrent requests), timed after the deployment is up and the
  index is built, so both sides measure the workflow itself.

Prints samples/min and LLM completion tokens/s of each, and their ratios, and
where each side's time went, from the engine's own log: seconds spent reading
prompts (prefill, one prompt at a time on both sides), seconds spent in
decode steps and their mean number of rows, and the rest ("engine idle":
retrieval, stage and scheduling time while the engine waited for requests).
Batching does not shorten prefill, so ``naive seconds / naive prefill
seconds`` ("bound") is the most any schedule of the same work could gain.

samples/min is a throughput: with a handful of samples the pipeline's time is
mostly its start-up and the chain of calls of its last sample, so the default
is 12 samples (the naive run then takes about 10 minutes).
"""

import argparse
import asyncio
import inspect
import os
import tempfile
import time
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ray_lcb.config import load_config
from ray_lcb.models import resolve_model
from ray_lcb.serving.client import LLMReply
from ray_lcb.serving.engines.transformers import TransformersEngine
from ray_lcb.serving.protocol import parse_request


class SequentialClient:
    """The naive baseline's LLM: one request, one ``generate`` call, in this process."""

    def __init__(self, engine: TransformersEngine):
        self.engine = engine

    async def chat(self, messages, **sampling) -> LLMReply:
        result = self.engine.generate([parse_request({"messages": messages, **sampling}, chat=True)])[0]
        if isinstance(result, Exception):
            raise result
        return LLMReply(result.text, result.finish_reason, result.completion_tokens)


def engine_time(stats: dict) -> dict:
    """Prefill and decode seconds, prompt tokens and mean decode rows from an engine's ``stats()``."""
    steps = {int(rows): count for rows, count in stats["decode_steps"].items()}
    return {"prefill_s": sum(a["seconds"] for a in stats["admissions"]),
            "prompt_tokens": sum(a["prompt_tokens"] for a in stats["admissions"]),
            "decode_steps": sum(steps.values()), "decode_s": stats["decode_seconds"],
            "mean_rows": sum(r * c for r, c in steps.items()) / max(1, sum(steps.values()))}


def stats_since(before: dict, after: dict) -> dict:
    """The part of a cumulative stats log recorded after ``before``."""
    steps = {rows: count - before["decode_steps"].get(rows, 0) for rows, count in after["decode_steps"].items()}
    return {"admissions": after["batches"][len(before["batches"]):], "decode_steps": steps,
            "decode_seconds": after["decode_seconds"] - before["decode_seconds"]}


def naive(cfg, index_dir, num_samples: int) -> tuple[int, int, float, dict, dict]:
    from ray_lcb.synthesis.instruction_stage import InstructionStage
    from ray_lcb.synthesis.pipeline import prepare_cached_corpus
    from ray_lcb.synthesis.records import to_table
    from ray_lcb.synthesis.response_stage import ResponseStage
    from ray_lcb.synthesis.retrieval_stage import RetrievalStage
    from ray_lcb.synthesis.sample_stage import SampleStage
    from ray_lcb.synthesis.seeds import CorpusView, plan_long_input_seed
    from ray_lcb.synthesis.summarize_stage import QueryFocusedSummaryStage

    synthesis = cfg.synthesis
    # The replica's model settings (dtype, context); one request at a time, so max_batch_size does not matter.
    engine = TransformersEngine(str(resolve_model(cfg.llm.model)), dtype=cfg.llm.dtype,
                                max_model_len=cfg.llm.max_model_len, num_threads=os.cpu_count())
    client = SequentialClient(engine)
    llm_args = (cfg.llm.model_dump(), synthesis.model_dump())
    stages = [InstructionStage(*llm_args, client=client),
              RetrievalStage(str(index_dir), synthesis.model_dump(), cfg.llm.model),
              QueryFocusedSummaryStage(*llm_args, client=client), ResponseStage(*llm_args, client=client),
              SampleStage(synthesis.model_dump(), cfg.llm.model, cfg.llm.model, cfg.seed)]
    corpus = CorpusView.load(prepare_cached_corpus(cfg.corpus).files)
    kept = tokens = number = 0
    drops = Counter()
    start = time.perf_counter()
    while kept < num_samples:
        table = to_table([plan_long_input_seed(corpus, synthesis, cfg.seed, number)])
        for stage in stages:
            table = stage(table)
            if inspect.iscoroutine(table):  # LLM stages are async; here they await one request at a time
                table = asyncio.run(table)
        row = table.to_pylist()[0]
        kept += row["drop_reason"] is None
        drops.update([row["drop_reason"]] if row["drop_reason"] else [])
        tokens += row["llm_completion_tokens"]
        number += 1
    seconds = time.perf_counter() - start
    return kept, tokens, seconds, engine_time(engine.stats()), dict(drops)


def pipeline(cfg, num_samples: int) -> tuple[int, int, float, dict, dict]:
    from ray import serve

    from ray_lcb.synthesis.pipeline import SynthesisInputs, run_synthesis

    replica = serve.get_deployment_handle(cfg.llm.deployment_name, cfg.llm.app_name)
    before = replica.stats.remote().result()

    synthesis = cfg.synthesis.model_copy(update={"num_samples": num_samples})
    inputs = SynthesisInputs(corpus=cfg.corpus, llm=cfg.llm, index=cfg.index, seed=cfg.seed)
    with tempfile.TemporaryDirectory() as out:
        report = run_synthesis(synthesis, inputs, out, progress=lambda line: None)
    run = report["this_run"]
    used = engine_time(stats_since(before, replica.stats.remote().result()))
    return run["samples_written"], run["llm_completion_tokens"], run["elapsed_s"], used, report["dropped"]["by_reason"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--config", default="local")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override (repeatable)")
    args = parser.parse_args()
    cfg = load_config(args.config, ["synthesis.num_long_output_samples=0", *args.overrides])

    import ray
    from ray import serve

    from ray_lcb.runtime import init_ray
    from ray_lcb.serving.launch import start_llm_service
    from ray_lcb.synthesis.pipeline import ensure_index, prepare_cached_corpus

    init_ray(cfg.ray)
    prepared = prepare_cached_corpus(cfg.corpus)
    index_dir = ensure_index(prepared, cfg.corpus, cfg.index, cfg.synthesis.index_dir)
    start_llm_service(cfg.llm)
    p_samples, p_tokens, p_s, p_used, p_drops = pipeline(cfg, args.samples)
    serve.shutdown()
    ray.shutdown()  # the baseline gets the whole machine
    n_samples, n_tokens, n_s, n_used, n_drops = naive(cfg, index_dir, args.samples)

    print(f"{'run':<18}{'samples':>8}{'seconds':>9}{'samples/min':>13}{'LLM tokens':>12}{'tokens/s':>10}"
          f"{'prompt tokens':>15}{'prefill s':>11}{'decode steps':>14}{'rows/step':>11}{'decode s':>10}"
          f"{'engine idle s':>15}")
    for name, samples, tokens, seconds, used in [("naive sequential", n_samples, n_tokens, n_s, n_used),
                                                 ("ray pipeline", p_samples, p_tokens, p_s, p_used)]:
        print(f"{name:<18}{samples:>8}{seconds:>9.1f}{samples / seconds * 60:>13.2f}{tokens:>12}"
              f"{tokens / seconds:>10.1f}{used['prompt_tokens']:>15}{used['prefill_s']:>11.1f}"
              f"{used['decode_steps']:>14}{used['mean_rows']:>11.2f}{used['decode_s']:>10.1f}"
              f"{seconds - used['prefill_s'] - used['decode_s']:>15.1f}")
    print(f"speed-up: samples/min {(p_samples / p_s) / (n_samples / n_s):.2f}x, "
          f"LLM tokens/s {(p_tokens / p_s) / (n_tokens / n_s):.2f}x")
    print(f"rows dropped: naive {n_drops}, pipeline {p_drops} (surplus: oversampled seeds not needed); "
          f"pipeline oversample {cfg.synthesis.oversample}, reserve {cfg.synthesis.reserve}")
    print(f"bound: naive seconds / naive prefill seconds = {n_s / n_used['prefill_s']:.2f}x "
          "(what any schedule would gain if decoding cost nothing)")


if __name__ == "__main__":
    main()
