"""Next-token choice for one row: greedy, or temperature + top-p from the row's own generator.

Each sampled request draws from its own ``torch.Generator`` (seeded from the
request's seed), so a seeded request gives the same text whatever other rows
share its batch -- a shared global RNG would make it depend on them.
"""

from __future__ import annotations

import math

import torch

from ray_lcb.serving.protocol import SamplingParams


def row_generator(params: SamplingParams, device: torch.device) -> torch.Generator | None:
    """The request's RNG: seeded when it names a seed, fresh entropy otherwise; None for greedy."""
    if params.greedy:
        return None
    generator = torch.Generator(device=device)
    if params.seed is None:
        generator.seed()
    else:
        generator.manual_seed(params.seed)
    return generator


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """One token id from ``logits`` ([vocab]) under ``params``."""
    if params.greedy:
        return int(logits.argmax())
    logits = logits.float() / params.temperature
    if params.top_p < 1:
        ordered, order = logits.sort(descending=True)
        probs = ordered.softmax(-1)
        # Keep the smallest prefix of tokens whose mass reaches top_p (the top token always stays).
        drop = probs.cumsum(-1) - probs >= params.top_p
        logits[order[drop]] = float("-inf")
    return draw(logits.softmax(-1), generator)


def draw(probs: torch.Tensor, generator: torch.Generator) -> int:
    """An index drawn with probability ``probs`` ([vocab], summing to 1), from one uniform number.

    Inverse CDF: 0.07 ms for SmolLM2's 49k-token vocabulary on CPU, against 0.84 ms for
    ``torch.multinomial``, which draws an exponential number per entry -- as much as the
    rest of a sampled row's share of a decode step (measured).
    """
    cdf = probs.double().cumsum(0)
    total = float(cdf[-1])
    if not math.isfinite(total) or total <= 0:
        raise ValueError(f"cannot sample: the probabilities sum to {total}")
    uniform = torch.rand((), dtype=torch.float64, generator=generator, device=probs.device)
    index = int(torch.searchsorted(cdf, uniform * total, right=True))
    # The first entry whose cumulative mass passes the draw has mass of its own, so an entry
    # cut by top-p is never drawn; only a draw rounded up to the total lands past the end.
    return index if index < len(cdf) else int(probs.nonzero().max())
