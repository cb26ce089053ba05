"""Build an index folder from a corpus: embed with a Ray Data actor pool, then build FAISS shards as Ray tasks.

Called by the CLI (``ray-lcb index``) and by tests::

    manifest = build_index(corpus_dataset, IndexConfig(), "runs/index")
    manifest = reindex("runs/index", FaissIndexConfig(index_type="hnsw"))  # new shards, same vectors

Steps (the folder layout is in ``manifest.py``):

1. one streaming pass over the corpus: normalise columns, embed (an
   autoscaling pool of ``EmbedDocuments`` actors), write the document store
   (Parquet, id/text/url/score/embedding, small row groups);
2. the id map (``ids.arrow``), checking that ids are unique;
3. train the FAISS index once on a random sample of row groups (IVF types);
4. one Ray task per shard of consecutive row groups fills a copy of the
   trained index with its rows and writes ``shard_NNNNN.faiss``;
5. ``manifest.json``, last: a folder without one is not an index.

The corpus is read once; everything after step 1 reads the store.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import ray
import torch

from ray_lcb.retrieval.config import EmbedderConfig, FaissIndexConfig, IndexConfig
from ray_lcb.retrieval.doc_store import (
    REQUIRED_COLUMNS, RowGroup, embedding_dim, embeddings_column, list_row_groups, list_store_files,
    normalize_documents, read_embeddings, write_id_map,
)
from ray_lcb.retrieval.embedders import build_embedder, window_length
from ray_lcb.retrieval.faiss_gpu import has_faiss_gpu
from ray_lcb.retrieval.faiss_index import fill_index, new_index, resolve_faiss_config, train_index, write_index_file
from ray_lcb.retrieval.manifest import (
    ID_MAP_FILE, MANIFEST_FILE, STORE_DIR, IndexManifest, ShardFile, StoreFile, ray_lcb_version, read_manifest,
    utc_now, write_manifest,
)


class EmbedDocuments:
    """Ray Data actor: a batch of corpus rows -> the store columns plus an ``embedding`` column."""

    def __init__(self, config: EmbedderConfig, num_threads: int | None = None):
        if num_threads:
            torch.set_num_threads(num_threads)
        self.embedder = build_embedder(config)

    def __call__(self, batch: pa.Table) -> pa.Table:
        table = normalize_documents(batch)
        vectors_ND = self.embedder.embed_documents(table.column("text").to_pylist())
        return table.append_column("embedding", embeddings_column(vectors_ND))


def build_index(dataset: ray.data.Dataset, config: IndexConfig, out_dir: str | Path, *,
                overwrite: bool = False) -> IndexManifest:
    """Embed ``dataset`` and write a complete index folder to ``out_dir``.

    Args:
        dataset: corpus rows with at least ``id`` (unique) and ``text``; ``url``
            and ``score`` are kept when present.
        config: embedder, FAISS and job settings.
        out_dir: folder to create (must be empty or absent unless ``overwrite``). On a
            multi-node cluster it must be storage every node sees (NFS, EFS, a shared
            disk): Ray's Parquet writer and the shard tasks write from whichever node
            they run on.
        overwrite: replace an index folder already at ``out_dir``.

    Returns:
        The manifest written to ``out_dir/manifest.json``.

    Raises:
        ValueError: empty corpus, missing columns, duplicate ids, or an occupied ``out_dir``.
    """
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)
    _check_columns(dataset)
    store_dir = out_dir / STORE_DIR

    gpu_args = {"num_gpus": config.num_gpus_per_embed_actor} if config.num_gpus_per_embed_actor > 0 else {}
    embedded = dataset.map_batches(
        EmbedDocuments,
        fn_constructor_kwargs={"config": config.embedder,
                               "num_threads": max(1, int(config.num_cpus_per_embed_actor))},
        batch_format="pyarrow",
        batch_size=config.embed_batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=config.max_embed_actors),
        num_cpus=config.num_cpus_per_embed_actor,
        **gpu_args,
    )
    embedded.write_parquet(str(store_dir), row_group_size=config.store_row_group_size)

    store_files = list_store_files(store_dir)
    num_vectors = sum(f.num_rows for f in store_files)
    if num_vectors == 0:
        shutil.rmtree(store_dir, ignore_errors=True)
        raise ValueError("the corpus is empty: no documents to index; check the corpus reader's input paths/filters")
    write_id_map(store_dir, store_files, out_dir / ID_MAP_FILE)
    return _index_store(out_dir, store_files, config.embedder, config.faiss)


def reindex(index_dir: str | Path, faiss_config: FaissIndexConfig) -> IndexManifest:
    """Rebuild the FAISS shards of an index folder from the vectors in its store (no re-embedding).

    For trying another index type or shard size on an embedded corpus. The old
    manifest is removed first, so an interrupted rebuild leaves no index that
    points at half-written shards.
    """
    index_dir = Path(index_dir)
    old = read_manifest(index_dir)
    (index_dir / MANIFEST_FILE).unlink()
    for shard in old.shards:
        (index_dir / shard.file).unlink(missing_ok=True)
    return _index_store(index_dir, old.store_files, old.embedder, faiss_config)


def _index_store(out_dir: Path, store_files: list[StoreFile], embedder: EmbedderConfig,
                 faiss_config: FaissIndexConfig) -> IndexManifest:
    """Steps 3-5: train, fill and write the shards from the store's vectors, then the manifest."""
    groups = list_row_groups(out_dir / STORE_DIR, store_files)
    num_vectors = sum(f.num_rows for f in store_files)
    dim = embedding_dim(groups[0].path)
    faiss_config = resolve_faiss_config(faiss_config, num_vectors, dim)
    use_gpu = faiss_config.faiss_gpu == "auto"
    empty = new_index(faiss_config, dim)
    if not empty.is_trained:
        sample_ND = _training_sample(groups, faiss_config.train_sample_size, faiss_config.seed)
        empty = train_index(empty, sample_ND, use_gpu)
    shards = _build_shards(faiss.serialize_index(empty), groups, faiss_config.max_vectors_per_shard, out_dir,
                           faiss_config.num_cpus_per_shard_task, use_gpu)
    manifest = IndexManifest(
        ray_lcb_version=ray_lcb_version(), created_at=utc_now(),
        embedder=embedder, embedder_max_length=window_length(embedder), dim=dim,
        normalize=embedder.normalize, index_type=faiss_config.index_type, index_params=faiss_config,
        num_vectors=num_vectors, shards=shards, store_files=store_files,
    )
    write_manifest(manifest, out_dir)
    return manifest


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise ValueError(f"index folder '{out_dir}' is not empty; choose another folder or pass overwrite=True")
        if not (out_dir / MANIFEST_FILE).exists() and not (out_dir / STORE_DIR).exists():
            raise ValueError(f"'{out_dir}' holds files but is not an index folder; refusing to overwrite it")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def _check_columns(dataset: ray.data.Dataset) -> None:
    schema = dataset.schema()
    if schema is None:
        raise ValueError("the corpus is empty: the dataset has no rows (and no schema); "
                         "check the corpus reader's input paths/filters")
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise ValueError(f"the corpus dataset lacks column(s) {missing} (it has {schema.names}); "
                         f"read it with ray_lcb.corpus, or rename columns so that 'id' and 'text' exist")


def _training_sample(groups: list[RowGroup], sample_size: int, seed: int) -> np.ndarray:
    """Whole row groups drawn at random until ``sample_size`` rows, then rows subsampled to that size."""
    rng = np.random.default_rng(seed)
    chosen, total = [], 0
    for g in rng.permutation(len(groups)):
        if total >= sample_size:
            break
        chosen.append(groups[g])
        total += groups[g].num_rows
    sample_ND = np.concatenate([read_embeddings([g]) for g in chosen])
    if len(sample_ND) > sample_size:
        sample_ND = sample_ND[rng.choice(len(sample_ND), sample_size, replace=False)]
    return sample_ND


def shard_row_groups(groups: list[RowGroup], max_vectors_per_shard: int) -> list[list[RowGroup]]:
    """Consecutive runs of row groups of at most ``max_vectors_per_shard`` rows (a larger group is its own shard)."""
    shards: list[list[RowGroup]] = [[]]
    count = 0
    for group in groups:
        if shards[-1] and count + group.num_rows > max_vectors_per_shard:
            shards.append([])
            count = 0
        shards[-1].append(group)
        count += group.num_rows
    return shards


def _build_shard(empty_index_bytes: np.ndarray, groups: list[RowGroup], path: Path, num_threads: int,
                 use_gpu: bool) -> ShardFile:
    faiss.omp_set_num_threads(num_threads)
    vectors_ND = read_embeddings(groups)
    index = fill_index(empty_index_bytes, vectors_ND, use_gpu)
    num_bytes = write_index_file(index, path)
    return ShardFile(file=path.name, first_row=groups[0].first_row, num_vectors=len(vectors_ND), num_bytes=num_bytes)


def _build_shards(empty_index_bytes: np.ndarray, groups: list[RowGroup], max_vectors_per_shard: int,
                  out_dir: Path, num_cpus: int, use_gpu: bool) -> list[ShardFile]:
    """One Ray task per shard (in-process when there is one shard: nothing to parallelise)."""
    shard_groups = shard_row_groups(groups, max_vectors_per_shard)
    paths = [out_dir / f"shard_{i:05d}.faiss" for i in range(len(shard_groups))]
    if len(shard_groups) == 1:
        return [_build_shard(empty_index_bytes, shard_groups[0], paths[0], num_cpus, use_gpu)]
    # A GPU per shard task only when this node's FAISS sees GPUs; otherwise Ray would hide them from the task.
    num_gpus = 1 if use_gpu and has_faiss_gpu() else 0
    task = ray.remote(_build_shard).options(num_cpus=num_cpus, num_gpus=num_gpus)
    empty_ref = ray.put(empty_index_bytes)
    return ray.get([task.remote(empty_ref, g, p, num_cpus, use_gpu) for g, p in zip(shard_groups, paths)])
