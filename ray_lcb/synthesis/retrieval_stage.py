"""Stage 2: documents for each instruction, filled to the sample's target length.

Retrieves ``retrieval_candidates`` documents for the instruction, drops
duplicates (same id or same text), and adds documents in score order until
the training input -- instruction plus document blocks, measured in the
*student* model's tokens -- reaches the row's target, never passing
``target_tokens_max`` (a document that would is skipped for a smaller one).
The order is then shuffled with the row's seed, so position carries no
relevance signal.
"""

from __future__ import annotations

import hashlib
import random

import pyarrow as pa

from ray_lcb.synthesis.chunking import document_block
from ray_lcb.synthesis.config import SynthesisConfig
from ray_lcb.synthesis.records import LONG_INPUT, to_table
from ray_lcb.text_tokenizer import load_text_tokenizer

# Tokens reserved for the chat template and separators around the documents.
TEMPLATE_RESERVE = 64


class RetrievalStage:
    def __init__(self, index_dir: str, synthesis_config: dict, student_model: str):
        from ray_lcb.retrieval import Retriever, RetrieverConfig

        self.config = SynthesisConfig(**synthesis_config)
        self.retriever = Retriever(index_dir, RetrieverConfig(top_k=self.config.retrieval_candidates))
        self.student_tokenizer = load_text_tokenizer(student_model)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        todo = [r for r in rows if r["data_type"] == LONG_INPUT and not r["drop_reason"]]
        hits = self.retriever.retrieve([r["instruction"] for r in todo]) if todo else []
        for row, found in zip(todo, hits):
            self.fill(row, found)
        return to_table(rows)

    def fill(self, row: dict, found: list) -> None:
        overhead = self.student_tokenizer.count(row["instruction"]) + TEMPLATE_RESERVE
        goal, limit = row["target_tokens"] - overhead, self.config.target_tokens_max - overhead
        chosen, seen, used = [], set(), 0
        for hit in found:
            if used >= goal:
                break
            digest = hashlib.sha1(hit.text.encode()).digest()
            if hit.id in seen or digest in seen:
                continue
            cost = self.student_tokenizer.count(document_block(len(chosen) + 1, hit.text)) + 2
            if used + cost > limit:
                continue  # a smaller document further down may still fit
            chosen.append(hit)
            seen.update((hit.id, digest))
            used += cost
        if not chosen:
            row["drop_reason"], row["drop_stage"] = "no_documents_fit", "retrieval"
            return
        random.Random(row["rng_seed"]).shuffle(chosen)
        row["doc_ids"] = [hit.id for hit in chosen]
        row["doc_texts"] = [hit.text for hit in chosen]
