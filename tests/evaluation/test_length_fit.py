"""Haystack-size fitting and prompt rendering."""

from __future__ import annotations

import pytest

from ray_lcb.evaluation.length_fit import LengthTooSmallError, PromptRenderer, fit_largest


@pytest.mark.parametrize("tokens_of", [
    lambda n: 100 + 3 * n,                      # linear, like a word haystack
    lambda n: 50 + n * n,                       # strongly non-linear
    lambda n: 80 + 7 * n + (n % 5),             # jagged, like tokenisation seams
])
@pytest.mark.parametrize("budget,hint", [(4096, None), (4096, 1200), (131072, None), (131072, 10)])
def test_fit_largest_finds_the_largest_fitting_size(tokens_of, budget, hint):
    calls = []

    def build(n):
        calls.append(n)
        return {"size": n}

    n, item, tokens = fit_largest(build, lambda item: tokens_of(item["size"]), budget, low=1, hint=hint)
    assert item == {"size": n} and tokens == tokens_of(n) <= budget
    assert all(tokens_of(m) > budget for m in range(n + 1, n + 6))  # nothing just above fits
    assert len(calls) < 60


def test_fit_largest_respects_high_and_low():
    n, _, _ = fit_largest(lambda n: n, lambda n: n, 1000, low=3, high=40)
    assert n == 40  # capped: the dataset has no more documents
    with pytest.raises(LengthTooSmallError, match="needs 3 tokens.*at least 3"):
        fit_largest(lambda n: n, lambda n: n, 2, low=3, what="t")


def test_renderer_applies_chat_template_then_answer_prefix(tokenizer):
    renderer = PromptRenderer(tokenizer)
    prompt = renderer.render("Find it.", " The answer is")
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt.endswith("<|im_start|>user\nFind it.<|im_end|>\n<|im_start|>assistant\n The answer is")
    assert renderer.render("Q", "", system="Be brief.").startswith("<|im_start|>system\nBe brief.<|im_end|>")
    raw = PromptRenderer(tokenizer, prompt_format="raw")
    assert raw.render("Find it.", " The answer is") == "Find it. The answer is"
    with pytest.raises(ValueError, match="prompt_format 'chatml' is unknown"):
        PromptRenderer(tokenizer, prompt_format="chatml")
    sample = {"input": "Find it.", "answer_prefix": " The answer is", "tokens_to_generate": 10}
    assert renderer.sample_tokens(sample) == len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) + 10


def test_llama3_format_is_rulers_template_without_system_header(tokenizer):
    llama3 = PromptRenderer(tokenizer, prompt_format="llama3")
    assert llama3.render("Find it.", " The answer is") == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nFind it.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n The answer is")
    with_system = llama3.render("Q", system="Be brief.")
    assert with_system.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.")
