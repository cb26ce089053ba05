"""RULER's scoring rules and score aggregation.

Follows ``scripts/eval/synthetic/constants.py`` and ``scripts/eval/evaluate.py``
of NVIDIA/RULER: a prediction is stripped and its control characters become
newlines; ``string_match_all`` scores the fraction of references found as
case-insensitive substrings, ``string_match_part`` scores 1 when any is found;
a task's score is the mean times 100, rounded to two decimals. The runner calls
:func:`score_prediction` per sample and :func:`task_score` per task and length.
"""

from __future__ import annotations

import re
from typing import Iterable, Literal, Sequence

Metric = Literal["all", "part"]

_CONTROL_CHARS = re.compile(r"[\x00-\x1f]")
# RULER's "effective length" threshold: Llama-2-7B-chat's score at 4K.
EFFECTIVE_LENGTH_THRESHOLD = 85.6


def postprocess_prediction(text: str) -> str:
    """Strip, then turn every control character (\\x00-\\x1f) into a newline, then strip."""
    return _CONTROL_CHARS.sub("\n", text.strip()).strip()


def string_match_all(prediction: str, references: Sequence[str]) -> float:
    """Fraction of ``references`` that occur in ``prediction``, ignoring case (0..1)."""
    if not references:
        raise ValueError("a sample needs at least one reference answer")
    pred = prediction.lower()
    return sum(ref.lower() in pred for ref in references) / len(references)


def string_match_part(prediction: str, references: Sequence[str]) -> float:
    """1.0 when any of ``references`` occurs in ``prediction``, ignoring case, else 0.0."""
    if not references:
        raise ValueError("a sample needs at least one reference answer")
    pred = prediction.lower()
    return float(any(ref.lower() in pred for ref in references))


def score_prediction(prediction: str, references: Sequence[str], metric: Metric) -> float:
    """One sample's score in [0, 1] after RULER's preprocessing."""
    text = postprocess_prediction(prediction)
    if metric == "all":
        return string_match_all(text, references)
    if metric == "part":
        return string_match_part(text, references)
    raise ValueError(f"unknown metric '{metric}'; use 'all' or 'part'")


def task_score(sample_scores: Iterable[float]) -> float:
    """Mean of per-sample scores in [0, 1], times 100, rounded to 2 decimals (RULER)."""
    scores = list(sample_scores)
    if not scores:
        raise ValueError("cannot score a task with no samples")
    return round(100.0 * sum(scores) / len(scores), 2)


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 2) if values else None


def weighted_averages(per_length: dict[int, float]) -> tuple[float | None, float | None]:
    """RULER's wAvg(inc) and wAvg(dec): weights 1..n rising / falling with length."""
    lengths = sorted(per_length)
    if not lengths:
        return None, None
    weights = range(1, len(lengths) + 1)
    total = sum(weights)
    inc = sum(w * per_length[n] for w, n in zip(weights, lengths)) / total
    dec = sum(w * per_length[n] for w, n in zip(weights, reversed(lengths))) / total
    return round(inc, 2), round(dec, 2)


def effective_length(per_length: dict[int, float], threshold: float = EFFECTIVE_LENGTH_THRESHOLD) -> int | None:
    """The longest length up to which every average stays above ``threshold`` (None if the shortest fails)."""
    best = None
    for length in sorted(per_length):
        if per_length[length] <= threshold:
            break
        best = length
    return best
