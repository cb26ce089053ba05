"""RULER's variable tracking task (vt): follow a chain of variable assignments.

Follows ``scripts/data/synthetic/variable_tracking.py`` of NVIDIA/RULER. Each
chain is "VAR AAAAA = 12345", "VAR BBBBB = VAR AAAAA ", ... (num_hops copies),
its lines inserted at random positions of the repeated noise line; the question
names the first value and the answer is every variable of that chain. One
in-context example with 3-letter names, fitted to 500 tokens, is prepended.
The haystack size fitted by ``ruler.py`` is the number of noise lines.
"""

from __future__ import annotations

import functools
import random
import string
from dataclasses import dataclass

from ray_lcb.evaluation.haystack import NOISE_LINE
from ray_lcb.evaluation.length_fit import PromptRenderer, fit_largest

TEMPLATE = ("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
            "{context}\nQuestion: Find all variables that are assigned the value {query} in the text above.")
ANSWER_PREFIX = (" Answer: According to the chain(s) of variable assignment in the text above, "
                 "{num_v} variables are assigned the value {query}, they are: ")
ICL_LENGTH = 500  # RULER builds its one in-context example at this length


@dataclass(frozen=True)
class VtParams:
    num_chains: int = 1
    num_hops: int = 4


def _chains(params: VtParams, rng: random.Random, name_len: int) -> tuple[list[list[str]], list[list[str]]]:
    num_vars = (params.num_hops + 1) * params.num_chains
    names: list[str] = []
    while len(names) < num_vars:
        name = "".join(rng.choices(string.ascii_uppercase, k=name_len))
        if name not in names:
            names.append(name)
    variables, chains = [], []
    for c in range(params.num_chains):
        chain_vars = names[c * (params.num_hops + 1):(c + 1) * (params.num_hops + 1)]
        lines = [f"VAR {chain_vars[0]} = {rng.randint(10000, 99999)}"]
        lines += [f"VAR {chain_vars[j + 1]} = VAR {chain_vars[j]} " for j in range(params.num_hops)]
        variables.append(chain_vars)
        chains.append(lines)
    return variables, chains


def _task_text(params: VtParams, num_noises: int, rng: random.Random, name_len: int) -> tuple[str, str, list[str]]:
    """(input without example, answer prefix, answer variables) for one chain set."""
    variables, chains = _chains(params, rng, name_len)
    lines = [NOISE_LINE + "\n"] * num_noises
    for chain in chains:
        positions = sorted(rng.sample(range(len(lines)), len(chain)))
        for j, (position, line) in enumerate(zip(positions, chain)):
            lines.insert(position + j, line)
    context = " ".join(lines).replace(". \n", ".\n")
    value = chains[0][0].split("=")[-1].strip()
    return (TEMPLATE.format(context=context, query=value),
            ANSWER_PREFIX.format(num_v=params.num_hops + 1, query=value), variables[0])


@functools.lru_cache(maxsize=16)
def _icl_example(params: VtParams, seed: int, renderer: PromptRenderer, tokens_to_generate: int) -> str:
    """The worked example (question, answer prefix, answer) shown before the real task."""
    def build(num_noises: int) -> str:
        text, prefix, answer = _task_text(params, num_noises, random.Random(f"{seed}:vt:icl"), name_len=3)
        return text + prefix + " ".join(answer)

    _, example, _ = fit_largest(build, lambda t: renderer.count(t) + tokens_to_generate, ICL_LENGTH,
                                low=params.num_hops + 1, what="vt in-context example")
    return example


def size_range(params: VtParams) -> tuple[int, int | None]:
    return params.num_hops + 1, None


def build_vt(params: VtParams, size: int, rng: random.Random, *, seed: int, renderer: PromptRenderer,
             tokens_to_generate: int) -> dict:
    """One vt sample with ``size`` noise lines; ``answers`` are the chain's variable names."""
    example = _icl_example(params, seed, renderer, tokens_to_generate)
    text, prefix, answer = _task_text(params, size, rng, name_len=5)
    return {"input": example + "\n\n" + text, "answer_prefix": prefix, "answers": answer, "depth": None}
