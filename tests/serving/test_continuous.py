"""Continuous batching in the CPU engine, with the real SmolLM2 model (no Serve)."""

import time

import pytest

from ray_lcb.serving.engines.transformers import TransformersEngine
from ray_lcb.serving.protocol import GenerationRequest, SamplingParams, parse_request

LONG_CONTEXT = " ".join(f"Item {i} is a {['red', 'green', 'blue'][i % 3]} box." for i in range(120))


def _chat(content: str, **sampling) -> GenerationRequest:
    return parse_request({"messages": [{"role": "user", "content": content}], **sampling}, chat=True)


@pytest.fixture(scope="module")
def engine(smollm2_path):
    # float32: these tests compare tokens exactly, and in bfloat16 (the CPU default where it is native) a
    # row's logits round differently with the size of its batch, as in vLLM, so greedy paths may part.
    engine = TransformersEngine(str(smollm2_path), dtype="float32", num_threads=1, max_batch_size=4,
                                max_model_len=2048)
    yield engine
    engine.close()


def _admissions_since(engine, before: int) -> list[dict]:
    return engine.stats()["admissions"][before:]


def test_staggered_greedy_equals_one_at_a_time_and_rows_join_a_running_batch(engine):
    # Very different prompt lengths (about 30 to 1,000 tokens) and budgets; the first runs longest.
    requests = [_chat("Write a long story about a dragon.", max_tokens=60),
                _chat(f"{LONG_CONTEXT}\n\nWhat colour is item 7?", max_tokens=12),
                _chat("What is 3 plus 4?", max_tokens=5),
                _chat("Name three rivers in Europe and describe them.", max_tokens=40)]
    alone = [engine.generate([request])[0] for request in requests]
    before = len(engine.stats()["admissions"])
    futures = []
    for request in requests:
        futures.append(engine.submit(request))
        time.sleep(0.2)
    together = [future.result(timeout=300) for future in futures]
    assert [r.text for r in together] == [r.text for r in alone]
    assert [r.completion_tokens for r in together] == [r.completion_tokens for r in alone]
    assert together[1].prompt_tokens > 900 and together[2].prompt_tokens < 50
    # Later requests joined rows that were already decoding (the dragon story runs for 60 steps).
    admissions = _admissions_since(engine, before)
    assert any(a["size"] > a["admitted"] for a in admissions), admissions
    assert max(a["size"] for a in admissions) > 1


def test_each_row_stops_on_its_own_and_a_bad_request_fails_alone(engine):
    requests = [parse_request({"prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9", "max_tokens": 30, "stop": ["14"]}, chat=False),
                _chat("Write a long story about a dragon.", max_tokens=7),
                _chat("What is the capital of France?", max_tokens=64),
                _chat("word " * 3000, max_tokens=8),  # beyond max_model_len
                GenerationRequest(None, "Hello", SamplingParams(temperature=float("nan"))),  # cannot be sampled
                _chat("Who wrote Hamlet?", max_tokens=16)]
    counting, story, capital, too_long, unsampleable, hamlet = engine.generate(requests)
    assert "14" not in counting.text and "13" in counting.text and counting.finish_reason == "stop"
    assert story.finish_reason == "length" and story.completion_tokens == 7
    assert "Paris" in capital.text and capital.finish_reason == "stop" and capital.completion_tokens < 64  # EOS
    assert isinstance(too_long, ValueError) and "max_model_len" in str(too_long)
    assert isinstance(unsampleable, Exception)
    assert hamlet.text == engine.generate([requests[-1]])[0].text  # the failures did not disturb others
    with pytest.raises(ValueError, match="empty"):
        engine.submit(GenerationRequest(None, "", SamplingParams())).result(timeout=60)


def test_seeded_sampling_does_not_depend_on_batch_company(engine):
    seeded = _chat("Write a poem about the sea.", max_tokens=16, temperature=0.9, top_p=0.9, seed=7)
    alone = engine.generate([seeded])[0]
    company = [_chat("Write a long story about a dragon.", max_tokens=24, temperature=1.0),
               _chat("Name a primary colour.", max_tokens=8)]
    together = engine.generate([company[0], seeded, company[1]])[1]
    assert together.text == alone.text


def test_decode_batch_joins_leaves_and_grows_in_place_and_matches_uncached_greedy_decoding(engine, monkeypatch):
    import torch
    from transformers.cache_utils import DynamicCache

    from ray_lcb.serving.engines import decode_batch

    monkeypatch.setattr(decode_batch, "_SPARE_COLUMNS", 3)  # rebuild every few steps, not every 128
    monkeypatch.setattr(decode_batch, "_TRIM_COLUMNS", 4)  # cut shared padding as soon as 4 columns
    model = engine.batcher._model
    prompts = {"a": [1, 504, 3458, 282, 260, 1345, 30], "b": [1, 2683, 314, 3158, 47, 5099, 28, 253, 2745, 1029, 30, 216],
               "c": [1, 504, 3458, 282], "d": [1, 2683, 314, 3158, 47]}
    steps, reference_steps = 12, 16
    expected = {}
    with torch.inference_mode():
        for name, prompt in prompts.items():  # the reference: a full forward over the whole sequence per token
            ids = list(prompt)
            for _ in range(reference_steps):
                ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
            expected[name] = ids[len(prompt):]
        batch, running, tokens = decode_batch.DecodeBatch(model), [], {}

        def join(name):
            cache = DynamicCache(config=model.config)
            logits = model(input_ids=torch.tensor([prompts[name]]), use_cache=True,
                           **{batch.cache_keyword: cache}).logits
            batch.add(cache)
            running.append(name)
            tokens[name] = [int(logits[0, -1].argmax())]

        def step():
            logits = batch.step([tokens[name][-1] for name in running])
            for name, row_logits in zip(running, logits):
                tokens[name].append(int(row_logits.argmax()))

        def buffer():
            return batch.cache.layers[0].key_buffer.data_ptr()

        join("a"), join("b"), step()  # b is longer than the running width: rebuilt wider
        join("c"), step(), step()  # no free slot: rebuilt with room for 4 rows
        before = buffer()
        join("d")  # shorter than the width, a free slot: written in place
        assert buffer() == before and batch.slots == 4
        step()
        batch.keep([1, 2, 3])  # a leaves: b, c, d move down in place
        del running[0]
        assert buffer() == before and len(batch) == 3
        step()
        seen = {buffer()}
        while len(tokens["b"]) < steps:
            step()
            seen.add(buffer())
        assert len(seen) > 1  # the 3 spare columns ran out: rebuilt, a few times, not every step
        width = batch.width
        batch.keep([1, 2])  # b, the longest, leaves: c and d share more than 4 padding columns
        del running[0]
        assert batch.width < width - 4
        while len(tokens["d"]) < steps:
            step()
    assert all(tokens[name] == expected[name][:len(tokens[name])] for name in prompts), (tokens, expected)
    assert len(tokens["a"]) == 5 and min(len(tokens[name]) for name in "bcd") == steps
