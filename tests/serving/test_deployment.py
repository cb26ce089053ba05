"""The shared LLM deployment with the real SmolLM2 model on a real local Serve."""

import asyncio

import pytest
import ray

from ray_lcb.serving.client import LLMClient, build_llm_processor
from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.serving.launch import start_llm_service, stop_llm_service

QUESTIONS = ["What is the capital of France?", "Name a primary colour.", "What is 3 plus 4?",
             "Who wrote Hamlet?", "What do bees make?", "What is the boiling point of water?"]


@pytest.fixture(scope="module")
def llm(ray_session):
    # float32 and an app of its own: batched and one-by-one greedy output are compared exactly, and a
    # bfloat16 row's logits round differently with the size of its batch (as in vLLM).
    cfg = LLMServingConfig(max_batch_size=8, dtype="float32", app_name="ray_lcb_exact", deployment_name="ray_lcb_exact")
    handle = start_llm_service(cfg)
    yield cfg, handle
    stop_llm_service(cfg)


def _stats(handle):
    return handle.stats.remote().result()


def test_batched_greedy_equals_one_by_one(llm):
    cfg, handle = llm
    client = LLMClient(cfg)
    messages = [[{"role": "user", "content": q}] for q in QUESTIONS]

    async def concurrent():
        return await asyncio.gather(*[client.chat(m, max_tokens=24) for m in messages])

    async def one_by_one():
        return [await client.chat(m, max_tokens=24) for m in messages]

    before = len(_stats(handle)["batch_sizes"])
    batched = asyncio.run(concurrent())
    sizes = _stats(handle)["batch_sizes"][before:]
    assert max(sizes) > 1, sizes  # the replica really batched them
    single = asyncio.run(one_by_one())
    assert [r.text for r in batched] == [r.text for r in single]
    assert "Paris" in batched[0].text
    assert all(r.completion_tokens <= 24 for r in batched)


def test_stop_strings_and_token_budget(llm):
    cfg, _ = llm
    client = LLMClient(cfg)
    reply = asyncio.run(client.complete("1, 2, 3, 4, 5, 6, 7, 8, 9", max_tokens=30, stop=["14"]))
    assert "14" not in reply.text and reply.finish_reason == "stop"
    reply = asyncio.run(client.chat([{"role": "user", "content": "Write a long story about a dragon."}], max_tokens=7))
    assert reply.finish_reason == "length" and reply.completion_tokens == 7


def test_two_ray_data_stages_share_one_deployment_and_bad_rows_are_reported(llm):
    cfg, handle = llm
    ask = build_llm_processor(cfg, lambda row: {
        "messages": [{"role": "user", "content": row["question"]}] if row["question"] else [],
        "max_tokens": 20}, batch_size=4)
    check = build_llm_processor(cfg, lambda row: {
        "messages": [{"role": "user", "content": f"Is this answer correct? Q: {row['question']} A: {row['generated_text']}"}],
        "max_tokens": 8}, batch_size=4)

    def keep_answer(row):
        row["answer"] = row.pop("generated_text")
        for column in ("finish_reason", "completion_tokens", "error"):
            row[f"ask_{column}"] = row.pop(column)
        row["generated_text"] = row["answer"]
        return row

    rows = [{"qid": i, "question": q} for i, q in enumerate(QUESTIONS)] + [{"qid": 99, "question": ""}]
    before = len(_stats(handle)["batch_sizes"])
    first = ask(ray.data.from_items(rows))
    # Both processors stream through the same deployment concurrently.
    out = check(first.map(keep_answer)).take_all()
    by_id = {row["qid"]: row for row in out}
    assert set(by_id) == set(range(len(QUESTIONS))) | {99}
    bad = by_id[99]
    assert bad["ask_error"] and "messages" in bad["ask_error"] and bad["answer"] is None
    for qid in range(len(QUESTIONS)):
        assert by_id[qid]["ask_error"] is None and by_id[qid]["answer"]
        assert by_id[qid]["error"] is None and by_id[qid]["generated_text"]
    status = ray.serve.status().applications[cfg.app_name]
    replicas = status.deployments[cfg.deployment_name].replica_states
    assert replicas.get("RUNNING") == 1  # one replica served both stages
    assert len(_stats(handle)["batch_sizes"]) > before


def test_prompt_longer_than_context_is_a_per_request_error(llm):
    cfg, _ = llm
    client = LLMClient(cfg)
    with pytest.raises(Exception, match="max_model_len"):
        asyncio.run(client.chat([{"role": "user", "content": "word " * 9000}], max_tokens=8))
