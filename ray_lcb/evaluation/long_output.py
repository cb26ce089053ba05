"""Long-output check: ask for texts of about 1k-8k words and score how well the length is met.

The score is LongBench-Write's length score (LongWriter, arXiv 2408.07055,
section 2): for a required length l and an output of l' words

    S_l = 100 * max(0, 1 - (l'/l - 1) / 3)   if l' > l
    S_l = 100 * max(0, 1 - (l/l' - 1) / 2)   otherwise

so overshooting is penalised less than stopping short. Words are counted as
LongWriter does: English words plus CJK characters. The runner builds the
requests here and scores the replies here.
"""

from __future__ import annotations

import re

PROMPT = ("Write a {words}-word {genre} about {topic}. The text should be about {words} words long; "
          "do not stop before reaching that length.")
DEFAULT_TOPICS = [
    ("essay", "how cities change when a new railway line opens"),
    ("story", "a lighthouse keeper who finds a message in a bottle"),
    ("report", "the history and future of renewable energy"),
    ("guide", "planning a month-long hiking trip through the mountains"),
]
_ENGLISH_WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019-][A-Za-z0-9]+)*")
_CJK_CHAR = re.compile(r"[\u4e00-\u9fff]")


def count_words(text: str) -> int:
    """Words in ``text``: English words (with inner apostrophes/hyphens) plus CJK characters."""
    return len(_ENGLISH_WORD.findall(text)) + len(_CJK_CHAR.findall(text))


def length_score(required: int, produced: int) -> float:
    """LongBench-Write's S_l in [0, 100] for ``produced`` words against ``required`` words."""
    if required <= 0:
        raise ValueError(f"required length must be positive, got {required}")
    if produced <= 0:
        return 0.0
    if produced > required:
        return 100.0 * max(0.0, 1.0 - (produced / required - 1.0) / 3.0)
    return 100.0 * max(0.0, 1.0 - (required / produced - 1.0) / 2.0)


def build_long_output_samples(target_words: list[int], tokens_per_word: float) -> list[dict]:
    """One request per target length, cycling through the default topics."""
    samples = []
    for i, words in enumerate(target_words):
        genre, topic = DEFAULT_TOPICS[i % len(DEFAULT_TOPICS)]
        samples.append({"task": "long_output", "length": words, "index": 0,
                        "input": PROMPT.format(words=words, genre=genre, topic=topic), "answer_prefix": "",
                        "answers": [], "tokens_to_generate": int(words * tokens_per_word), "depth": None,
                        "metric": "length"})
    return samples


def score_long_output(samples: list[dict], texts: list[str]) -> dict:
    """Per requested length: words produced and S_l; plus the mean S_l over lengths."""
    per_length = {}
    for sample, text in zip(samples, texts):
        produced = count_words(text)
        per_length[str(sample["length"])] = {"required_words": sample["length"], "output_words": produced,
                                             "length_score": round(length_score(sample["length"], produced), 2)}
    scores = [v["length_score"] for v in per_length.values()]
    return {"per_length": per_length, "mean_length_score": round(sum(scores) / len(scores), 2) if scores else None}
