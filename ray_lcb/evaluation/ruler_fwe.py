"""RULER's frequent words extraction task (fwe): name the three most frequent coded words.

Follows ``scripts/data/synthetic/freq_words_extraction.py`` of NVIDIA/RULER.
The vocabulary is (length - tokens_to_generate) // 50 random 6-letter words;
the word of rank k occurs int(n * k^-alpha / zeta(alpha)) times for a text of
n words (a Zipf law). The rank-1 word is replaced by "..." (noise the prompt
says to ignore), so the answer is ranks 2-4. The haystack size fitted by
``ruler.py`` is n.
"""

from __future__ import annotations

import functools
import random
import string
from dataclasses import dataclass

TEMPLATE = ("Read the following coded text and track the frequency of each coded word. "
            "Find the three most frequently appeared coded words. {context}\n"
            "Question: Do not provide any explanation. Please ignore the dots '....'. "
            "What are the three most frequently appeared words in the above coded text?")
ANSWER_PREFIX = " Answer: According to the coded text above, the three most frequently appeared words are:"
WORD_LEN = 6


@dataclass(frozen=True)
class FweParams:
    alpha: float = 2.0


@functools.lru_cache(maxsize=8)
def zeta(alpha: float, terms: int = 100_000) -> float:
    """Riemann zeta(alpha) for alpha > 1: a partial sum plus the Euler-Maclaurin tail."""
    if alpha <= 1:
        raise ValueError(f"fwe alpha must be > 1 for a finite zeta, got {alpha}")
    partial = sum(k ** -alpha for k in range(1, terms))
    return partial + terms ** (1 - alpha) / (alpha - 1) + 0.5 * terms ** -alpha


def vocab_size(length: int, tokens_to_generate: int) -> int:
    return max(5, (length - tokens_to_generate) // 50)


def size_range(params: FweParams) -> tuple[int, int | None]:
    # Rank 4 needs at least one occurrence: n * 4^-alpha / zeta >= 1.
    return int(zeta(params.alpha) * 4 ** params.alpha) + 1, None


def build_fwe(params: FweParams, size: int, rng: random.Random, *, length: int, tokens_to_generate: int) -> dict:
    """One fwe sample of about ``size`` coded words; ``answers`` are the words of rank 2-4."""
    num_vocab = vocab_size(length, tokens_to_generate)
    vocab: list[str] = []
    seen: set[str] = set()
    while len(vocab) < num_vocab:
        word = "".join(rng.choices(string.ascii_lowercase, k=WORD_LEN))
        if word not in seen:
            seen.add(word)
            vocab.append(word)
    vocab[0] = "..."  # the most frequent "word" is noise
    z = zeta(params.alpha)
    counts = [int(size * k ** -params.alpha / z) for k in range(1, num_vocab + 1)]
    words = [w for w, c in zip(vocab, counts) for _ in range(c)]
    rng.shuffle(words)
    return {"input": TEMPLATE.format(context=" ".join(words)), "answer_prefix": ANSWER_PREFIX,
            "answers": vocab[1:4], "depth": None}
