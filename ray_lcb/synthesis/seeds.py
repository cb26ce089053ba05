"""Deterministic seed rows: what each sample id starts from.

Sample ids are ``li-000123`` (long input) and ``lo-000007`` (long output); the
content of a seed depends only on the job seed and the id, so a resumed or
repeated job rebuilds exactly the same seeds and can skip the finished ids.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import pyarrow.parquet as pq

from ray_lcb.synthesis.config import INSTRUCTION_TYPES, SynthesisConfig
from ray_lcb.synthesis.records import LONG_INPUT, LONG_OUTPUT, empty_row


def sample_id(data_type: str, number: int) -> str:
    return f"{'li' if data_type == LONG_INPUT else 'lo'}-{number:06d}"


def id_number(sample_id_: str) -> int:
    return int(sample_id_.split("-")[1])


def row_rng(job_seed: int, sample_id_: str) -> random.Random:
    digest = hashlib.sha256(f"{job_seed}:{sample_id_}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


@dataclass
class CorpusView:
    """The prepared corpus as the seed planner needs it: texts, ids and urls in order."""

    ids: list[str]
    texts: list[str]
    urls: list[str]

    @classmethod
    def load(cls, files: list[str]) -> "CorpusView":
        table = pq.read_table(files, columns=["id", "text", "url"])
        return cls(table.column("id").to_pylist(), table.column("text").to_pylist(), table.column("url").to_pylist())

    def long_documents(self) -> list[tuple[list[str], str]]:
        """Whole source documents: consecutive pieces sharing a url joined back together
        (the corpus reader splits long records into paragraph groups)."""
        documents: list[tuple[list[str], str]] = []
        for doc_id, text, url in zip(self.ids, self.texts, self.urls):
            if documents and url and documents[-1][2] == url:
                documents[-1][0].append(doc_id)
                documents[-1][1].append(text)
            else:
                documents.append(([doc_id], [text], url))
        return [(ids, "\n\n".join(texts)) for ids, texts, _ in documents]


def plan_long_input_seed(corpus: CorpusView, config: SynthesisConfig, job_seed: int, number: int) -> dict:
    sid = sample_id(LONG_INPUT, number)
    rng = row_rng(job_seed, sid)
    text = corpus.texts[rng.randrange(len(corpus.texts))]
    start = rng.randrange(max(1, len(text) - config.seed_chunk_chars))
    return empty_row(
        sample_id=sid, data_type=LONG_INPUT,
        instruction_type=rng.choice(sorted(config.instruction_types)),
        seed_chunk=text[start:start + config.seed_chunk_chars],
        target_tokens=rng.randint(config.target_tokens_min, config.target_tokens_max),
        rng_seed=rng.randrange(2**31))


def long_output_candidates(corpus: CorpusView, config: SynthesisConfig, count_tokens) -> list[tuple[list[str], str, int]]:
    """Source documents whose student-token length is in the long-output range.

    A cheap character estimate (≥ 2 chars per token) prunes before counting."""
    out = []
    for ids, text in corpus.long_documents():
        if len(text) < 2 * config.long_output_tokens_min:
            continue
        tokens = count_tokens(text)
        if config.long_output_tokens_min <= tokens <= config.long_output_tokens_max:
            out.append((ids, text, tokens))
    return out


def plan_long_output_seed(candidates: list, config: SynthesisConfig, job_seed: int, number: int) -> dict:
    sid = sample_id(LONG_OUTPUT, number)
    rng = row_rng(job_seed, sid)
    ids, text, tokens = candidates[rng.randrange(len(candidates))]
    return empty_row(sample_id=sid, data_type=LONG_OUTPUT, instruction_type="back_translation", document=text,
                     doc_ids=list(ids), target_tokens=tokens, rng_seed=rng.randrange(2**31))


def type_description(instruction_type: str) -> str:
    return INSTRUCTION_TYPES[instruction_type]
