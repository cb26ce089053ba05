"""Needle in a haystack (gkamradt's LLMTest_NeedleInAHaystack): a grid of lengths x depths.

For each context length and depth one fact (the needle, by default the
San Francisco sandwich sentence) is hidden in Paul Graham essays at token
position floor(len * depth / 100), moved back to the previous sentence end
(depth 100 appends it at the end), and the model is asked the matching
question. Unlike gkamradt's fixed 200-token buffer, the haystack is sized so
that the rendered prompt plus ``max_tokens`` fits the context length exactly,
as RULER counts.

Scoring is either a case-insensitive substring check of the needle's key facts
(offline default) or an LLM judge asked, through the same ``generate``
callable, for gkamradt's 1-10 rubric score. Scores are on 0-100 (judge score x
10). The runner builds samples here, scores them here and draws the heatmap
with ``plots.plot_niah_heatmap``.
"""

from __future__ import annotations

import functools
import random
import re

from ray_lcb.evaluation.haystack import load_essay_text
from ray_lcb.evaluation.length_fit import LengthTooSmallError, PromptRenderer
from ray_lcb.evaluation.scoring import postprocess_prediction, string_match_all

QUESTION_SUFFIX = " Don't give information outside the document or repeat your findings"
JUDGE_TEMPLATE = (
    "Please act as an impartial judge and evaluate the quality of the answer provided by an AI assistant "
    "to the question below, comparing it with the reference answer.\n\n"
    "[Question]\n{question}\n\n[Reference answer]\n{reference}\n\n[Assistant's answer]\n{prediction}\n\n"
    "Score the answer from 1 to 10 following this rubric:\n"
    "Score 1: The answer is completely unrelated to the reference.\n"
    "Score 3: The answer has minor relevance but does not align with the reference.\n"
    "Score 5: The answer has moderate relevance but contains inaccuracies.\n"
    "Score 7: The answer aligns with the reference but has minor omissions.\n"
    "Score 10: The answer is completely accurate and aligns perfectly with the reference.\n"
    "Only respond with a numerical score.")
JUDGE_ANSWER_PREFIX = "Score:"
_SCORE_AFTER_LABEL = re.compile(r"(?:score|rating)\s*(?:is|of|=|:)?\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_FIRST_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?!\w)")


@functools.lru_cache(maxsize=4)
def _essay_ids(tokenizer) -> tuple[int, ...]:
    return tuple(tokenizer(load_essay_text(), add_special_tokens=False)["input_ids"])


@functools.lru_cache(maxsize=4)
def _sentence_end_ids(tokenizer) -> frozenset[int]:
    """Token ids that end a sentence: their text ends with a period (optionally a closing quote)."""
    ends = (".", '."', ".'", ".\u201d", ".\u2019")
    return frozenset(i for i in set(_essay_ids(tokenizer)) if tokenizer.decode([i]).rstrip().endswith(ends))


def insertion_point(haystack: list[int], depth: float, sentence_ends: frozenset[int]) -> int:
    """gkamradt's placement: token floor(len * depth / 100), then back to just after a sentence end."""
    if depth >= 100:
        return len(haystack)
    point = int(len(haystack) * depth / 100)
    while point > 0 and haystack[point - 1] not in sentence_ends:
        point -= 1
    return point


def build_niah_sample(renderer: PromptRenderer, length: int, depth: float, *, needle: str, question: str,
                      key_facts: list[str], max_tokens: int, system_prompt: str | None,
                      index: int = 0, seed: int = 42) -> dict:
    """One needle-in-a-haystack sample whose prompt plus ``max_tokens`` fits ``length`` tokens.

    Index 0 starts the haystack at the first essay, as gkamradt does; other
    indices start at a seeded random offset, so repeated cells differ.

    Raises:
        LengthTooSmallError: ``length`` cannot hold the question and the needle.
    """
    tokenizer = renderer.tokenizer
    essay = _essay_ids(tokenizer)
    needle_ids = renderer.encode(needle)
    question_text = question + QUESTION_SUFFIX
    overhead = renderer.count(renderer.render("\n\n" + question_text, "", system_prompt)) + max_tokens
    budget = length - overhead - len(needle_ids)
    if budget <= 0:
        raise LengthTooSmallError(f"needle-in-a-haystack at length {length}: the question, needle and max_tokens "
                                  f"alone need {overhead + len(needle_ids)} tokens; use a longer length")
    offset = 0 if index == 0 else random.Random(f"{seed}:niah:{length}:{depth}:{index}").randrange(len(essay))
    for _ in range(8):
        reps = (offset + budget) // len(essay) + 1
        haystack = list((essay * reps)[offset:offset + budget])
        point = insertion_point(haystack, depth, _sentence_end_ids(tokenizer))
        context = tokenizer.decode(haystack[:point] + needle_ids + haystack[point:])
        sample = {"task": "niah", "length": length, "index": index, "depth": depth,
                  "input": f"{context}\n\n{question_text}", "system": system_prompt, "answer_prefix": "",
                  "answers": list(key_facts), "tokens_to_generate": max_tokens, "metric": "niah",
                  "needle": needle, "needle_token_index": point, "haystack_tokens": len(haystack)}
        total = renderer.sample_tokens(sample)
        if total <= length:
            sample["num_tokens"] = total
            return sample
        # Decoding and re-encoding can merge tokens differently at the seams.
        budget -= total - length
    raise AssertionError(f"could not fit a needle-in-a-haystack prompt into {length} tokens")


def substring_score(prediction: str, key_facts: list[str]) -> float:
    """Share of the needle's key facts found in the answer (case-insensitive), on 0-100."""
    return 100.0 * string_match_all(postprocess_prediction(prediction), key_facts)


def judge_prompt(question: str, reference: str, prediction: str) -> str:
    """The judge's user message: gkamradt's 1/3/5/7/10 rubric (his judge is gpt-3.5 via LangChain)."""
    return JUDGE_TEMPLATE.format(question=question, reference=reference.strip(), prediction=prediction.strip())


def parse_judge_score(text: str) -> int | None:
    """The 1-10 score in a judge's reply, or None when the reply holds no usable score.

    Accepts "7", "Score: 7", "**Rating:** 7/10", "7.0"; rejects replies
    without a number, numbers outside 1..10 and non-integral scores.
    """
    text = postprocess_prediction(text)
    match = _SCORE_AFTER_LABEL.search(text) or _FIRST_NUMBER.search(text)
    if not match:
        return None
    value = float(match.group(1))
    if not value.is_integer() or not 1 <= value <= 10:
        return None
    return int(value)
