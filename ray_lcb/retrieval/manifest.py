"""``manifest.json`` of an index folder: what was built, from which embedder, in which files.

Written last by ``index_job.build_index`` (a folder without it is not an index),
read by ``retriever.Retriever``. Layout of an index folder::

    manifest.json        this record
    ids.arrow            id map: document id of every global row (Arrow IPC, memory-mapped)
    shard_00000.faiss    FAISS shards; shard s covers rows [first_row, first_row + num_vectors)
    documents/*.parquet  document store: id, text, url, score, embedding; global row order =
                         files in manifest order, rows in file order
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ray_lcb.retrieval.config import EmbedderConfig, FaissIndexConfig

MANIFEST_FILE = "manifest.json"
ID_MAP_FILE = "ids.arrow"
STORE_DIR = "documents"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ShardFile(_Record):
    file: str = Field(description="FAISS file name inside the index folder.")
    first_row: int = Field(description="Global store row of the shard's label 0.")
    num_vectors: int = Field(description="Vectors in the shard.")
    num_bytes: int = Field(description="File size, checked at load to catch truncated copies.")


class StoreFile(_Record):
    file: str = Field(description="Parquet file name inside documents/.")
    num_rows: int = Field(description="Rows in the file.")


class IndexManifest(_Record):
    format_version: Literal[1] = Field(1, description="Layout version of the index folder.")
    ray_lcb_version: str = Field(description="ray_lcb version that built the folder.")
    created_at: str = Field(description="UTC build time, ISO 8601.")
    embedder: EmbedderConfig = Field(description="Embedder the vectors were made with.")
    embedder_max_length: int = Field(description="Window (tokens) the embedder actually used.")
    dim: int = Field(description="Embedding dimension.")
    normalize: bool = Field(description="Vectors are unit length (inner product = cosine).")
    metric: Literal["inner_product"] = Field("inner_product", description="FAISS metric.")
    index_type: Literal["flat", "ivf_flat", "ivf_pq", "hnsw"] = Field(description="Resolved FAISS index type.")
    index_params: FaissIndexConfig = Field(description="Resolved FAISS settings (nlist, nprobe, ...).")
    num_vectors: int = Field(description="Vectors (= documents) in the index.")
    shards: list[ShardFile] = Field(description="FAISS shard files, in row order.")
    id_map_file: str = Field(ID_MAP_FILE, description="Arrow IPC file with the id of every global row.")
    store_dir: str = Field(STORE_DIR, description="Folder of the document store.")
    store_files: list[StoreFile] = Field(description="Document store files, in row order.")


def ray_lcb_version() -> str:
    try:
        return version("ray_lcb")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_manifest(manifest: IndexManifest, index_dir: Path) -> None:
    tmp = index_dir / (MANIFEST_FILE + ".tmp")
    tmp.write_text(manifest.model_dump_json(indent=2))
    tmp.replace(index_dir / MANIFEST_FILE)


def read_manifest(index_dir: str | Path) -> IndexManifest:
    """Parse ``index_dir/manifest.json``.

    Raises:
        ValueError: the folder is not an index (no manifest) or the manifest is damaged.
    """
    path = Path(index_dir) / MANIFEST_FILE
    if not path.is_file():
        raise ValueError(f"'{index_dir}' is not an index folder: {MANIFEST_FILE} is missing (an interrupted build "
                         f"leaves none); build it with ray_lcb.retrieval.build_index / `ray-lcb index`")
    try:
        return IndexManifest.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as err:
        raise ValueError(f"'{path}' is damaged or from another ray_lcb version: {err}") from err


def check_embedder(manifest: IndexManifest, embedder: EmbedderConfig, index_dir: str | Path) -> None:
    """Raise unless ``embedder`` produces vectors in the space the index was built in.

    Raises:
        ValueError: naming the index's embedder and the caller's.
    """
    built, given = manifest.embedder.vector_space(), embedder.vector_space()
    if built != given:
        diff = {k: (built[k], given[k]) for k in built if built[k] != given[k]}
        raise ValueError(
            f"index '{index_dir}' was built with embedder {built}, but the retriever was given {given} "
            f"(differences, index vs given: {diff}); use the index's embedder (retriever.embedder=None) "
            f"or rebuild the index with yours")
