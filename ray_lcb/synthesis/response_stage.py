"""Stage 4: the response, written from the instruction and the final summaries."""

from __future__ import annotations

from ray_lcb.synthesis import prompts
from ray_lcb.synthesis.llm_stage import LLMStage
from ray_lcb.synthesis.records import LONG_INPUT
from ray_lcb.synthesis.validate import validate_response


class ResponseStage(LLMStage):
    stage_name = "response"
    data_types = (LONG_INPUT,)

    async def process(self, row: dict) -> dict:
        notes = "\n\n".join(f"- {summary}" for summary in row["summaries"])
        prompt = prompts.RESPONSE.format(summaries=notes, instruction=row["instruction"])
        text, reason = await self.ask_valid(
            row, prompt, lambda t, f: validate_response(t, f, min_chars=self.config.min_response_chars,
                                           instruction=row["instruction"],
                                           trim_truncated=self.config.truncated_responses == "trim"),
            max_tokens=self.config.response_max_tokens, temperature=self.config.temperature / 2)
        if text is None:
            return self.drop(row, reason)
        row["response"] = text
        return row
