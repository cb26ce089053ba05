"""Stage 5: the training sample. Input = instruction + the raw retrieved
documents (not the summaries); target = the response. Long-output samples:
input = the back-translated instruction, target = the document itself."""

from __future__ import annotations

import pyarrow as pa

from ray_lcb.synthesis.chunking import document_block
from ray_lcb.synthesis.config import SynthesisConfig
from ray_lcb.synthesis.prompts import PROMPT_VERSION
from ray_lcb.synthesis.records import LONG_INPUT, SAMPLE_SCHEMA
from ray_lcb.text_tokenizer import load_chat_token_counter, load_text_tokenizer

OUTPUT_SCHEMA = SAMPLE_SCHEMA.append(pa.field("drop_reason", pa.string())).append(pa.field("drop_stage", pa.string()))


def training_input(instruction: str, documents: list[str], position: str) -> str:
    blocks = "\n\n".join(document_block(i, text) for i, text in enumerate(documents, start=1))
    return f"{instruction}\n\n{blocks}" if position == "before" else f"{blocks}\n\n{instruction}"


class SampleStage:
    def __init__(self, synthesis_config: dict, generator_model: str, student_model: str, job_seed: int):
        self.config = SynthesisConfig(**synthesis_config)
        self.generator_model, self.student_model, self.job_seed = generator_model, student_model, job_seed
        # Lengths in the student's tokens, without transformers' tokenizer classes (and torch): this
        # actor starts with the others, on the cores the LLM replica is already working on.
        tokenizer = load_text_tokenizer(student_model)
        self.count = tokenizer.count
        self.count_chat = load_chat_token_counter(student_model, tokenizer)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self.assemble(row) for row in batch.to_pylist()], schema=OUTPUT_SCHEMA)

    def assemble(self, row: dict) -> dict:
        out = {name: row.get(name) for name in OUTPUT_SCHEMA.names}
        out.update(messages=[], kind="long", doc_ids=row["doc_ids"] or [], summaries=row["summaries"] or [],
                   num_documents=len(row["doc_ids"] or []), num_summaries=len(row["summaries"] or []),
                   generator_model=self.generator_model, student_model=self.student_model,
                   prompt_version=PROMPT_VERSION, seed=self.job_seed,
                   instruction_position=self.config.instruction_position if row["data_type"] == LONG_INPUT else None)
        if row["drop_reason"]:
            return out
        if row["data_type"] == LONG_INPUT:
            user = training_input(row["instruction"], row["doc_texts"], self.config.instruction_position)
            assistant = row["response"]
        else:
            user, assistant = row["instruction"], row["document"]
        out["messages"] = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        out["input_tokens"] = self.count(user)
        out["output_tokens"] = self.count(assistant)
        out["total_tokens"] = self.count_chat(out["messages"])
        if row["data_type"] == LONG_INPUT and out["input_tokens"] < self.config.target_tokens_min:
            out["drop_reason"], out["drop_stage"] = "input_below_target_range", "sample"
        return out
