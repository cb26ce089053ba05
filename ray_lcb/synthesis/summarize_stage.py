"""Stage 3: query-focused summaries of the retrieved documents, recursively.

The documents are packed into chunks of at most ``chunk_tokens`` generator
tokens; each chunk is summarised with respect to the instruction (all chunks
of a row concurrently). Chunks with nothing relevant are left out. While the
notes together exceed ``summaries_budget_tokens``, consecutive notes are
grouped into chunks again and summarised one level higher, up to
``max_summary_levels``.
"""

from __future__ import annotations

import asyncio

from ray_lcb.synthesis import prompts
from ray_lcb.synthesis.chunking import chunk_documents, group_texts
from ray_lcb.synthesis.llm_stage import LLMStage
from ray_lcb.synthesis.records import LONG_INPUT
from ray_lcb.synthesis.validate import validate_summary


class QueryFocusedSummaryStage(LLMStage):
    stage_name = "summarize"
    data_types = (LONG_INPUT,)

    async def summarise(self, row: dict, text: str) -> str | None:
        prompt = prompts.QUERY_FOCUSED_SUMMARY.format(
            instruction=row["instruction"], text=text, max_words=int(self.config.summary_max_tokens * 0.6))
        summary, _ = await self.ask_valid(row, prompt, validate_summary, max_tokens=self.config.summary_max_tokens,
                                          temperature=0.0)
        if summary is None or prompts.NOTHING_RELEVANT.lower() in summary.lower()[:40]:
            return None
        return summary

    async def summarise_all(self, row: dict, texts: list[str]) -> list[str]:
        results = await asyncio.gather(*[self.summarise(row, text) for text in texts])
        return [s for s in results if s]

    async def process(self, row: dict) -> dict:
        chunks = chunk_documents(row["doc_texts"], self.tokenizer, self.config.chunk_tokens)
        row["num_chunks"] = len(chunks)
        summaries = await self.summarise_all(row, chunks)
        level = 1
        while True:
            if not summaries:
                return self.drop(row, "no_relevant_content")
            counts = [self.tokenizer.count(s) for s in summaries]
            if sum(counts) <= self.config.summaries_budget_tokens:
                break
            if level >= self.config.max_summary_levels:
                return self.drop(row, "summaries_do_not_fit")
            groups = group_texts(summaries, counts, self.config.chunk_tokens)
            if len(groups) == len(summaries) and len(groups) > 1:
                # Every note fills a chunk on its own: pair them so the recursion shrinks.
                groups = [summaries[i:i + 2] for i in range(0, len(summaries), 2)]
            summaries = await self.summarise_all(row, ["\n\n".join(group) for group in groups])
            level += 1
        row["summaries"] = summaries
        row["summary_levels"] = level
        return row
