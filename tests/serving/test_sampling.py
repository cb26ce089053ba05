"""The engine's token sampling: right frequencies, nothing outside top-p, reproducible per seed."""

import pytest
import torch

from ray_lcb.serving.engines.sampling import draw, sample
from ray_lcb.serving.protocol import SamplingParams


def _generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def test_draws_follow_the_probabilities_and_never_pick_an_impossible_entry():
    probs = torch.tensor([0.0, 0.1, 0.0, 0.6, 0.3, 0.0])
    generator, trials = _generator(0), 20_000
    counts = torch.bincount(torch.tensor([draw(probs, generator) for _ in range(trials)]), minlength=6)
    assert counts[[0, 2, 5]].sum() == 0
    expected = probs * trials
    spread = (expected * (1 - probs)).sqrt()  # binomial standard deviation
    assert ((counts - expected).abs() <= 5 * spread + 1e-9).all(), counts


def test_top_p_keeps_only_the_smallest_set_reaching_p_and_a_seed_repeats_its_tokens():
    logits = torch.tensor([3.0, 2.9, 0.0, -1.0, 1.0])  # softmax: 0.45, 0.41, 0.02, 0.01, 0.11
    params = SamplingParams(temperature=1.0, top_p=0.8, seed=3)
    tokens = [sample(logits, params, _generator(seed)) for seed in range(400)]
    assert set(tokens) == {0, 1}
    assert [sample(logits, params, _generator(7)) for _ in range(5)] == [sample(logits, params, _generator(7))] * 5
    assert sample(logits, SamplingParams(temperature=0), None) == 0  # greedy


@pytest.mark.parametrize("probs", [torch.tensor([float("nan"), 0.5]), torch.zeros(3)])
def test_probabilities_that_cannot_be_sampled_raise(probs):
    with pytest.raises(ValueError, match="cannot sample"):
        draw(probs, _generator(0))
