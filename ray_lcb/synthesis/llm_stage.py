"""Base of the synthesis stages that call the LLM.

A stage is a Ray Data actor class (``map_batches`` with an ``ActorPoolStrategy``)
holding a Serve handle to the one shared deployment -- never a model. Within a
batch, rows run concurrently on a private event loop, so the replica sees
many requests at once and batches them. A row that already carries a
``drop_reason``, or that is not of the stage's data type, passes through.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import pyarrow as pa

from ray_lcb.serving.client import LLMClient
from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.synthesis.config import SynthesisConfig
from ray_lcb.synthesis.records import to_table

Validator = Callable[[str | None, str | None], tuple[str | None, str | None]]


class LLMStage:
    stage_name = "llm"
    data_types: tuple[str, ...] = ()

    def __init__(self, llm_config: dict, synthesis_config: dict):
        from transformers import AutoTokenizer

        from ray_lcb.models import resolve_model

        self.llm_config = LLMServingConfig(**llm_config)
        self.config = SynthesisConfig(**synthesis_config)
        self.client = LLMClient(self.llm_config)
        # The generator's tokenizer: prompt budgets are in the generator's tokens.
        self.tokenizer = AutoTokenizer.from_pretrained(resolve_model(self.llm_config.model), trust_remote_code=False)
        self._loop = asyncio.new_event_loop()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        semaphore = asyncio.Semaphore(self.config.llm_concurrency)

        async def guarded(row):
            if row["drop_reason"] or row["data_type"] not in self.data_types:
                return row
            async with semaphore:
                try:
                    return await self.process(row)
                except Exception as err:  # noqa: BLE001 - one bad row must not fail the job
                    return self.drop(row, f"{self.stage_name}_error:{type(err).__name__}")

        async def run_all():
            return await asyncio.gather(*[guarded(row) for row in rows])

        return to_table(self._loop.run_until_complete(run_all()))

    async def process(self, row: dict) -> dict:
        raise NotImplementedError

    def drop(self, row: dict, reason: str) -> dict:
        row["drop_reason"], row["drop_stage"] = reason, self.stage_name
        return row

    async def ask_valid(self, row: dict, prompt: str, validator: Validator, *, max_tokens: int,
                        temperature: float) -> tuple[str | None, str | None]:
        """Ask until ``validator`` accepts (1 + max_retries tries); count calls and tokens on ``row``.

        Retries sample with a fresh seed, so a greedy first try is not simply repeated.
        Returns (accepted text, None) or (None, reason of the last rejection).
        """
        reason = None
        for attempt in range(self.config.max_retries + 1):
            temp = temperature if attempt == 0 else max(temperature, 0.8)
            reply = await self.client.chat([{"role": "user", "content": prompt}], max_tokens=max_tokens,
                                           temperature=temp, seed=row["rng_seed"] + attempt)
            row["llm_calls"] += 1
            row["llm_completion_tokens"] += reply.completion_tokens
            text, reason = validator(reply.text, reply.finish_reason)
            if text is not None:
                return text, None
            row["retries"] += 1 if attempt < self.config.max_retries else 0
        return None, reason
