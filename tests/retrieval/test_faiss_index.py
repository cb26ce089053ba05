"""FAISS layer: exactness of flat, recall of the approximate types, shard merging, memory-mapped loads, bad files."""

import json
import subprocess
import sys
import textwrap

import faiss
import numpy as np
import pytest

from ray_lcb.retrieval import FaissIndexConfig, IndexFileError, ShardedIndex, has_faiss_gpu
from ray_lcb.retrieval.faiss_gpu import maybe_to_gpu
from ray_lcb.retrieval.faiss_index import (
    MMAP_FLAGS, fill_index, merge_topk, new_index, read_index_file, resolve_faiss_config, train_index,
    write_index_file,
)

DIM = 384


def clustered_standin(centres_CD: np.ndarray, n: int, spread: float, seed: int) -> np.ndarray:
    """Unit vectors from a Gaussian mixture around real embeddings, noise shaped like the real covariance.

    Isotropic noise in 384 dims would make every point about equally far from every other (no
    neighbourhoods); noise drawn from spread * cov(centres) keeps the real spectrum's anisotropy.
    """
    rng = np.random.default_rng(seed)
    centred_CD = centres_CD - centres_CD.mean(0)
    pick = rng.integers(0, len(centres_CD), n)
    noise_ND = rng.standard_normal((n, len(centres_CD))).astype(np.float32) @ centred_CD / np.sqrt(len(centres_CD))
    vecs_ND = centres_CD[pick] + np.sqrt(spread) * noise_ND
    return (vecs_ND / np.linalg.norm(vecs_ND, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def standin(pg_vectors) -> np.ndarray:
    return clustered_standin(pg_vectors, 20_000, spread=0.5, seed=0)


def build(vectors_ND: np.ndarray, **config) -> faiss.Index:
    cfg = resolve_faiss_config(FaissIndexConfig(**config), len(vectors_ND), vectors_ND.shape[1])
    index = train_index(new_index(cfg, vectors_ND.shape[1]), vectors_ND, use_gpu=False)
    return fill_index(faiss.serialize_index(index), vectors_ND, use_gpu=False)


def test_flat_equals_numpy_brute_force(pg_vectors, pg_query_vectors):
    index = ShardedIndex([build(pg_vectors, index_type="flat")], [0])
    scores, rows = index.search(pg_query_vectors, 10)
    brute = pg_query_vectors @ pg_vectors.T
    expected_rows = np.argsort(-brute, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected_rows, 1), atol=1e-5)


@pytest.mark.parametrize("index_type,nprobe", [("ivf_flat", None), ("hnsw", None)])
def test_approximate_recall_against_flat(standin, pg_query_vectors, index_type, nprobe):
    exact = ShardedIndex([build(standin, index_type="flat")], [0])
    approx = ShardedIndex([build(standin, index_type=index_type)], [0])
    cfg = FaissIndexConfig()
    approx.set_search_params(nprobe=cfg.nprobe, ef_search=cfg.hnsw_ef_search)
    _, truth = exact.search(pg_query_vectors, 10)
    _, found = approx.search(pg_query_vectors, 10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
    assert recall >= 0.95, f"{index_type} recall@10 {recall:.3f}"


def test_ivf_pq_is_approximate_but_useful(standin, pg_query_vectors):
    # PQ scores are approximate (48 bytes per vector instead of 1536), so recall@10 is well below 1;
    # the test pins that it still finds most neighbours and that nprobe matters.
    exact = ShardedIndex([build(standin, index_type="flat")], [0])
    _, truth = exact.search(pg_query_vectors, 10)
    pq = ShardedIndex([build(standin, index_type="ivf_pq", pq_m=48)], [0])
    recalls = {}
    for nprobe in (1, 32):
        pq.set_search_params(nprobe=nprobe)
        _, found = pq.search(pg_query_vectors, 10)
        recalls[nprobe] = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
    assert recalls[32] >= 0.5 and recalls[32] > recalls[1], recalls


def test_sharded_flat_equals_unsharded(pg_vectors, pg_query_vectors):
    bounds = [0, 37, 150, len(pg_vectors)]  # uneven shards, one smaller than k
    shards = [build(pg_vectors[a:b], index_type="flat") for a, b in zip(bounds, bounds[1:])]
    sharded = ShardedIndex(shards, bounds[:-1])
    whole = ShardedIndex([build(pg_vectors, index_type="flat")], [0])
    for k in (1, 10, 60):
        s_scores, s_rows = sharded.search(pg_query_vectors, k)
        w_scores, w_rows = whole.search(pg_query_vectors, k)
        np.testing.assert_array_equal(s_rows, w_rows)
        np.testing.assert_allclose(s_scores, w_scores, atol=1e-6)


def test_sharded_ivf_with_shared_quantizer_equals_unsharded(standin, pg_query_vectors):
    cfg = resolve_faiss_config(FaissIndexConfig(index_type="ivf_flat", nlist=64), len(standin), DIM)
    trained = faiss.serialize_index(train_index(new_index(cfg, DIM), standin[:5000], use_gpu=False))
    bounds = [0, 7000, 12_345, len(standin)]
    sharded = ShardedIndex([fill_index(trained, standin[a:b], False) for a, b in zip(bounds, bounds[1:])], bounds[:-1])
    whole = ShardedIndex([fill_index(trained, standin, False)], [0])
    for index in (sharded, whole):
        index.set_search_params(nprobe=4)
    s_scores, s_rows = sharded.search(pg_query_vectors, 10)
    w_scores, w_rows = whole.search(pg_query_vectors, 10)
    np.testing.assert_array_equal(s_rows, w_rows)
    np.testing.assert_allclose(s_scores, w_scores, atol=1e-6)


def test_fewer_vectors_than_k_pads_with_minus_one(pg_vectors, pg_query_vectors):
    index = ShardedIndex([build(pg_vectors[:3], index_type="flat"), build(pg_vectors[3:5], index_type="flat")], [0, 3])
    scores, rows = index.search(pg_query_vectors[:4], 8)
    assert rows.shape == (4, 8)
    assert (np.sort(rows[:, :5], axis=1) == np.arange(5)).all()
    assert (rows[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()
    assert (np.diff(scores[:, :5], axis=1) <= 0).all()


def test_merge_topk_breaks_ties_by_row():
    scores, rows = merge_topk([np.array([[0.5, 0.2]], np.float32), np.array([[0.5, 0.5]], np.float32)],
                              [np.array([[7, 8]]), np.array([[2, 9]])], 3)
    np.testing.assert_array_equal(rows, [[2, 7, 9]])


@pytest.mark.parametrize("index_type", ["flat", "ivf_flat", "ivf_pq", "hnsw"])
def test_memory_mapped_load_gives_same_results(tmp_path, standin, pg_query_vectors, index_type):
    index = build(standin[:4000], index_type=index_type, nlist=16, pq_m=48)
    path = tmp_path / "x.faiss"
    size = write_index_file(index, path)
    results = []
    for memory_map in (False, True):
        loaded = ShardedIndex([read_index_file(path, index_type, memory_map, size)], [0])
        loaded.set_search_params(nprobe=4, ef_search=64)
        results.append(loaded.search(pg_query_vectors, 5))
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-6)


def test_memory_mapped_flat_and_ivf_do_not_copy_into_ram(tmp_path, standin):
    """Anonymous memory (what a process owns, unlike shared page cache) barely grows with memory-mapping."""
    vectors = np.tile(standin, (2, 1))  # 40k x 384 x 4 B = 61 MB
    files = {}
    for index_type in ("flat", "ivf_flat"):
        files[index_type] = tmp_path / f"{index_type}.faiss"
        write_index_file(build(vectors, index_type=index_type, nlist=64), files[index_type])
    # One fresh process; memory-mapped loads first, so RAM freed by nothing can be reused by the plain loads.
    probe = textwrap.dedent("""
        import json, sys
        from pathlib import Path
        import numpy as np
        from ray_lcb.retrieval.faiss_index import read_index_file
        def anon_mb():
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon")) / 1024
        grown, keep = {}, []
        for memory_map in (True, False):
            for index_type, path in json.loads(sys.argv[1]).items():
                before = anon_mb()
                keep.append(read_index_file(Path(path), index_type, memory_map))
                keep[-1].search(np.ones((4, keep[-1].d), np.float32), 3)
                grown[f"{index_type} mmap={memory_map}"] = anon_mb() - before
        print(json.dumps(grown))
    """)
    out = subprocess.run([sys.executable, "-c", probe, json.dumps({k: str(v) for k, v in files.items()})],
                         capture_output=True, text=True, check=True)
    grown = json.loads(out.stdout.strip().splitlines()[-1])
    for index_type in files:
        assert grown[f"{index_type} mmap=False"] > 50 and grown[f"{index_type} mmap=True"] < 15, grown


def test_truncated_or_corrupt_file_fails_naming_it(tmp_path, pg_vectors):
    path = tmp_path / "shard_00000.faiss"
    size = write_index_file(build(pg_vectors, index_type="flat"), path)
    data = path.read_bytes()
    path.write_bytes(data[: size // 2])
    with pytest.raises(IndexFileError, match="shard_00000.faiss' has .* bytes but manifest.json records"):
        read_index_file(path, "flat", True, size)
    for memory_map in (False, True):  # no size on record: FAISS's own parse error, wrapped
        with pytest.raises(IndexFileError, match="shard_00000.faiss' is corrupt or unreadable"):
            read_index_file(path, "flat", memory_map)
    path.write_bytes(b"garbage!" * (size // 8) + data[: size % 8])  # right size, wrong content
    with pytest.raises(IndexFileError, match="shard_00000.faiss' is corrupt or unreadable"):
        read_index_file(path, "flat", True, size)
    with pytest.raises(IndexFileError, match="missing.faiss' is missing"):
        read_index_file(tmp_path / "missing.faiss", "flat", True)


def test_resolve_faiss_config():
    auto = FaissIndexConfig(flat_max_vectors=1000)
    assert resolve_faiss_config(auto, 1000, DIM).index_type == "flat"
    large = resolve_faiss_config(auto, 1_000_000, DIM)
    assert large.index_type == "ivf_flat" and large.nlist == 100_000 // 39  # capped by the training sample
    assert resolve_faiss_config(auto.model_copy(update={"train_sample_size": 10**7}), 10**6, DIM).nlist == 4000
    assert resolve_faiss_config(FaissIndexConfig(index_type="ivf_flat"), 3900, DIM).nlist == 100  # N/39 cap
    with pytest.raises(ValueError, match="pq_m=40 must divide the embedding dim 384"):
        resolve_faiss_config(FaissIndexConfig(index_type="ivf_pq", pq_m=40), 10_000, DIM)
    with pytest.raises(ValueError, match="nlist=500 exceeds the 100 vectors"):
        resolve_faiss_config(FaissIndexConfig(index_type="ivf_flat", nlist=500), 100, DIM)
    assert set(MMAP_FLAGS) == {"flat", "ivf_flat", "ivf_pq", "hnsw"}


def test_gpu_paths_are_no_ops_without_a_gpu(pg_vectors):
    index = build(pg_vectors, index_type="flat")
    if not has_faiss_gpu():
        assert maybe_to_gpu(index, enabled=True) is index
    assert maybe_to_gpu(index, enabled=False) is index


@pytest.mark.gpu
@pytest.mark.skipif(not has_faiss_gpu(), reason="needs faiss-gpu and a visible GPU")
def test_gpu_trained_ivf_matches_cpu_search(standin, pg_query_vectors):
    cfg = resolve_faiss_config(FaissIndexConfig(index_type="ivf_flat", nlist=64), len(standin), DIM)
    gpu_trained = train_index(new_index(cfg, DIM), standin[:5000], use_gpu=True)
    assert type(gpu_trained).__name__ == "IndexIVFFlat"  # written files are CPU indexes
    gpu_filled = ShardedIndex([fill_index(faiss.serialize_index(gpu_trained), standin, use_gpu=True)], [0])
    exact = ShardedIndex([build(standin, index_type="flat")], [0])
    gpu_filled.set_search_params(nprobe=32)
    _, truth = exact.search(pg_query_vectors, 10)
    _, found = gpu_filled.search(pg_query_vectors, 10)
    assert np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)]) >= 0.95
