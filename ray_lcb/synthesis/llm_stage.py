"""Base of the synthesis stages that call the LLM.

A stage is a Ray Data actor class (``map_batches`` with an ``ActorPoolStrategy``)
holding a Serve handle to the one shared deployment -- never a model. Its
``__call__`` is a coroutine, so Ray Data runs several small batches in one
actor at once (streaming: a finished batch moves on while others wait), and
the rows of a batch run concurrently; the replica sees many requests at once
and batches them. A row that already carries a
``drop_reason``, or that is not of the stage's data type, passes through.
A row the stage drops is reported to the round's seed gate at once
(``reserve.py``), which releases a reserve seed to replace it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import pyarrow as pa

from ray_lcb.serving.client import LLMClient
from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.synthesis.config import SynthesisConfig
from ray_lcb.synthesis.records import to_table
from ray_lcb.text_tokenizer import load_text_tokenizer

logger = logging.getLogger(__name__)

# Tries of one LLM call across replica failures (Serve restarts a dead replica in seconds).
TRANSIENT_RETRIES = 6

Validator = Callable[[str | None, str | None], tuple[str | None, str | None]]


class LLMStage:
    stage_name = "llm"
    data_types: tuple[str, ...] = ()

    def __init__(self, llm_config: dict, synthesis_config: dict, client=None, seed_gate=None):
        """``client`` defaults to an :class:`LLMClient` of the shared deployment; any
        object with the same async ``chat`` works (bench/synthesis.py's naive baseline).
        ``seed_gate``: the round's :class:`~ray_lcb.synthesis.reserve.SeedGate` actor, or None."""
        self.seed_gate = seed_gate
        self.llm_config = LLMServingConfig(**llm_config)
        self.config = SynthesisConfig(**synthesis_config)
        self.client = client or LLMClient(self.llm_config)
        # The generator's tokenizer: prompt budgets are in the generator's tokens.
        self.tokenizer = load_text_tokenizer(self.llm_config.model)

    async def __call__(self, batch: pa.Table) -> pa.Table:
        return to_table(await asyncio.gather(*[self._guarded(row) for row in batch.to_pylist()]))

    async def _guarded(self, row: dict) -> dict:
        if row["drop_reason"] or row["data_type"] not in self.data_types:
            return row
        try:
            row = await self.process(row)
        except Exception as err:  # noqa: BLE001 - one bad row must not fail the job
            row = self.drop(row, f"{self.stage_name}_error:{type(err).__name__}")
        if row["drop_reason"] and self.seed_gate is not None:
            self.seed_gate.note_drop.remote(row["sample_id"])  # not awaited: the gate only counts it
        return row

    async def process(self, row: dict) -> dict:
        raise NotImplementedError

    def drop(self, row: dict, reason: str) -> dict:
        row["drop_reason"], row["drop_stage"] = reason, self.stage_name
        return row

    async def chat_surviving_failures(self, messages: list[dict], **sampling):
        """``client.chat``, retried when the serving side fails (a replica died or
        restarts, a request was rejected under load); a bad request (ValueError)
        is not retried. Waits 1, 2, 4 ... s between tries."""
        for attempt in range(TRANSIENT_RETRIES + 1):
            try:
                return await self.client.chat(messages, **sampling)
            except Exception as err:  # noqa: BLE001 - classified below
                if _is_bad_request(err) or attempt == TRANSIENT_RETRIES:
                    raise
                logger.warning("LLM call failed (%s: %s); retrying", type(err).__name__, str(err)[:200])
                await asyncio.sleep(min(2 ** attempt, 30))

    async def ask_valid(self, row: dict, prompt: str, validator: Validator, *, max_tokens: int,
                        temperature: float) -> tuple[str | None, str | None]:
        """Ask until ``validator`` accepts (1 + max_retries tries); count calls and tokens on ``row``.

        Retries sample with a fresh seed, so a greedy first try is not simply repeated.
        Returns (accepted text, None) or (None, reason of the last rejection).
        """
        reason = None
        for attempt in range(self.config.max_retries + 1):
            temp = temperature if attempt == 0 else max(temperature, 0.8)
            reply = await self.chat_surviving_failures([{"role": "user", "content": prompt}], max_tokens=max_tokens,
                                                       temperature=temp, seed=row["rng_seed"] + attempt)
            row["llm_calls"] += 1
            row["llm_completion_tokens"] += reply.completion_tokens
            text, reason = validator(reply.text, reply.finish_reason)
            if text is not None:
                return text, None
            row["retries"] += 1 if attempt < self.config.max_retries else 0
        return None, reason


def _is_bad_request(err: Exception) -> bool:
    cause = getattr(err, "cause", None)
    return isinstance(err, (ValueError, TypeError)) or isinstance(cause, (ValueError, TypeError))
