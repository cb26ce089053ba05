"""Load on the shared LLM deployment: 1,000 concurrent requests, none lost.

    HF_HUB_OFFLINE=1 python bench/load.py [--requests 1000] [--max-tokens 8] \
        [--max-ongoing 128] [--max-queued 300] [--address ADDR --app NAME] [--json]

Deploys the LLM app (``start_llm_service``) with Serve's back-pressure limits
set: a replica works on at most ``--max-ongoing`` requests, the caller queues
at most ``--max-queued`` more, and every request beyond that is rejected at
once with ``BackPressureError``. Then fires all requests at the same time
through ``LLMClient`` and classifies every one as answered, rejected or
failed; ``answered + rejected + failed == sent`` is checked. Prints latency
percentiles, throughput, and the ratio of throughput under load to one
request at a time, both measured in this run. ``--json`` adds one
``RESULT {...}`` line (tests/reliability/test_load.py reads it);
``--address`` joins a running cluster, where a non-default ``--app`` keeps
the shared app untouched and is deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import ray
from ray import serve
from ray.serve.exceptions import BackPressureError

from ray_lcb.serving.client import LLMClient
from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.serving.launch import start_llm_service

TOPICS = ["rivers", "volcanoes", "the moon", "bread", "chess", "bees", "glass", "trains", "rain", "maps"]


async def timed_call(client: LLMClient, prompt: str, max_tokens: int) -> tuple[str, float, int, str]:
    """(outcome, seconds, completion tokens, error) of one request; outcome is answered|rejected|failed."""
    start = time.perf_counter()
    try:
        reply = await client.chat([{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0)
        return "answered", time.perf_counter() - start, reply.completion_tokens, ""
    except BackPressureError:
        return "rejected", time.perf_counter() - start, 0, ""
    except Exception as err:  # noqa: BLE001 - counted and reported: a lost request must show up
        return "failed", time.perf_counter() - start, 0, f"{type(err).__name__}: {str(err)[:200]}"


async def fire(client: LLMClient, num_requests: int, max_tokens: int, concurrent: bool) -> tuple[list, float]:
    prompts = [f"Name one fact about {TOPICS[i % len(TOPICS)]}. ({i})" for i in range(num_requests)]
    start = time.perf_counter()
    if concurrent:
        results = await asyncio.gather(*[timed_call(client, p, max_tokens) for p in prompts])
    else:
        results = [await timed_call(client, p, max_tokens) for p in prompts]
    return list(results), time.perf_counter() - start


def _batch_sizes(cfg: LLMServingConfig) -> list[int]:
    """Rows the CPU replica decoded together after each admission of new requests, so far
    (vLLM replicas do not report them)."""
    if cfg.engine != "transformers":
        return []
    return serve.get_deployment_handle(cfg.deployment_name, cfg.app_name).stats.remote().result()["batch_sizes"]


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": ordered[-1]}


def summarise(results: list, elapsed: float) -> dict:
    by_outcome = {k: [r for r in results if r[0] == k] for k in ("answered", "rejected", "failed")}
    answered = by_outcome["answered"]
    return {"sent": len(results), **{k: len(v) for k, v in by_outcome.items()},
            "seconds": elapsed, "answered_per_s": len(answered) / elapsed,
            "tokens": sum(r[2] for r in answered),
            "answered_latency_s": percentiles([r[1] for r in answered]),
            "rejected_latency_s": percentiles([r[1] for r in by_outcome["rejected"]]),
            "errors": sorted({r[3] for r in by_outcome["failed"]})[:5]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--max-ongoing", type=int, default=128, help="LLMServingConfig.max_ongoing_requests")
    parser.add_argument("--max-queued", type=int, default=300, help="LLMServingConfig.max_queued_requests")
    parser.add_argument("--max-batch", type=int, default=16, help="LLMServingConfig.max_batch_size")
    parser.add_argument("--baseline", type=int, default=8, help="requests sent one at a time first, for the ratio")
    parser.add_argument("--address", help="join this Ray cluster instead of starting one")
    parser.add_argument("--app", default="ray_lcb_llm", help="Serve app and deployment name")
    parser.add_argument("--json", action="store_true", help="also print one RESULT {...} line")
    args = parser.parse_args()

    env = {"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}}
    if args.address:
        ray.init(address=args.address, log_to_driver=False, runtime_env=env)
    else:
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, runtime_env=env)
    cfg = LLMServingConfig(app_name=args.app, deployment_name=args.app, max_batch_size=args.max_batch,
                           max_ongoing_requests=args.max_ongoing, max_queued_requests=args.max_queued)
    start_llm_service(cfg)
    client = LLMClient(cfg)
    try:
        asyncio.run(fire(client, 2, args.max_tokens, True))  # warm-up
        base_results, base_s = asyncio.run(fire(client, args.baseline, args.max_tokens, False))
        baseline = summarise(base_results, base_s)
        batches_before = _batch_sizes(cfg)
        results, elapsed = asyncio.run(fire(client, args.requests, args.max_tokens, True))
        batches = _batch_sizes(cfg)[len(batches_before):]
    finally:
        if args.address and args.app != LLMServingConfig().app_name:
            serve.delete(args.app)  # a cluster shared with others: leave only what was there
    load = summarise(results, elapsed)
    assert load["answered"] + load["rejected"] + load["failed"] == load["sent"] == args.requests

    print(f"{args.requests} concurrent requests, max_tokens={args.max_tokens}, max_ongoing_requests="
          f"{args.max_ongoing}, max_queued_requests={args.max_queued}, max_batch_size={args.max_batch}")
    print(f"{'outcome':<24}{'count':>8}{'p50 s':>9}{'p90 s':>9}{'p99 s':>9}{'max s':>9}")
    for outcome in ("answered", "rejected"):
        lat = load[f"{outcome}_latency_s"]
        cells = "".join(f"{lat[q]:>9.3f}" for q in ("p50", "p90", "p99", "max")) if lat else ""
        print(f"{outcome + (' (BackPressureError)' if outcome == 'rejected' else ''):<24}{load[outcome]:>8}{cells}")
    print(f"{'failed (other errors)':<24}{load['failed']:>8}  {'; '.join(load['errors'])}")
    print(f"{'lost (no outcome)':<24}{args.requests - load['sent']:>8}")
    print(f"throughput under load: {load['answered_per_s']:.2f} answered/s, {load['tokens'] / elapsed:.1f} tokens/s "
          f"({elapsed:.1f} s)")
    print(f"one at a time ({args.baseline} requests): {baseline['answered_per_s']:.2f} answered/s")
    ratio = load["answered_per_s"] / baseline["answered_per_s"] if baseline["answered_per_s"] else float("nan")
    print(f"ratio: throughput under load / one at a time = {ratio:.2f}x; "
          f"rejected / sent = {load['rejected'] / load['sent']:.2f}; "
          f"p99 / p50 answered latency = {load['answered_latency_s']['p99'] / load['answered_latency_s']['p50']:.2f}"
          if load["answered"] else "ratio: nothing answered")
    if batches:
        print(f"replica batches under load: {len(batches)}, mean size {sum(batches) / len(batches):.1f}, "
              f"largest {max(batches)} (max_batch_size {args.max_batch})")
    if args.json:
        print("RESULT " + json.dumps({"load": load, "baseline": baseline, "throughput_ratio": ratio,
                                      "batch_sizes": batches}))


if __name__ == "__main__":
    main()
