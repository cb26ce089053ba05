"""Shared fixtures: one local Ray instance per test session, offline models."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Spinning OpenMP threads starve each other on 2 shared cores (FAISS training ran 8x slower);
# read once when the OpenMP runtime loads, so it must be set before torch/faiss are imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by every test that needs one (start-up costs ~6 s)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
        # Serve's HTTP proxy on a free localhost port (8000 may be taken on a shared machine);
        # later serve.start calls in this cluster keep these options.
        from ray import serve

        serve.start(http_options={"host": "127.0.0.1", "port": _free_port()})
    yield ray
    # Left running for the rest of the session; pytest's exit shuts it down.


@pytest.fixture(scope="session")
def smollm2_path():
    from ray_lcb.models import resolve_model

    return resolve_model("bundled:smollm2-135m-instruct")


@pytest.fixture(scope="session")
def serve_http_port(ray_session) -> int:
    """The port of the session cluster's Serve HTTP proxy."""
    from ray.serve.context import _get_global_client

    return _get_global_client().http_config.port


# Tiny but real: the real SmolLM2 and MiniLM on the offline corpus, short targets
# so a run takes about a minute on 2 cores. The summaries budget forces the
# recursive summarisation whatever the model writes: 256-token chunks give each
# sample 4-8 notes, more than 32 tokens together, while one note of at most 24
# tokens (what a second level makes of them) fits.
TINY_SYNTHESIS = {
    "num_samples": 2, "num_long_output_samples": 1,
    "target_tokens_min": 1024, "target_tokens_max": 2048,
    "long_output_tokens_min": 512, "long_output_tokens_max": 4096,
    "retrieval_candidates": 32, "chunk_tokens": 256, "summary_max_tokens": 24, "summaries_budget_tokens": 32,
    "instruction_max_tokens": 64, "response_max_tokens": 96, "min_response_chars": 30, "truncated_responses": "trim",
    "max_retries": 1, "max_rounds": 4, "samples_per_shard": 1,
}


@pytest.fixture(scope="session")
def tiny_synthesis():
    return dict(TINY_SYNTHESIS)


@pytest.fixture(scope="session")
def synthesized(ray_session, tmp_path_factory):
    """One tiny synthesis run shared by the tests that need real samples
    (treat its folder as read-only: copy it before resuming into it)."""
    from ray_lcb.corpus import CorpusConfig
    from ray_lcb.retrieval import IndexConfig
    from ray_lcb.serving.config import LLMServingConfig
    from ray_lcb.synthesis.config import SynthesisConfig
    from ray_lcb.synthesis.pipeline import SynthesisInputs, run_synthesis

    out = tmp_path_factory.mktemp("synth")
    config = SynthesisConfig(**TINY_SYNTHESIS)
    inputs = SynthesisInputs(corpus=CorpusConfig(), llm=LLMServingConfig(), index=IndexConfig())
    report = run_synthesis(config, inputs, out, progress=lambda line: None)
    return out, config, report
