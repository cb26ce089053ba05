"""The engine's dtype choice and decode attention, with the real SmolLM2 model."""

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.cache_utils import DynamicCache

from ray_lcb.serving.engines.attention import ENGINE_ATTENTION, grouped_decode_attention
from ray_lcb.serving.engines.decode_batch import cache_keyword
from ray_lcb.serving.engines.transformers import TransformersEngine, engine_dtype
from ray_lcb.serving.protocol import parse_request


def _decode_logits(model, prompt: list[int], steps: int) -> list[torch.Tensor]:
    """Prefill ``prompt`` then greedily decode ``steps`` tokens one at a time; each step's logits."""
    cache, ids, logits = DynamicCache(config=model.config), torch.tensor([prompt]), []
    with torch.inference_mode():
        for _ in range(steps):
            out = model(input_ids=ids, use_cache=True, **{cache_keyword(model): cache}).logits[0, -1]
            logits.append(out.float())
            ids = out.argmax().view(1, 1)
    return logits


def test_engine_attention_decodes_exactly_like_eager_attention(smollm2_path):
    # float32, one row, no mask: the engine keeps transformers' SDPA there.
    prompt = [1, 504, 3458, 282, 260, 1345, 30, 2683, 314, 3158, 47]
    eager, engine = (_decode_logits(AutoModelForCausalLM.from_pretrained(
        smollm2_path, dtype=torch.float32, attn_implementation=impl).eval(), prompt, 6)
        for impl in ("eager", ENGINE_ATTENTION))
    for expected, got in zip(eager, engine, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("boolean_mask", [True, False])
def test_grouped_decode_attention_equals_full_precision_attention_and_ignores_masked_columns(boolean_mask):
    # SmolLM2's shape: 9 query heads over 3 KV heads. Row 0 is left-padded (4 columns) and every row
    # has 3 spare columns at the end, as in the engine's decode batch; those hold garbage here.
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(2, 9, 1, 64, generator=generator).bfloat16()
    key, value = (torch.randn(2, 3, 12, 64, generator=generator).bfloat16() for _ in range(2))
    attend = torch.ones(2, 1, 1, 12, dtype=torch.bool)
    attend[0, ..., :4] = attend[..., 9:] = False
    key[~attend.expand(2, 3, 1, 12)[:, :, 0]] = 1e4
    mask = attend if boolean_mask else torch.zeros(attend.shape).masked_fill(~attend, float("-inf"))
    got = grouped_decode_attention(query, key, value, mask, scaling=None)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query.float(), key.float().repeat_interleave(3, dim=1), value.float().repeat_interleave(3, dim=1),
        attn_mask=attend).transpose(1, 2)
    assert got.shape == (2, 1, 9, 64)
    torch.testing.assert_close(got.float(), expected, rtol=0.02, atol=0.02)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU auto is decided by the GPU")
def test_auto_dtype_falls_back_to_float32_without_native_bf16_and_a_named_dtype_is_kept(monkeypatch):
    assert engine_dtype("auto") in (torch.bfloat16, torch.float32)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)  # a CPU without oneDNN bf16
    assert engine_dtype("auto") == torch.float32
    assert engine_dtype("float32") == torch.float32 and engine_dtype("bfloat16") == torch.bfloat16
    with pytest.raises(AttributeError):
        engine_dtype("float33")


def test_the_default_engine_answers_sensibly_alone_and_in_a_batch(smollm2_path):
    engine = TransformersEngine(str(smollm2_path), num_threads=1, max_batch_size=4, max_model_len=2048)
    try:
        assert engine.model.dtype == engine_dtype("auto")
        question = parse_request({"messages": [{"role": "user", "content": "What is the capital of France?"}],
                                  "max_tokens": 24, "temperature": 0}, chat=True)
        company = parse_request({"messages": [{"role": "user", "content": "Write a long story about a dragon."}],
                                 "max_tokens": 40, "temperature": 0}, chat=True)
        alone = engine.generate([question])[0]
        together = engine.generate([company, question])
        assert "Paris" in alone.text and "Paris" in together[1].text
        assert together[0].completion_tokens == 40
    finally:
        engine.close()
