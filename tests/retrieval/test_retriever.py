"""Retriever on the index built by the Ray job: relevance on real text, outputs, Ray Data use, load errors."""

import shutil

import numpy as np
import pytest

from ray_lcb.retrieval import EmbedderConfig, IndexFileError, Retriever, RetrieverConfig, search

from pg_corpus import query_sentence


@pytest.fixture(scope="module")
def retriever(built_index):
    return Retriever(built_index[0])


def test_a_sentence_finds_its_document_in_top_3(retriever, pg_documents):
    queries = [query_sentence(d["text"]) for d in pg_documents]
    results = retriever.retrieve(queries, top_k=3)
    found = [doc["id"] in [hit.id for hit in hits] for doc, hits in zip(pg_documents, results)]
    assert np.mean(found) >= 0.9, f"top-3 hit rate {np.mean(found):.3f} over {len(found)} documents"


def test_hits_carry_ids_scores_and_texts_from_the_store(retriever, pg_documents):
    by_id = {d["id"]: d for d in pg_documents}
    hits = retriever.retrieve(["What do investors look for in founders?", "Lisp macros"], top_k=5)
    assert [len(h) for h in hits] == [5, 5]
    for query_hits in hits:
        assert [h.score for h in query_hits] == sorted((h.score for h in query_hits), reverse=True)
        for hit in query_hits:
            assert hit.text == by_id[hit.id]["text"] and hit.url == by_id[hit.id]["url"]
            assert -1.0 <= hit.score <= 1.0 + 1e-5
    assert retriever.retrieve([]) == []


def test_top_k_larger_than_corpus_returns_every_document(retriever, pg_documents):
    hits = retriever.retrieve(["essays"], top_k=len(pg_documents) + 50)[0]
    assert sorted(h.id for h in hits) == sorted(d["id"] for d in pg_documents)


def test_search_function_output(built_index, pg_documents):
    out = search(built_index[0], ["how to start a startup", "painting"], top_k=2)
    assert [o["query"] for o in out] == ["how to start a startup", "painting"]
    assert all(len(o["results"]) == 2 and set(o["results"][0]) == {"id", "score", "text", "url"} for o in out)
    best = out[0]["results"][0]
    assert best["text"] == next(d["text"] for d in pg_documents if d["id"] == best["id"])


def test_without_texts_and_without_memory_map(built_index, retriever):
    plain = Retriever(built_index[0], RetrieverConfig(return_text=False, memory_map=False))
    assert plain.store is None
    a = retriever.retrieve(["money"], top_k=4)[0]
    b = plain.retrieve(["money"], top_k=4)[0]
    assert [h.id for h in a] == [h.id for h in b] and all(h.text is None for h in b)


def test_retriever_as_ray_data_actor(ray_session, built_index, pg_documents):
    queries = [{"query": query_sentence(d["text"]), "doc": d["id"]} for d in pg_documents[:24]]
    out = ray_session.data.from_items(queries).map_batches(
        Retriever, fn_constructor_kwargs={"index_dir": str(built_index[0]), "config": RetrieverConfig(top_k=3)},
        compute=ray_session.data.ActorPoolStrategy(min_size=1, max_size=2), batch_size=8,
    ).take_all()
    assert len(out) == 24
    for row in out:
        assert len(row["retrieved_ids"]) == 3 and len(row["retrieved_texts"]) == 3
        assert list(row["retrieved_scores"]) == sorted(row["retrieved_scores"], reverse=True)
    assert np.mean([r["doc"] in list(r["retrieved_ids"]) for r in out]) >= 0.9


def test_wrong_query_column_fails_clearly(retriever):
    with pytest.raises(ValueError, match="query_column='query' is not a column"):
        retriever({"question": np.array(["x"])})


def test_mismatched_embedder_fails_naming_both(built_index):
    other = EmbedderConfig(model="bundled:all-minilm-l6-v2", max_length=128)
    with pytest.raises(ValueError) as err:
        Retriever(built_index[0], RetrieverConfig(embedder=other))
    message = str(err.value)
    assert "'max_length': None" in message and "'max_length': 128" in message and str(built_index[0]) in message
    # Runtime-only differences are fine.
    Retriever(built_index[0], RetrieverConfig(embedder=EmbedderConfig(batch_size=4, long_documents="truncate")))


def test_not_an_index_folder(tmp_path):
    with pytest.raises(ValueError, match="is not an index folder: manifest.json is missing"):
        Retriever(tmp_path)


def test_corrupt_shard_fails_naming_the_file(built_index, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(built_index[0], copy)
    shard = copy / built_index[1].shards[1].file
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(IndexFileError, match=f"'{shard}' has 1000 bytes but manifest.json records"):
        Retriever(copy)
