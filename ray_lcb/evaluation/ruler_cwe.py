"""RULER's common words extraction task (cwe): name the 10 most frequent words of a list.

Follows ``scripts/data/synthetic/common_words_extraction.py`` of NVIDIA/RULER.
A numbered list ("1. apple 2. river ...") repeats ``num_cw`` common words
``freq_cw`` times and every other word ``freq_ucw`` times, shuffled; one
worked example (40 words, repeats 10/3) comes first. Below 4096 tokens RULER
lowers the repeats to 6/1 and the example to 20 words, repeats 3/1. The
haystack size fitted by ``ruler.py`` is the number of distinct words.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass

from ray_lcb.evaluation.words import cwe_vocabulary

TEMPLATE = ("Below is a numbered list of words. In these words, some appear more often than others. "
            "Memorize the ones that appear most often.\n{context}\n"
            "Question: What are the {num_cw} most common words in the above list?")
ANSWER_PREFIX = " Answer: The top {num_cw} words that appear most often in the list are:"
SHORT_LENGTH = 4096  # below this RULER uses the lighter repeat counts


@dataclass(frozen=True)
class CweParams:
    freq_cw: int = 30
    freq_ucw: int = 3
    num_cw: int = 10


@functools.lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    """The CWE word pool minus the prompt's own words, which a reply would contain anyway."""
    prompt_words = set(re.findall(r"[a-z]+", (TEMPLATE + ANSWER_PREFIX).lower()))
    return tuple(w for w in cwe_vocabulary() if w not in prompt_words)


def _word_list(rng: random.Random, num_words: int, num_cw: int, freq_cw: int, freq_ucw: int) -> tuple[str, list[str]]:
    chosen = rng.sample(vocabulary(), num_words)
    common, uncommon = chosen[:num_cw], chosen[num_cw:]
    entries = common * freq_cw + uncommon * freq_ucw
    rng.shuffle(entries)
    return " ".join(f"{i + 1}. {word}" for i, word in enumerate(entries)), common


def size_range(params: CweParams) -> tuple[int, int | None]:
    return params.num_cw + 1, len(vocabulary())


def build_cwe(params: CweParams, size: int, rng: random.Random, *, length: int) -> dict:
    """One cwe sample with ``size`` distinct words; ``answers`` are the common words."""
    if length < SHORT_LENGTH:
        example_args, main_repeats = (20, 3, 1), (6, 1)
    else:
        example_args, main_repeats = (40, 10, 3), (params.freq_cw, params.freq_ucw)
    example_words, example_repeats = example_args[0], example_args[1:]
    example_context, example_answer = _word_list(rng, example_words, params.num_cw, *example_repeats)
    context, answer = _word_list(rng, size, params.num_cw, *main_repeats)
    prefix = ANSWER_PREFIX.format(num_cw=params.num_cw)
    example = (TEMPLATE.format(context=example_context, num_cw=params.num_cw) + prefix + " "
               + " ".join(f"{i + 1}. {word}" for i, word in enumerate(example_answer)))
    text = TEMPLATE.format(context=context, num_cw=params.num_cw)
    return {"input": example + "\n" + text, "answer_prefix": prefix, "answers": answer, "depth": None}
