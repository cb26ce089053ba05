"""FAISS indexes over unit vectors: create, train, fill, save, load (memory-mapped), search shards.

A corpus index is a list of shards; shard ``s`` holds the vectors of the
document-store rows ``[first_row_s, first_row_s + ntotal_s)`` under FAISS labels
``0..ntotal_s-1``, so ``global row = first_row + label`` and no IndexIDMap is
needed (which keeps every index type memory-mappable). IVF shards are filled
from one trained, empty index, so they share centroids (and PQ codebooks):
their scores are comparable, and a sharded IVF search returns what one
unsharded IVF index would. :class:`ShardedIndex` fans a query batch out to all
shards and merges the top-k.

Called by ``index_job`` (build) and ``retriever`` (load, search). GPU code is in
``faiss_gpu``. Shapes: Q queries, K results per query, D embedding dim.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import faiss
import numpy as np

from ray_lcb.retrieval.config import FaissIndexConfig, IndexType
from ray_lcb.retrieval.faiss_gpu import maybe_to_gpu, to_cpu

logger = logging.getLogger(__name__)

# FAISS reads flat codes (IndexFlat, and HNSW's storage and graph) memory-mapped with IO_FLAG_MMAP_IFC
# (FAISS >= 1.10), and IVF inverted lists with IO_FLAG_MMAP; the two flags cannot be combined for IVF (FAISS
# raises "mmap only supported for File objects"). Measured with FAISS 1.15 (bench/retrieval.py): a loaded index
# adds 0-4 MB of private memory mapped, against its file size read into RAM.
MMAP_FLAGS: dict[str, int | None] = {
    "flat": getattr(faiss, "IO_FLAG_MMAP_IFC", None),
    "hnsw": getattr(faiss, "IO_FLAG_MMAP_IFC", None),
    "ivf_flat": faiss.IO_FLAG_MMAP,
    "ivf_pq": faiss.IO_FLAG_MMAP,
}

DEFAULT_LARGE_INDEX: IndexType = "ivf_flat"  # chosen by bench/retrieval.py; see FaissIndexConfig.index_type


class IndexFileError(ValueError):
    """An index file is missing, truncated or unreadable; the message names the file."""


def resolve_faiss_config(config: FaissIndexConfig, num_vectors: int, dim: int) -> FaissIndexConfig:
    """Fix ``auto`` choices for a corpus of ``num_vectors`` vectors of ``dim`` dims and validate them.

    Raises:
        ValueError: naming the field, when pq_m does not divide dim or nlist exceeds the corpus.
    """
    index_type = config.index_type
    if index_type == "auto":
        index_type = "flat" if num_vectors <= config.flat_max_vectors else DEFAULT_LARGE_INDEX
    nlist = config.nlist
    if index_type.startswith("ivf"):
        if nlist is None:
            trainable = min(num_vectors, config.train_sample_size)
            nlist = int(min(max(1, round(4 * math.sqrt(num_vectors))), max(1, trainable // 39)))
        elif nlist > num_vectors:
            raise ValueError(f"faiss.nlist={nlist} exceeds the {num_vectors} vectors of the corpus; "
                             f"lower faiss.nlist or leave it None")
    if index_type == "ivf_pq" and dim % config.pq_m:
        raise ValueError(f"faiss.pq_m={config.pq_m} must divide the embedding dim {dim}; pick a divisor of {dim}")
    return config.model_copy(update={"index_type": index_type, "nlist": nlist})


def new_index(config: FaissIndexConfig, dim: int) -> faiss.Index:
    """An empty inner-product index of the (resolved) ``config.index_type``."""
    factory = {
        "flat": "Flat",
        "ivf_flat": f"IVF{config.nlist},Flat",
        # "np": no polysemous training, which FAISS does by default and which made training 25x slower
        # (270 s vs 11 s on 20k x 384 vectors, 2 cores) for a feature (Hamming pre-filtering) we do not use.
        "ivf_pq": f"IVF{config.nlist},PQ{config.pq_m}x{config.pq_nbits}np",
        "hnsw": f"HNSW{config.hnsw_m},Flat",
    }[config.index_type]
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if config.index_type == "hnsw":
        index.hnsw.efConstruction = config.hnsw_ef_construction
    if config.index_type.startswith("ivf"):
        index.cp.seed = config.seed
    return index


def train_index(index: faiss.Index, sample_ND: np.ndarray, use_gpu: bool) -> faiss.Index:
    """Train ``index`` (IVF k-means, PQ codebooks) on a sample; a no-op for flat and HNSW."""
    if index.is_trained:
        return index
    if len(sample_ND) < index.nlist:
        raise ValueError(f"{len(sample_ND)} training vectors for nlist={index.nlist} lists; "
                         f"raise faiss.train_sample_size or lower faiss.nlist")
    trainable = maybe_to_gpu(index, use_gpu)
    trainable.train(np.ascontiguousarray(sample_ND, dtype=np.float32))
    return to_cpu(trainable)


def fill_index(empty_index_bytes: np.ndarray, vectors_ND: np.ndarray, use_gpu: bool) -> faiss.Index:
    """A copy of a trained empty index (as serialised by ``faiss.serialize_index``) holding ``vectors_ND``."""
    index = maybe_to_gpu(faiss.deserialize_index(empty_index_bytes), use_gpu)
    index.add(np.ascontiguousarray(vectors_ND, dtype=np.float32))
    return to_cpu(index)


def write_index_file(index: faiss.Index, path: Path) -> int:
    """Write ``index`` to ``path`` (via a temporary name, so a crash leaves no half file); return its size."""
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    tmp.replace(path)
    return path.stat().st_size


def read_index_file(path: Path, index_type: str, memory_map: bool, expected_bytes: int | None = None) -> faiss.Index:
    """Load one index file, memory-mapped when asked and FAISS supports it for the type.

    If the memory-mapped read fails but a plain read works (an old FAISS without
    IO_FLAG_MMAP_IFC, or a filesystem without mmap), the index is loaded into RAM
    with a warning.

    Raises:
        IndexFileError: the file is missing, has another size than the manifest
            records (truncated or replaced), or FAISS cannot parse it.
    """
    if not path.is_file():
        raise IndexFileError(f"index file '{path}' is missing; rebuild the index folder with build_index")
    size = path.stat().st_size
    if expected_bytes is not None and size != expected_bytes:
        raise IndexFileError(f"index file '{path}' has {size} bytes but manifest.json records {expected_bytes}: "
                             f"it is truncated or was replaced; rebuild the index folder with build_index")
    flag = MMAP_FLAGS[index_type] if memory_map else 0
    if memory_map and flag is None:
        logger.warning("this FAISS has no IO_FLAG_MMAP_IFC; loading %s index '%s' into RAM", index_type, path)
        flag = 0
    try:
        return faiss.read_index(str(path), flag or 0)
    except RuntimeError as mmap_err:
        if not flag:
            raise IndexFileError(f"index file '{path}' is corrupt or unreadable ({_short(mmap_err)}); "
                                 f"rebuild the index folder with build_index") from mmap_err
        try:
            index = faiss.read_index(str(path), 0)
        except RuntimeError as err:
            raise IndexFileError(f"index file '{path}' is corrupt or unreadable ({_short(err)}); "
                                 f"rebuild the index folder with build_index") from err
        logger.warning("could not memory-map '%s' (%s); loaded it into RAM", path, _short(mmap_err))
        return index


def _short(err: Exception) -> str:
    """FAISS's message without its C++ call-site prefix ('Error in ... at file:line: ')."""
    message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return message.split(": ", 1)[-1][:300] if message.startswith("Error in") else message[:300]


class ShardedIndex:
    """Search several shard indexes as one; results are global document-store rows.

    Args:
        shards: the shard indexes, in store order.
        first_rows: global row of each shard's label 0.
    """

    def __init__(self, shards: list[faiss.Index], first_rows: list[int]):
        assert len(shards) == len(first_rows) and shards, "one first_row per shard, at least one shard"
        self.shards = shards
        self.first_rows = np.asarray(first_rows, dtype=np.int64)

    @property
    def ntotal(self) -> int:
        return sum(int(s.ntotal) for s in self.shards)

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        for shard in self.shards:
            if nprobe is not None and hasattr(shard, "nprobe"):
                shard.nprobe = min(nprobe, shard.nlist)
            if ef_search is not None and hasattr(shard, "hnsw"):
                shard.hnsw.efSearch = ef_search

    def search(self, queries_QD: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product over every shard.

        Returns:
            (scores [Q, K] float32, rows [Q, K] int64 global store rows), best
            first; where the corpus has fewer than k hits, rows are -1 and
            scores -inf.
        """
        queries_QD = np.ascontiguousarray(queries_QD, dtype=np.float32)
        scores, rows = [], []
        for shard, first_row in zip(self.shards, self.first_rows):
            shard_scores_QK, labels_QK = shard.search(queries_QD, min(k, max(int(shard.ntotal), 1)))
            scores.append(np.where(labels_QK >= 0, shard_scores_QK, -np.inf).astype(np.float32))
            rows.append(np.where(labels_QK >= 0, labels_QK + first_row, -1))
        return merge_topk(scores, rows, k)


def merge_topk(scores: list[np.ndarray], rows: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard top lists ([Q, K_s] each) into the global top-k ([Q, k]), padding with -1 / -inf."""
    scores_QS = np.concatenate(scores, axis=1)
    rows_QS = np.concatenate(rows, axis=1)
    if scores_QS.shape[1] < k:
        pad = k - scores_QS.shape[1]
        scores_QS = np.pad(scores_QS, ((0, 0), (0, pad)), constant_values=-np.inf)
        rows_QS = np.pad(rows_QS, ((0, 0), (0, pad)), constant_values=-1)
    # Ties go to the lower row, as within one flat index; a stable sort on (row, then -score) gives that.
    by_row = np.argsort(rows_QS, axis=1, kind="stable")
    scores_QS, rows_QS = np.take_along_axis(scores_QS, by_row, 1), np.take_along_axis(rows_QS, by_row, 1)
    order = np.argsort(-scores_QS, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores_QS, order, 1), np.take_along_axis(rows_QS, order, 1)
