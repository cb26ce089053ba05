import pytest

# Tiny but real: the real SmolLM2 and MiniLM on the offline corpus, short targets
# so a run takes about a minute on 2 cores. A small summaries budget forces the
# recursive summarisation.
TINY_SYNTHESIS = {
    "num_samples": 2, "num_long_output_samples": 1,
    "target_tokens_min": 1024, "target_tokens_max": 2048,
    "long_output_tokens_min": 512, "long_output_tokens_max": 4096,
    "retrieval_candidates": 32, "chunk_tokens": 512, "summary_max_tokens": 64, "summaries_budget_tokens": 100,
    "instruction_max_tokens": 64, "response_max_tokens": 96, "min_response_chars": 30, "truncated_responses": "trim",
    "max_retries": 1, "max_rounds": 4, "samples_per_shard": 1,
}


@pytest.fixture(scope="session")
def tiny_synthesis():
    return dict(TINY_SYNTHESIS)
