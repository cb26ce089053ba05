"""Query an index folder: embed queries, search every FAISS shard, merge the top-k, look texts up.

Used directly, by the synthesis retrieval stage as a Ray Data actor class, and by
the CLI (``ray-lcb search --index INDEX_DIR --top-k K "query" ...`` prints what
:func:`search` returns, one JSON line per query)::

    retriever = Retriever("runs/index", RetrieverConfig(top_k=5))
    hits = retriever.retrieve(["how do startups raise money?"])[0]   # [RetrievedDocument, ...]

    ds.map_batches(Retriever, fn_constructor_kwargs={"index_dir": "runs/index", "config": RetrieverConfig()},
                   compute=ray.data.ActorPoolStrategy(min_size=1, max_size=4), batch_size=64)

Index files are memory-mapped (``RetrieverConfig.memory_map``), so several
retriever actors on a node share one copy of the index in the page cache.
Shapes: Q queries, K results, D embedding dim.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ray_lcb.retrieval.config import RetrieverConfig
from ray_lcb.retrieval.doc_store import DocumentStore, read_id_map
from ray_lcb.retrieval.embedders import build_embedder
from ray_lcb.retrieval.faiss_index import IndexFileError, ShardedIndex, read_index_file
from ray_lcb.retrieval.manifest import check_embedder, read_manifest


@dataclass(frozen=True)
class RetrievedDocument:
    id: str
    score: float  # inner product with the query (cosine for normalised embedders)
    row: int  # global row in the document store
    text: str | None = None  # None when RetrieverConfig.return_text is False
    url: str | None = None


class Retriever:
    """Loads an index folder and its embedder once; answers batches of queries.

    Raises (at construction):
        ValueError: not an index folder, embedder mismatch (names both), or an
            index file that is missing, truncated or corrupt (names the file).
    """

    def __init__(self, index_dir: str | Path, config: RetrieverConfig | None = None):
        self.index_dir = Path(index_dir)
        self.config = config or RetrieverConfig()
        self.manifest = manifest = read_manifest(self.index_dir)
        if self.config.embedder is not None:
            check_embedder(manifest, self.config.embedder, self.index_dir)
        self.embedder = build_embedder(self.config.embedder or manifest.embedder)
        if self.embedder.dim != manifest.dim:
            raise ValueError(f"embedder '{manifest.embedder.model}' gives {self.embedder.dim}-dim vectors but index "
                             f"'{self.index_dir}' holds {manifest.dim}-dim ones; rebuild the index")

        shards = []
        for shard in manifest.shards:
            index = read_index_file(self.index_dir / shard.file, manifest.index_type, self.config.memory_map,
                                    shard.num_bytes)
            if index.ntotal != shard.num_vectors or index.d != manifest.dim:
                raise IndexFileError(f"index file '{self.index_dir / shard.file}' holds {index.ntotal} vectors of "
                                     f"dim {index.d}, manifest.json says {shard.num_vectors} of dim {manifest.dim}; "
                                     f"rebuild the index folder")
            shards.append(index)
        self.index = ShardedIndex(shards, [s.first_row for s in manifest.shards])
        self.index.set_search_params(nprobe=self.config.nprobe or manifest.index_params.nprobe,
                                     ef_search=self.config.ef_search or manifest.index_params.hnsw_ef_search)
        self.ids = read_id_map(self.index_dir / manifest.id_map_file)
        if len(self.ids) != manifest.num_vectors:
            raise ValueError(f"id map '{self.index_dir / manifest.id_map_file}' has {len(self.ids)} ids, manifest.json "
                             f"says {manifest.num_vectors}; rebuild the index folder")
        self.store = (DocumentStore(self.index_dir / manifest.store_dir, manifest.store_files,
                                    self.config.max_cached_row_groups) if self.config.return_text else None)

    def search_vectors(self, queries_QD: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over all shards for query vectors: (scores [Q, K], global rows [Q, K], -1 past the corpus)."""
        return self.index.search(queries_QD, top_k)

    def retrieve(self, queries: Sequence[str], top_k: int | None = None) -> list[list[RetrievedDocument]]:
        """The best ``top_k`` (default ``config.top_k``) documents for each query, best first."""
        top_k = top_k or self.config.top_k
        if not len(queries):
            return []
        scores_QK, rows_QK = self.search_vectors(self.embedder.embed_queries(list(queries)), top_k)
        found = rows_QK >= 0
        flat_rows = rows_QK[found]
        ids = self.ids.take(flat_rows).to_pylist()
        records = self.store.lookup(flat_rows, columns=("text", "url")) if self.store else [{}] * len(flat_rows)
        hits = iter(
            RetrievedDocument(id=i, score=float(s), row=int(r), text=rec.get("text"), url=rec.get("url"))
            for i, s, r, rec in zip(ids, scores_QK[found], flat_rows, records)
        )
        # Rows are taken in row-major order, so consuming one shared iterator per query restores the grouping.
        return [[next(hits) for _ in range(int(n))] for n in found.sum(axis=1)]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data ``map_batches`` entry: adds ``retrieved_ids``, ``retrieved_scores`` (and ``retrieved_texts``)."""
        if self.config.query_column not in batch:
            raise ValueError(f"retriever.query_column='{self.config.query_column}' is not a column of the batch "
                             f"(columns: {sorted(batch)}); set retriever.query_column")
        results = self.retrieve([str(q) for q in batch[self.config.query_column]])
        out = dict(batch)
        out["retrieved_ids"] = _object_array([[h.id for h in hits] for hits in results])
        out["retrieved_scores"] = _object_array([np.array([h.score for h in hits], np.float32) for hits in results])
        if self.store is not None:
            out["retrieved_texts"] = _object_array([[h.text for h in hits] for hits in results])
        return out


def _object_array(items: list) -> np.ndarray:
    # np.array(list_of_equal_length_lists) would make a 2-D array; Ray Data wants one object per row.
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


def search(index_dir: str | Path, queries: Sequence[str], top_k: int = 10,
           config: RetrieverConfig | None = None) -> list[dict]:
    """One-shot search for the CLI: ``[{"query": q, "results": [{"id", "score", "text", "url"}, ...]}, ...]``."""
    retriever = Retriever(index_dir, config)
    return [
        {"query": query, "results": [{k: v for k, v in asdict(hit).items() if k != "row"} for hit in hits]}
        for query, hits in zip(queries, retriever.retrieve(queries, top_k))
    ]
