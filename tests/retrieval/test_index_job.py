"""The Ray Data embedding job end to end: store, id map, shards, manifest; and its input errors."""

import json
import shutil

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ray.data.expressions import col

from ray_lcb.retrieval import (
    FaissIndexConfig, IndexConfig, Retriever, RetrieverConfig, build_index, read_manifest, reindex,
)
from ray_lcb.retrieval.doc_store import list_row_groups, read_embeddings, read_id_map
from ray_lcb.retrieval.index_job import shard_row_groups

from pg_corpus import SMALL_SHARDS


def test_job_writes_a_complete_index_folder(built_index, pg_documents, pg_vectors):
    index_dir, manifest = built_index
    assert read_manifest(index_dir) == manifest  # manifest.json round trip
    raw = json.loads((index_dir / "manifest.json").read_text())
    assert raw["embedder"]["model"] == "bundled:all-minilm-l6-v2" and raw["embedder"]["kind"] == "mean_pooling"
    assert raw["dim"] == 384 and raw["normalize"] is True and raw["index_type"] == "flat"
    assert raw["num_vectors"] == len(pg_documents) and raw["embedder_max_length"] == 256
    assert raw["ray_lcb_version"] and raw["created_at"].endswith("+00:00")
    # 200 rows in row groups of 16, shards of at most 64 rows: several shards covering every row once.
    assert len(manifest.shards) >= 4
    covered = [r for s in manifest.shards for r in range(s.first_row, s.first_row + s.num_vectors)]
    assert covered == list(range(len(pg_documents)))
    assert all((index_dir / s.file).stat().st_size == s.num_bytes for s in manifest.shards)

    # The store holds every input row unchanged, in id-map order, with the vectors MiniLM gives directly.
    store = pa.concat_tables([pq.read_table(index_dir / "documents" / f.file) for f in manifest.store_files])
    ids = read_id_map(index_dir / "ids.arrow").to_pylist()
    assert store.column("id").to_pylist() == ids and sorted(ids) == sorted(d["id"] for d in pg_documents)
    by_id = {d["id"]: d for d in pg_documents}
    for row in store.select(["id", "text", "url", "score"]).to_pylist():
        assert row == {k: by_id[row["id"]][k] for k in ("id", "text", "url", "score")}
    stored = read_embeddings(list_row_groups(index_dir / "documents", manifest.store_files))
    order = [list(by_id).index(i) for i in ids]
    np.testing.assert_allclose(stored, pg_vectors[order], atol=1e-5)
    assert max(pq.ParquetFile(index_dir / "documents" / f.file).metadata.row_group(0).num_rows
               for f in manifest.store_files) <= SMALL_SHARDS.store_row_group_size


def test_sharded_search_equals_unsharded(built_index, pg_query_vectors):
    index_dir, manifest = built_index
    retriever = Retriever(index_dir)
    assert len(retriever.index.shards) == len(manifest.shards) > 1
    whole = faiss.IndexFlatIP(manifest.dim)
    whole.add(read_embeddings(list_row_groups(index_dir / "documents", manifest.store_files)))
    expected_scores, expected_rows = whole.search(pg_query_vectors, 10)
    scores, rows = retriever.search_vectors(pg_query_vectors, 10)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


@pytest.mark.parametrize("index_type", ["ivf_flat", "hnsw"])
def test_reindex_as_sharded_approximate_index(ray_session, built_index, pg_query_vectors, tmp_path, index_type):
    index_dir = tmp_path / "index"
    shutil.copytree(built_index[0], index_dir)
    exact_scores, exact_rows = Retriever(index_dir).search_vectors(pg_query_vectors, 10)
    manifest = reindex(index_dir, FaissIndexConfig(index_type=index_type, nlist=4, max_vectors_per_shard=64))
    assert manifest.index_type == index_type and len(manifest.shards) > 1
    assert sorted(p.name for p in index_dir.glob("*.faiss")) == sorted(s.file for s in manifest.shards)
    # Probing all 4 lists makes IVF exact: the sharded IVF search must then equal flat search.
    retriever = Retriever(index_dir, RetrieverConfig(nprobe=4, ef_search=200))
    scores, rows = retriever.search_vectors(pg_query_vectors, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact_rows)])
    if index_type == "ivf_flat":
        np.testing.assert_array_equal(rows, exact_rows)
        np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
    assert recall >= 0.95


def test_shards_are_cut_at_row_groups(built_index):
    index_dir, manifest = built_index
    groups = list_row_groups(index_dir / "documents", manifest.store_files)
    shards = shard_row_groups(groups, 40)
    assert [g for shard in shards for g in shard] == groups
    assert all(sum(g.num_rows for g in shard) <= 40 for shard in shards if len(shard) > 1)


def _tiny_config() -> IndexConfig:
    return SMALL_SHARDS.model_copy(update={"max_embed_actors": 1})


def test_empty_corpus_fails_clearly(ray_session, tmp_path):
    with pytest.raises(ValueError, match="corpus is empty"):
        build_index(ray_session.data.from_items([]), _tiny_config(), tmp_path / "a")
    no_rows = ray_session.data.from_items([{"id": "a", "text": "x"}]).filter(expr=col("id") == "b")
    with pytest.raises(ValueError, match="corpus is empty"):
        build_index(no_rows, _tiny_config(), tmp_path / "b")
    assert not (tmp_path / "b" / "manifest.json").exists()


def test_missing_text_column_fails_clearly(ray_session, tmp_path):
    dataset = ray_session.data.from_items([{"id": "a", "body": "x"}])
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['text'\]"):
        build_index(dataset, _tiny_config(), tmp_path / "i")


def test_duplicate_ids_fail_clearly(ray_session, tmp_path):
    dataset = ray_session.data.from_items([{"id": "dup", "text": "one"}, {"id": "dup", "text": "two"},
                                           {"id": "ok", "text": "three"}])
    with pytest.raises(ValueError, match=r"ids must be unique, but \['dup'\]"):
        build_index(dataset, _tiny_config(), tmp_path / "i")
    assert not (tmp_path / "i" / "manifest.json").exists()


def test_occupied_out_dir_is_not_overwritten(ray_session, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    dataset = ray_session.data.from_items([{"id": "a", "text": "x"}])
    with pytest.raises(ValueError, match="is not empty"):
        build_index(dataset, _tiny_config(), tmp_path)
    with pytest.raises(ValueError, match="not an index folder; refusing to overwrite"):
        build_index(dataset, _tiny_config(), tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
