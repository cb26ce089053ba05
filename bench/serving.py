"""Throughput of the shared CPU LLM deployment: one request at a time vs concurrent.

    HF_HUB_OFFLINE=1 python bench/serving.py [--prompts 16] [--max-tokens 64] [--batch 8]

Both runs send the same prompts to the same deployment (SmolLM2-135M-Instruct,
greedy); in the concurrent run the replica decodes them together (continuous
batching). Prints tokens/s of each and their ratio, measured in this run.
"""

import argparse
import asyncio
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import ray

from ray_lcb.serving.client import LLMClient
from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.serving.launch import start_llm_service

TOPICS = ["rivers", "volcanoes", "the moon", "bread", "chess", "bees", "glass", "trains", "rain", "maps",
          "clocks", "salt", "owls", "paper", "bridges", "tea", "copper", "wind", "sand", "ink"]


async def run(client, prompts, max_tokens, concurrent):
    messages = [[{"role": "user", "content": p}] for p in prompts]
    start = time.perf_counter()
    if concurrent:
        replies = await asyncio.gather(*[client.chat(m, max_tokens=max_tokens) for m in messages])
    else:
        replies = [await client.chat(m, max_tokens=max_tokens) for m in messages]
    elapsed = time.perf_counter() - start
    return sum(r.completion_tokens for r in replies), elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    cfg = LLMServingConfig(max_batch_size=args.batch)
    start_llm_service(cfg)
    client = LLMClient(cfg)
    prompts = [f"Write three sentences about {TOPICS[i % len(TOPICS)]}." for i in range(args.prompts)]
    asyncio.run(run(client, prompts[:2], 8, True))  # warm-up
    seq_tokens, seq_s = asyncio.run(run(client, prompts, args.max_tokens, False))
    con_tokens, con_s = asyncio.run(run(client, prompts, args.max_tokens, True))
    print(f"{'mode':<28}{'tokens':>8}{'seconds':>10}{'tokens/s':>10}")
    print(f"{'one at a time':<28}{seq_tokens:>8}{seq_s:>10.1f}{seq_tokens / seq_s:>10.1f}")
    print(f"{f'concurrent (batch {args.batch})':<28}{con_tokens:>8}{con_s:>10.1f}{con_tokens / con_s:>10.1f}")
    print(f"speed-up (tokens/s ratio): {(con_tokens / con_s) / (seq_tokens / seq_s):.2f}x")


if __name__ == "__main__":
    main()
