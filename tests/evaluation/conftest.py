"""Fixtures for the evaluation tests: the SmolLM2 tokenizer, tiny QA datasets, a transformers generate callable."""

from __future__ import annotations

import json
import re

import pytest
import torch


class HFGenerate:
    """Greedy completion of fully rendered prompts with a Hugging Face causal LM.

    Args:
        model_ref: a ``ray_lcb.models`` reference.
        max_new_tokens_cap: upper bound on generated tokens per request, to keep
            CPU tests short; the request's ``max_tokens`` applies below it.
    """

    def __init__(self, model_ref: str, max_new_tokens_cap: int | None = None):
        from ray_lcb.models import load_causal_lm, load_tokenizer

        self.tokenizer = load_tokenizer(model_ref)
        self.model = load_causal_lm(model_ref).eval()
        self.cap = max_new_tokens_cap
        self.requests: list[dict] = []

    @torch.no_grad()
    def __call__(self, requests: list[dict]) -> list[dict]:
        # One intra-op thread: on a shared 2-core machine, two OpenMP threads
        # competing with other processes made one 1K-token request ~7x slower.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return [self._complete(request) for request in requests]
        finally:
            torch.set_num_threads(threads)

    def _complete(self, request: dict) -> dict:
        self.requests.append(request)
        max_new = request["max_tokens"] if self.cap is None else min(request["max_tokens"], self.cap)
        ids = self.tokenizer(request["prompt"], add_special_tokens=False, return_tensors="pt")["input_ids"]
        out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                                  do_sample=False, pad_token_id=self.tokenizer.eos_token_id)
        text = self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return {"id": request["id"], "text": text, "error": None}


SMOLLM2 = "bundled:smollm2-135m-instruct"


@pytest.fixture(scope="session")
def tokenizer():
    from ray_lcb.models import load_tokenizer

    return load_tokenizer(SMOLLM2)


@pytest.fixture(scope="session")
def renderer(tokenizer):
    from ray_lcb.evaluation.length_fit import PromptRenderer

    return PromptRenderer(tokenizer)


def _paragraphs(count: int, words_per_paragraph: int) -> list[str]:
    """Distinct real-text paragraphs cut from the essays (enough to fill a few thousand tokens)."""
    from ray_lcb.evaluation.haystack import essay_words

    words = essay_words()
    return [" ".join(words[i * words_per_paragraph:(i + 1) * words_per_paragraph]) for i in range(count)]


@pytest.fixture(scope="session")
def squad_file(tmp_path_factory):
    """A SQuAD v2-format file: 20 articles x 5 paragraphs; one answerable and one impossible question each."""
    paragraphs = _paragraphs(100, words_per_paragraph=40)
    articles = []
    for a in range(20):
        items = []
        for p in range(5):
            context = f"The secret city of paragraph {a}-{p} is Zorvaton{a}x{p}. " + paragraphs[a * 5 + p]
            items.append({"context": context, "qas": [
                {"id": f"q{a}-{p}", "question": f"What is the secret city of paragraph {a}-{p}?",
                 "answers": [{"text": f"Zorvaton{a}x{p}", "answer_start": context.index("Zorvaton")}],
                 "is_impossible": False},
                {"id": f"i{a}-{p}", "question": "What is the capital of the moon?", "answers": [],
                 "is_impossible": True},
            ]})
        articles.append({"title": f"Article {a}", "paragraphs": items})
    path = tmp_path_factory.mktemp("qa") / "dev-v2.0.json"
    path.write_text(json.dumps({"version": "v2.0", "data": articles}))
    return path


@pytest.fixture(scope="session")
def hotpotqa_file(tmp_path_factory):
    """A HotpotQA distractor-format file: 8 questions x 10 short titled paragraphs.

    RULER counts all ten paragraphs of a question as its gold documents.
    """
    paragraphs = _paragraphs(80, words_per_paragraph=35)
    items = []
    for q in range(8):
        context = []
        for k in range(10):
            sentences = re.findall(r"[^.]+\.?", paragraphs[q * 10 + k])
            if k == 0:
                sentences = [f"Brindlemoor{q} is the river that feeds Lake Quassel{q}. "] + sentences
            context.append([f"Title {q}-{k}", sentences])
        items.append({"_id": f"h{q}", "question": f"Which river feeds Lake Quassel{q}?",
                      "answer": f"Brindlemoor{q}", "supporting_facts": [[f"Title {q}-0", 0]],
                      "context": context, "type": "bridge", "level": "easy"})
    path = tmp_path_factory.mktemp("qa") / "hotpot_dev_distractor_v1.json"
    path.write_text(json.dumps(items))
    return path


@pytest.fixture(scope="session")
def hf_generate():
    """SmolLM2-135M-Instruct, greedy, at most 24 new tokens per request (CPU time)."""
    return HFGenerate(SMOLLM2, max_new_tokens_cap=24)
