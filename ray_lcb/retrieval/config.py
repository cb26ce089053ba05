"""Configs of the retrieval components: embedder, FAISS index, index job, retriever.

``ray_lcb.config`` composes these; each function in ``retrieval/`` takes only
its own sub-config. Settings are described once, here, in ``description=``.
"""

from __future__ import annotations

import warnings
from typing import Literal

from pydantic import Field, model_validator

from ray_lcb.configbase import ComponentConfig

IndexType = Literal["flat", "ivf_flat", "ivf_pq", "hnsw"]

# The task line E5-mistral-7b-instruct was evaluated with for passage retrieval
# (MS MARCO); the model card's example uses the same sentence.
E5_DEFAULT_TASK = "Given a web search query, retrieve relevant passages that answer the query"


class EmbedderConfig(ComponentConfig):
    """Which text embedder turns documents and queries into unit vectors."""

    model: str = Field(
        "bundled:all-minilm-l6-v2",
        description="Model reference for ray_lcb.models.resolve_model: 'bundled:<name>', a local folder or a hub id "
                    "(e.g. 'intfloat/e5-mistral-7b-instruct' with kind='last_token').",
    )
    kind: Literal["mean_pooling", "last_token"] = Field(
        "mean_pooling",
        description="'mean_pooling': sentence-transformers style encoder (mean of token states over the attention "
                    "mask; reads the folder's 1_Pooling/config.json and sentence_bert_config.json). 'last_token': "
                    "E5-mistral style decoder (EOS appended, state of the last real token; queries are prefixed "
                    "'Instruct: {query_instruction}\\nQuery: ', documents are not).",
    )
    max_length: int | None = Field(
        None, ge=8,
        description="Tokens per embedder window, special tokens included. None: sentence_bert_config.json's "
                    "max_seq_length when the folder has one, else min(model max positions, 4096) (4096 is "
                    "E5-mistral's fine-tuning length).",
    )
    long_documents: Literal["truncate", "mean_of_passages"] = Field(
        "mean_of_passages",
        description="What to do with a document longer than one window. 'mean_of_passages' (default) splits it into "
                    "consecutive token windows, embeds each and takes the token-weighted mean, renormalised: the "
                    "synthesis stages read whole retrieved documents, so the vector should stand for all of the "
                    "text, not only its first window (256 tokens for MiniLM, a fraction of a typical Fineweb-Edu "
                    "page). It costs the same tokens as reading the document once. 'truncate' embeds only the first "
                    "window (what sentence-transformers does): cheaper for long documents, blind to their tails.",
    )
    max_passages_per_document: int = Field(
        16, ge=1,
        description="With long_documents='mean_of_passages', at most this many windows per document are embedded; "
                    "text past them is ignored. Bounds the cost of pathological (e.g. 1 MB) documents.",
    )
    query_instruction: str | None = Field(
        None,
        description="Task sentence of the 'last_token' query prefix. None: E5's passage-retrieval task "
                    f"('{E5_DEFAULT_TASK}'). Has no effect with kind='mean_pooling'.",
    )
    normalize: bool = Field(True, description="L2-normalise vectors, so inner product is cosine similarity.")
    batch_size: int = Field(32, ge=1, description="Texts (or passages) per forward pass.")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="Model weights and activations dtype; vectors are always returned as float32.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="'auto': cuda when torch sees a GPU, else cpu.")

    @model_validator(mode="after")
    def _warn_unused(self) -> "EmbedderConfig":
        if self.kind == "mean_pooling" and self.query_instruction is not None:
            warnings.warn("embedder.query_instruction has no effect with embedder.kind='mean_pooling'", stacklevel=2)
        return self

    def vector_space(self) -> dict:
        """The fields that decide which vector a text gets; two configs that agree here can share an index.

        Runtime fields (batch_size, dtype, device) and document-only fields (long_documents,
        max_passages_per_document) are left out: a GPU build in bf16 can be queried on a CPU in fp32.
        """
        return {"model": self.model, "kind": self.kind, "max_length": self.max_length, "normalize": self.normalize}


class FaissIndexConfig(ComponentConfig):
    """The FAISS index structure and its search-time defaults (all similarities are inner products)."""

    index_type: Literal["auto", "flat", "ivf_flat", "ivf_pq", "hnsw"] = Field(
        "auto",
        description="'flat': exact search (IndexFlatIP). 'ivf_flat': inverted lists of full vectors, exact scores on "
                    "the nprobe lists nearest the query. 'ivf_pq': inverted lists of product-quantised codes (pq_m "
                    "bytes per vector; approximate scores, recall@10 ~0.6 in bench/retrieval.py; for corpora whose "
                    "vectors do not fit in RAM). 'hnsw': graph index; fast queries, but no GPU build, and shards are "
                    "independent graphs whose search costs add up. 'auto': flat up to flat_max_vectors, else "
                    "ivf_flat: on 1M MiniLM-shaped vectors (bench/retrieval.py, 2 CPU cores) it reached recall@10 "
                    "0.999 at 217x the queries/s of flat with nprobe=32, trains once for all shards (a sharded "
                    "search equals an unsharded one), memory-maps, and builds on GPU FAISS.",
    )
    flat_max_vectors: int = Field(
        200_000, ge=0, description="With index_type='auto', corpora up to this size get an exact flat index.")
    nlist: int | None = Field(
        None, ge=1,
        description="IVF lists. None: 4*sqrt(N) (the low end of FAISS's 4..16*sqrt(N) guideline: fewer lists train "
                    "and fill faster), at most min(N, train_sample_size)/39 so that every centroid has the 39 "
                    "training points k-means asks for.")
    nprobe: int = Field(
        32, ge=1, description="IVF lists scanned per query (search-time default; RetrieverConfig.nprobe overrides).")
    pq_m: int = Field(48, ge=1, description="ivf_pq: sub-quantisers per vector; must divide the embedding dim.")
    pq_nbits: int = Field(8, ge=1, le=16, description="ivf_pq: bits per sub-quantiser code.")
    hnsw_m: int = Field(32, ge=2, description="hnsw: graph neighbours per node.")
    hnsw_ef_construction: int = Field(80, ge=1, description="hnsw: candidate list size while building.")
    hnsw_ef_search: int = Field(128, ge=1, description="hnsw: candidate list size per query (search-time default).")
    train_sample_size: int = Field(
        100_000, ge=1, description="IVF training sample (random row groups of the document store); one quantizer "
                                   "is trained and shared by every shard, so shard scores are comparable.")
    max_vectors_per_shard: int = Field(
        2_000_000, ge=1,
        description="Vectors per FAISS shard (one Ray task builds each; a shard task holds its vectors in memory: "
                    "2M x 384 x 4 B = 3 GB, so lower it for wide embedders such as E5's 4096 dims).")
    num_cpus_per_shard_task: int = Field(2, ge=1, description="CPUs (FAISS OpenMP threads) per shard build task.")
    faiss_gpu: Literal["auto", "off"] = Field(
        "auto", description="'auto': train and fill indexes on GPU FAISS when faiss has GPUs (has_faiss_gpu()); "
                            "the files written are CPU indexes either way.")
    seed: int = Field(0, description="Seed of the training sample and of k-means.")


class IndexConfig(ComponentConfig):
    """The embedding job that turns a corpus into an index folder (ray_lcb.retrieval.build_index)."""

    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig, description="Embedder of documents and queries.")
    faiss: FaissIndexConfig = Field(default_factory=FaissIndexConfig, description="FAISS index structure.")
    max_embed_actors: int = Field(
        2, ge=1, description="Upper bound of the autoscaling embedding actor pool (ActorPoolStrategy max_size).")
    num_cpus_per_embed_actor: float = Field(1.0, gt=0, description="CPUs reserved by each embedding actor.")
    num_gpus_per_embed_actor: float = Field(
        0.0, ge=0, description="GPUs per embedding actor; > 0 schedules the actors on GPU nodes.")
    embed_batch_size: int = Field(
        256, ge=1, description="Rows per Ray Data batch handed to an embedding actor (it runs embedder.batch_size "
                               "texts per forward pass inside).")
    store_row_group_size: int = Field(
        512, ge=1,
        description="Rows per Parquet row group of the document store. A text lookup decodes one row group, so "
                    "smaller groups make retrieval cheaper and files slightly larger; shards are cut at row groups.")


class RetrieverConfig(ComponentConfig):
    """How a Retriever queries an index folder."""

    top_k: int = Field(10, ge=1, description="Documents returned per query.")
    embedder: EmbedderConfig | None = Field(
        None,
        description="None: the embedder recorded in the index's manifest. If set, its vector_space() fields must "
                    "match the manifest's (else a ValueError names both); runtime fields (device, dtype, "
                    "batch_size) are taken from here.")
    nprobe: int | None = Field(None, ge=1, description="IVF lists scanned per query; None: the manifest's value.")
    ef_search: int | None = Field(None, ge=1, description="HNSW candidate list per query; None: the manifest's value.")
    memory_map: bool = Field(
        True, description="Memory-map index files (FAISS IO_FLAG_MMAP_IFC for flat/hnsw, IO_FLAG_MMAP for IVF), so "
                          "actors on one node share the page cache instead of each copying the index into RAM.")
    return_text: bool = Field(True, description="Look texts up in the document store (False: ids and scores only).")
    query_column: str = Field("query", description="Input column holding the query text when used in map_batches.")
    max_cached_row_groups: int = Field(
        32, ge=1, description="Decoded document-store row groups kept in an LRU cache for text lookups.")
