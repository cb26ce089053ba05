"""The whole synthesis job on the real small models, plus garbage-output handling."""

import asyncio
import json

import pyarrow.parquet as pq

from ray_lcb.corpus import CorpusConfig
from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.serving.launch import start_llm_service
from ray_lcb.synthesis.config import SynthesisConfig
from ray_lcb.synthesis.instruction_stage import InstructionStage
from ray_lcb.synthesis.pipeline import load_samples, prepare_cached_corpus
from ray_lcb.synthesis.records import empty_row, to_table
from ray_lcb.synthesis.sample_stage import training_input


def test_samples_and_report(synthesized):
    out, config, report = synthesized
    samples = load_samples(out)  # loads with datasets.load_dataset("parquet", ...)
    assert report["samples"]["total"] == len(samples) >= 1
    saved = json.loads((out / "report.json").read_text())
    assert saved["samples"] == report["samples"] and (out / "length_histogram.png").stat().st_size > 1000
    processed = report["rows_reaching_stage"]["instruction"]
    assert processed == report["samples"]["total"] + report["dropped"]["total"]
    assert report["this_run"]["llm_completion_tokens"] > 0


def test_long_input_samples_hold_raw_documents_within_target(synthesized):
    out, config, _ = synthesized
    corpus = prepare_cached_corpus(CorpusConfig())
    texts = dict(zip(*[pq.read_table(corpus.files).column(c).to_pylist() for c in ("id", "text")]))
    rows = [r for r in load_samples(out) if r["data_type"] == "long_input"]
    assert rows, "no long-input sample survived"
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant" and assistant["content"].strip()
        assert row["instruction"].strip() and user["content"].endswith(row["instruction"])  # position "after"
        assert row["doc_ids"] and all(doc_id in texts for doc_id in row["doc_ids"])
        for doc_id in row["doc_ids"]:
            assert texts[doc_id] in user["content"]  # raw documents, verbatim
        assert user["content"] == training_input(row["instruction"], [texts[d] for d in row["doc_ids"]], "after")
        assert config.target_tokens_min <= row["input_tokens"] <= config.target_tokens_max
        assert row["summaries"] and row["summary_levels"] >= 2  # the small budget forced a second level
        assert row["prompt_version"] and row["generator_model"] == "bundled:smollm2-135m-instruct"


def test_long_output_sample_targets_a_real_document(synthesized):
    out, config, report = synthesized
    rows = [r for r in load_samples(out) if r["data_type"] == "long_output"]
    if not rows:
        assert report["dropped"]["by_stage"].get("instruction"), "long-output sample neither made nor dropped"
        return
    row = rows[0]
    assert config.long_output_tokens_min <= row["output_tokens"] <= config.long_output_tokens_max + 8
    assert row["messages"][0]["content"] == row["instruction"] and len(row["doc_ids"]) >= 1


def test_garbage_llm_output_is_retried_then_dropped_and_counted(ray_session, tiny_synthesis):
    llm = LLMServingConfig()
    start_llm_service(llm)
    # A 2-token budget makes every instruction run into its limit ("endless" output).
    config = SynthesisConfig(**{**tiny_synthesis, "instruction_max_tokens": 2, "max_retries": 2})
    stage = InstructionStage(llm.model_dump(), config.model_dump())
    rows = [empty_row(sample_id=f"li-{i:06d}", data_type="long_input", instruction_type="comparison",
                      seed_chunk="Bees make honey from nectar.", target_tokens=1024, rng_seed=i) for i in range(3)]
    rows.append(empty_row(sample_id="lo-000000", data_type="long_output", document="A short essay. " * 50, rng_seed=9))
    out = asyncio.run(stage(to_table(rows))).to_pylist()
    for row in out:
        assert row["drop_reason"] == "instruction_truncated" and row["drop_stage"] == "instruction"
        assert row["llm_calls"] == 3 and row["retries"] == 2  # one try + two retries
    # A row already dropped upstream passes through untouched.
    passed = asyncio.run(stage(to_table(out[:1]))).to_pylist()[0]
    assert passed["llm_calls"] == 3
