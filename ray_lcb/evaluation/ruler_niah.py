"""RULER's eight needle-in-a-haystack tasks (niah_single_*, niah_multikey_*, niah_multivalue, niah_multiquery).

Follows ``scripts/data/synthetic/niah.py`` of NVIDIA/RULER. A needle reads
"One of the special magic {type} for {key} is: {value}."; keys are
adjective-noun pairs, 7-digit numbers or UUIDs; the haystack is

* ``noise``: a five-sentence filler line repeated, needles at random lines;
* ``essay``: Paul Graham essays, needles at sentence boundaries at depths drawn
  from 40 evenly spaced points on 0-100 %;
* ``needle``: every line a needle with a random distractor key.

The haystack size (lines or essay words) is what ``ruler.py`` fits to the
target length. Called only through ``ruler.build_ruler_samples``.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Literal

from ray_lcb.evaluation.haystack import NOISE_LINE, split_sentences, take_words
from ray_lcb.evaluation.words import word_lists

NEEDLE = "One of the special magic {type} for {key} is: {value}."
TEMPLATE = ("Some special magic {type} are hidden within the following text. Make sure to memorize it. "
            "I will quiz you about the {type} afterwards.\n{context}\n"
            "What are all the special magic {type} for {query} mentioned in the provided text?")
ANSWER_PREFIX = " The special magic {type} for {query} mentioned in the provided text are"
# With one query and one value RULER rewrites the prompt in the singular.
TEMPLATE_SINGLE = ("A special magic {type} is hidden within the following text. Make sure to memorize it. "
                   "I will quiz you about the {type} afterwards.\n{context}\n"
                   "What is the special magic {type} for {query} mentioned in the provided text?")
ANSWER_PREFIX_SINGLE = " The special magic {type} for {query} mentioned in the provided text is"

# RULER's essay depths: 40 evenly spaced points on 0..100, rounded.
DEPTHS = [round(100 * i / 39) for i in range(40)]

Kind = Literal["words", "numbers", "uuids"]


@dataclass(frozen=True)
class NiahParams:
    haystack: Literal["noise", "essay", "needle"]
    key_type: Kind
    value_type: Kind
    num_keys: int = 1
    num_values: int = 1
    num_queries: int = 1

    @property
    def num_needles(self) -> int:
        return max(self.num_keys, self.num_queries) * self.num_values


def random_item(kind: Kind, rng: random.Random) -> str:
    if kind == "numbers":
        return str(rng.randint(10**6, 10**7 - 1))
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    adjectives, nouns, _ = word_lists()
    return f"{rng.choice(adjectives)}-{rng.choice(nouns)}"


def _distinct(kind: Kind, rng: random.Random, count: int, exclude: set[str]) -> list[str]:
    items: list[str] = []
    seen = set(exclude)
    while len(items) < count:
        item = random_item(kind, rng)
        if item not in seen:
            seen.add(item)
            items.append(item)
    return items


def size_range(params: NiahParams) -> tuple[int, int | None]:
    """Smallest and largest haystack size (lines, or essay words); None means unbounded."""
    return (10, None) if params.haystack == "essay" else (params.num_needles, None)


def build_niah(params: NiahParams, size: int, rng: random.Random) -> dict:
    """One sample with a haystack of ``size`` lines (noise, needle) or essay words.

    Returns:
        ``{"input", "answer_prefix", "answers", "depth"}``; ``depth`` is the
        queried needle's depth in percent (a list when several are queried).
    """
    num_keys = max(params.num_keys, params.num_queries)
    keys = _distinct(params.key_type, rng, num_keys, set())
    values = [_distinct(params.value_type, rng, params.num_values, set()) for _ in keys]
    needles = [NEEDLE.format(type=params.value_type, key=k, value=v) for k, vs in zip(keys, values) for v in vs]
    rng.shuffle(needles)

    if params.haystack == "essay":
        context, needle_depth = _essay_context(needles, size, rng)
    else:
        context, needle_depth = _line_context(params, needles, keys, size, rng)

    query_ids = sorted(rng.sample(range(num_keys), params.num_queries))
    queries = [keys[i] for i in query_ids]
    answers = [v for i in query_ids for v in values[i]]
    query = queries[0] if len(queries) == 1 else ", ".join(queries[:-1]) + ", and " + queries[-1]
    single = params.num_queries * params.num_values == 1
    kind = params.value_type[:-1] if single else params.value_type
    template, prefix = (TEMPLATE_SINGLE, ANSWER_PREFIX_SINGLE) if single else (TEMPLATE, ANSWER_PREFIX)
    depths = [needle_depth[NEEDLE.format(type=params.value_type, key=keys[i], value=v)]
              for i in query_ids for v in values[i]]
    return {
        "input": template.format(type=kind, context=context, query=query),
        "answer_prefix": prefix.format(type=kind, query=query),
        "answers": answers,
        "depth": depths[0] if len(depths) == 1 else depths,
    }


def _essay_context(needles: list[str], num_words: int, rng: random.Random) -> tuple[str, dict[str, float]]:
    sentences = split_sentences(take_words(num_words))
    depths = sorted(rng.sample(DEPTHS, len(needles)))
    cuts = [int(len(sentences) * d / 100) for d in depths]
    parts, start = [], 0
    for cut, needle in zip(cuts, needles):
        parts.extend(sentences[start:cut])
        parts.append(needle)
        start = cut
    parts.extend(sentences[start:])
    return " ".join(parts), {needle: float(d) for needle, d in zip(needles, depths)}


def _line_context(params: NiahParams, needles: list[str], keys: list[str], num_lines: int,
                  rng: random.Random) -> tuple[str, dict[str, float]]:
    if params.haystack == "noise":
        lines = [NOISE_LINE] * num_lines
    else:
        # Every line is a needle; distractor keys never repeat a real key, so
        # the question keeps a single correct answer.
        distractor_keys = _distinct(params.key_type, rng, num_lines, set(keys))
        lines = [NEEDLE.format(type=params.value_type, key=k, value=random_item(params.value_type, rng))
                 for k in distractor_keys]
    positions = sorted(rng.sample(range(num_lines), len(needles)), reverse=True)
    for position, needle in zip(positions, needles):
        lines.insert(position, needle)
    wanted = set(needles)
    depth = {line: 100.0 * i / max(1, len(lines) - 1) for i, line in enumerate(lines) if line in wanted}
    return "\n".join(lines), depth
