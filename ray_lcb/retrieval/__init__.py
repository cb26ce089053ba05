"""Retrieval: embed a corpus, build a (sharded, memory-mapped) FAISS index, retrieve documents for queries."""

from ray_lcb.retrieval.config import EmbedderConfig, FaissIndexConfig, IndexConfig, RetrieverConfig
from ray_lcb.retrieval.embedders import LastTokenEmbedder, MeanPoolingEmbedder, TextEmbedder, build_embedder
from ray_lcb.retrieval.faiss_gpu import has_faiss_gpu
from ray_lcb.retrieval.faiss_index import IndexFileError, ShardedIndex
from ray_lcb.retrieval.index_job import build_index, reindex
from ray_lcb.retrieval.manifest import IndexManifest, read_manifest
from ray_lcb.retrieval.retriever import RetrievedDocument, Retriever, search

__all__ = [
    "EmbedderConfig", "FaissIndexConfig", "IndexConfig", "RetrieverConfig",
    "TextEmbedder", "MeanPoolingEmbedder", "LastTokenEmbedder", "build_embedder", "has_faiss_gpu",
    "IndexFileError", "ShardedIndex", "build_index", "reindex", "IndexManifest", "read_manifest",
    "RetrievedDocument", "Retriever", "search",
]
