"""Fixtures of the retrieval tests: Paul Graham paragraphs, MiniLM, one index built by the Ray job.

Everything expensive is session-scoped: the real MiniLM embeds 200 paragraphs
once, and the Ray Data job builds one multi-shard index that several test files
query.
"""

import os

# This machine's 2 cores are shared; OpenMP threads that spin while waiting (libgomp's default) then starve
# each other: FAISS PQ training took 48 s instead of 6 s. Read once, when torch/faiss load OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest

from ray_lcb.retrieval import EmbedderConfig, build_embedder

from pg_corpus import NUM_DOCUMENTS, SMALL_SHARDS, WORDS_PER_DOCUMENT, paul_graham_documents, query_sentence


@pytest.fixture(scope="session")
def pg_documents() -> list[dict]:
    return paul_graham_documents(NUM_DOCUMENTS, WORDS_PER_DOCUMENT)


@pytest.fixture(scope="session")
def minilm():
    return build_embedder(EmbedderConfig())


@pytest.fixture(scope="session")
def pg_vectors(pg_documents, minilm) -> np.ndarray:
    """MiniLM vectors of pg_documents, [N, 384]."""
    return minilm.embed_documents([d["text"] for d in pg_documents])


@pytest.fixture(scope="session")
def pg_query_vectors(pg_documents, minilm) -> np.ndarray:
    """MiniLM query vectors of one sentence of each document, [N, 384]."""
    return minilm.embed_queries([query_sentence(d["text"]) for d in pg_documents])


@pytest.fixture(scope="session")
def built_index(ray_session, pg_documents, tmp_path_factory):
    """(index_dir, manifest) of pg_documents built by the Ray Data job into several flat shards."""
    import ray

    from ray_lcb.retrieval import build_index

    out_dir = tmp_path_factory.mktemp("pg_index") / "index"
    dataset = ray.data.from_items(pg_documents, override_num_blocks=3)
    return out_dir, build_index(dataset, SMALL_SHARDS, out_dir)
