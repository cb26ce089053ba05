"""Stage 1: instructions. Long-input rows get a new instruction inspired by a
random corpus chunk (the paper's diversity trick); long-output rows get one
back-translated from their target document."""

from __future__ import annotations

from ray_lcb.synthesis import prompts
from ray_lcb.synthesis.llm_stage import LLMStage
from ray_lcb.synthesis.records import LONG_INPUT, LONG_OUTPUT
from ray_lcb.synthesis.reserve import RESERVE_UNUSED
from ray_lcb.synthesis.seeds import type_description
from ray_lcb.synthesis.validate import validate_instruction


class InstructionStage(LLMStage):
    stage_name = "instruction"
    data_types = (LONG_INPUT, LONG_OUTPUT)

    async def process(self, row: dict) -> dict:
        if self.seed_gate is not None and not await self.seed_gate.admit.remote(row["sample_id"]):
            return self.drop(row, RESERVE_UNUSED)  # a reserve no drop called for
        if row["data_type"] == LONG_INPUT:
            prompt = prompts.INSTRUCTION.format(seed_chunk=row["seed_chunk"],
                                                type_description=type_description(row["instruction_type"]))
        else:
            prompt = self.back_translation_prompt(row["document"])
        text, reason = await self.ask_valid(row, prompt, validate_instruction,
                                            max_tokens=self.config.instruction_max_tokens,
                                            temperature=self.config.temperature)
        if text is None:
            return self.drop(row, reason)
        row["instruction"] = text
        return row

    def back_translation_prompt(self, document: str) -> str:
        """The document, cut to the generator's budget when it is longer (the
        generator is a short-context model; the cut is stated in the prompt)."""
        ids = self.tokenizer.encode(document)
        budget = self.config.chunk_tokens
        note = ""
        if len(ids) > budget:
            document = self.tokenizer.decode(ids[:budget])
            note = f" (its first {budget} tokens of {len(ids)}; the rest continues in the same way)"
        return prompts.BACK_TRANSLATION.format(document=document, truncation_note=note,
                                               num_words=len(self.tokenizer.decode(ids).split()))
