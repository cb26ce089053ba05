"""Checks of LLM outputs. Each returns (cleaned text, None) or (None, drop reason);
the reasons are counted in the job report."""

from __future__ import annotations

import re

REFUSALS = re.compile(r"^\s*(i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|as an ai|i'?m unable|i am unable)", re.I)
_PREFIX = re.compile(r"^\W*instruction\s*:\s*", re.I)


def _common(text: str | None, finish_reason: str | None) -> str | None:
    if text is None or not text.strip():
        return "empty"
    if finish_reason == "length":
        return "truncated"  # ran to the token budget: endless or rambling output
    if REFUSALS.match(text):
        return "refusal"
    return None


def validate_instruction(text: str | None, finish_reason: str | None, *, min_chars: int = 20,
                         max_chars: int = 600) -> tuple[str | None, str | None]:
    """An instruction: one 'Instruction: ...' line (prefix optional), bounded length.

    Output cut at the token budget is kept when its first line is complete
    (small models go on after the requested single line)."""
    if finish_reason == "length" and text and "\n" in text.strip():
        text, finish_reason = text.strip().rsplit("\n", 1)[0], "stop"
    reason = _common(text, finish_reason)
    if reason:
        return None, f"instruction_{reason}"
    # A line ending in ':' ("Here is the instruction:", a bare "Instruction:") introduces the
    # instruction on a later line; it is not one.
    lines = [line for line in text.strip().splitlines() if line.strip() and not line.rstrip().endswith(":")]
    if not lines:
        return None, "instruction_malformed"
    marked = [line for line in lines if _PREFIX.match(line)]
    candidate = _PREFIX.sub("", marked[0] if marked else lines[0]).strip().strip('"').strip()
    if not candidate or len(candidate) < min_chars:
        return None, "instruction_too_short"
    if len(candidate) > max_chars:
        return None, "instruction_too_long"
    if not re.search(r"[A-Za-z]{3}", candidate):
        return None, "instruction_malformed"
    return candidate, None


def validate_summary(text: str | None, finish_reason: str | None) -> tuple[str | None, str | None]:
    """A summary may be cut at its budget (kept: notes stay useful), but not empty."""
    if text is None or not text.strip():
        return None, "summary_empty"
    if REFUSALS.match(text):
        return None, "summary_refusal"
    return text.strip(), None


def validate_response(text: str | None, finish_reason: str | None, *, min_chars: int,
                      instruction: str = "", trim_truncated: bool = False) -> tuple[str | None, str | None]:
    """A response. With ``trim_truncated``, one cut at its token budget is kept up
    to its last complete sentence (small generators rarely stop on their own)."""
    if trim_truncated and finish_reason == "length" and text:
        text, finish_reason = trim_to_sentence(text), "stop"
    reason = _common(text, finish_reason)
    if reason:
        return None, f"response_{reason}"
    text = text.strip()
    if len(text) < min_chars:
        return None, "response_too_short"
    if instruction and _overlap(text, instruction) > 0.8:
        return None, "response_echoes_instruction"
    if _repetitive(text):
        return None, "response_repetitive"
    return text, None


def trim_to_sentence(text: str) -> str:
    """The text up to its last sentence end ('.', '!' or '?'), or '' if it has none."""
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", text)]
    return text[:ends[-1]] if ends else ""


def _overlap(text: str, reference: str) -> float:
    """Share of the text's words that are the reference's words (echo detection)."""
    words = text.lower().split()
    known = set(reference.lower().split())
    return sum(w in known for w in words) / max(1, len(words))


def _repetitive(text: str, ngram: int = 8) -> bool:
    """Degenerate loops: the same 8-word sequence making up most of the text."""
    words = text.split()
    if len(words) < 4 * ngram:
        return False
    grams = [tuple(words[i:i + ngram]) for i in range(len(words) - ngram + 1)]
    return len(set(grams)) < 0.3 * len(grams)
