"""RULER's length accounting: render a sample as the model sees it and fit its size.

A sample of target length L must satisfy

    tokens(chat_template(user: input) + answer_prefix) + tokens_to_generate <= L

and come as close to L as the haystack's granularity allows (a word, a line, a
document). Every task generator describes its haystack by one integer (number
of words, lines, documents, ...) and calls :func:`fit_largest` to find the
largest size that fits. The runner renders prompts with the same
:class:`PromptRenderer`, so the counted text is the text sent to the model.
"""

from __future__ import annotations

from typing import Callable, Literal, TypeVar

T = TypeVar("T")


class LengthTooSmallError(ValueError):
    """The smallest haystack a task allows does not fit the requested length."""


PromptFormat = Literal["chat_template", "raw", "llama3"]
# RULER's `meta-llama3` template: a user turn and no system turn. HF's
# Llama-3.1 chat template always adds a system header ("Cutting Knowledge
# Date..."), which shifts scores (see RULER #54 and SelfLong's data).
_LLAMA3_TURN = "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"


class PromptRenderer:
    """Turns a sample into the exact prompt text and counts its tokens.

    Args:
        tokenizer: the evaluated model's Hugging Face tokenizer.
        prompt_format: ``chat_template`` renders with the tokenizer's own chat
            template (a tokenizer without one falls back to ``raw``); ``raw``
            sends the task text alone (RULER's ``base``); ``llama3`` is RULER's
            ``meta-llama3`` template, without the system header HF's
            Llama-3.1 template inserts.
    """

    def __init__(self, tokenizer, prompt_format: PromptFormat = "chat_template"):
        if prompt_format not in ("chat_template", "raw", "llama3"):
            raise ValueError(f"prompt_format '{prompt_format}' is unknown; use chat_template, raw or llama3")
        if prompt_format == "chat_template" and not getattr(tokenizer, "chat_template", None):
            prompt_format = "raw"
        self.tokenizer = tokenizer
        self.prompt_format = prompt_format

    def render(self, input_text: str, answer_prefix: str = "", system: str | None = None) -> str:
        """The full prompt: the templated user turn, then the answer prefix to continue."""
        if self.prompt_format == "raw":
            head = f"{system}\n\n" if system else ""
            return head + input_text + answer_prefix
        if self.prompt_format == "llama3":
            turns = [_LLAMA3_TURN.format(role="system", content=system)] if system else []
            turns.append(_LLAMA3_TURN.format(role="user", content=input_text))
            head = "<|begin_of_text|>" + "".join(turns)
            return head + "<|start_header_id|>assistant<|end_header_id|>\n\n" + answer_prefix
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": input_text})
        templated = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return templated + answer_prefix

    def count(self, text: str) -> int:
        # The rendered template already holds its special tokens (BOS included
        # where the template has one), so none are added again.
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def sample_tokens(self, sample: dict) -> int:
        """Prompt tokens plus ``tokens_to_generate``: the number RULER compares to L."""
        prompt = self.render(sample["input"], sample["answer_prefix"], sample.get("system"))
        return self.count(prompt) + sample["tokens_to_generate"]


def fit_largest(build: Callable[[int], T], measure: Callable[[T], int], budget: int, *,
                low: int = 1, high: int | None = None, hint: int | None = None,
                what: str = "sample") -> tuple[int, T, int]:
    """Largest size ``n`` in ``[low, high]`` with ``measure(build(n)) <= budget``.

    The token count grows almost linearly with the haystack size, so each step
    interpolates between the closest sizes known to fit and not to fit, with a
    bisection step whenever interpolation stalls. Starting near ``hint`` (the
    previous sample's size) usually needs two or three evaluations.

    Returns:
        ``(n, build(n), measure(build(n)))`` for the largest fitting size found.

    Raises:
        LengthTooSmallError: ``build(low)`` is already over the budget.
    """
    high = high if high is not None else 1 << 40
    assert low <= high, (low, high)
    known: dict[int, tuple[T, int]] = {}

    def evaluate(n: int) -> int:
        if n not in known:
            item = build(n)
            known[n] = (item, measure(item))
        return known[n][1]

    if evaluate(low) > budget:
        raise LengthTooSmallError(
            f"{what}: the shortest possible prompt needs {known[low][1]} tokens (including tokens_to_generate), "
            f"more than the requested length {budget}; use a length of at least {known[low][1]}")
    fit, fail = low, None  # fit: largest size known to fit; fail: smallest size known not to
    guess = min(max(hint or low, low), high)
    bisect = False
    while fit < high and (fail is None or fail - fit > 1):
        if guess != fit:
            width = None if fail is None else fail - fit
            if evaluate(guess) <= budget:
                fit = guess
            else:
                fail = guess
            # Regula falsi can crawl from one side; bisect after a step that
            # did not halve the bracket.
            bisect = width is not None and fail is not None and (fail - fit) * 2 > width
        if fail is not None and (bisect or fail - fit <= 2):
            guess = (fit + fail) // 2 if fail - fit > 1 else fit
        else:
            guess = _interpolate(fit, known[fit][1], fail, known[fail][1] if fail is not None else None,
                                 low, known[low][1], budget, high)
        if guess == fit:
            break
    item, tokens = known[fit]
    return fit, item, tokens


def _interpolate(fit: int, fit_tokens: int, fail: int | None, fail_tokens: int | None,
                 low: int, low_tokens: int, budget: int, high: int) -> int:
    """Next size to try: aim at the budget along the tokens-per-unit slope, inside the bracket."""
    if fail is None:
        slope = (fit_tokens - low_tokens) / (fit - low) if fit > low else 0.0
        if slope <= 0:
            return min(max(2 * fit, fit + 1), high)  # no slope yet: grow geometrically
        step = (budget - fit_tokens) / slope
        # Aim one percent past the budget so the next step brackets it.
        return min(fit + max(1, int(step * 1.01) + 1), high)
    slope = (fail_tokens - fit_tokens) / (fail - fit)
    guess = fit + int((budget - fit_tokens) / slope) if slope > 0 else (fit + fail) // 2
    return min(max(guess, fit + 1), fail - 1)
