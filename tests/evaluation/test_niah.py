"""Needle in a haystack: placement, length, substring and judge scoring, heatmap."""

from __future__ import annotations

import math

import pytest

from ray_lcb.evaluation.config import NeedleHaystackConfig
from ray_lcb.evaluation.length_fit import LengthTooSmallError
from ray_lcb.evaluation.niah import build_niah_sample, parse_judge_score, substring_score
from ray_lcb.evaluation.plots import plot_niah_heatmap, score_grid

CFG = NeedleHaystackConfig()


def _sample(renderer, length, depth, index=0, max_tokens=CFG.max_tokens):
    return build_niah_sample(renderer, length, depth, needle=CFG.needle, question=CFG.question,
                             key_facts=CFG.key_facts, max_tokens=max_tokens, system_prompt=CFG.system_prompt,
                             index=index)


@pytest.mark.parametrize("length", [1024, 4096])
@pytest.mark.parametrize("depth", [0, 10, 25, 50, 75, 90, 100])
def test_needle_at_depth_on_a_sentence_boundary(renderer, length, depth):
    sample = _sample(renderer, length, depth)
    assert length - 16 <= sample["num_tokens"] <= length
    text = sample["input"]
    needle = CFG.needle.strip()
    assert text.count(needle) == 1
    before = text[:text.index(needle)]
    # Relative token position of the needle inside the haystack, measured on the final text.
    position = 100 * len(renderer.encode(before)) / sample["haystack_tokens"]
    tolerance = 8 if length == 1024 else 4  # moving back to the previous sentence end
    assert depth - tolerance <= position <= depth + 1, (position, depth)
    if 0 < depth < 100:
        assert before.rstrip().endswith((".", '."')), before[-40:]
    if depth == 0:
        assert before.strip() == ""
    if depth == 100:
        assert text.split(needle)[1].strip().startswith(CFG.question)


def test_other_indices_use_other_haystacks(renderer):
    first, second = _sample(renderer, 1024, 50, 0), _sample(renderer, 1024, 50, 1)
    assert first["input"] != second["input"]
    assert _sample(renderer, 1024, 50, 1) == second


def test_length_too_small_for_the_question(renderer):
    with pytest.raises(LengthTooSmallError, match="length 200"):
        _sample(renderer, 200, 50)


def test_substring_score_is_the_share_of_key_facts():
    assert substring_score("Eat a SANDWICH in dolores park.", CFG.key_facts) == 100.0
    assert substring_score("Eat a sandwich.", CFG.key_facts) == 50.0
    assert substring_score("", CFG.key_facts) == 0.0


@pytest.mark.parametrize("reply,score", [
    ("7", 7), (" 10", 10), ("Score: 3", 3), ("**Rating:** 7/10", 7), ("8.0 - mostly right", 8),
    ("I would give it a score of 5.", 5), ("1\n", 1),
])
def test_judge_scores_parse(reply, score):
    assert parse_judge_score(reply) == score


@pytest.mark.parametrize("reply", ["", "The answer is accurate.", "11", "0", "7.5", "Score: 42", "\x00\x01"])
def test_garbage_judge_replies_are_unparsable(reply):
    assert parse_judge_score(reply) is None


def test_heatmap_grid_and_png(tmp_path):
    cells = [{"length": n, "depth": d, "score": s} for n, d, s in
             [(1024, 0, 100.0), (1024, 0, 50.0), (2048, 0, 0.0), (1024, 50, 100.0), (2048, 50, None)]]
    lengths, depths, grid = score_grid(cells)
    assert lengths == [1024, 2048] and depths == [0, 50]
    assert grid.shape == (2, 2)  # [depths, lengths]
    assert grid[0, 0] == 75.0 and grid[0, 1] == 0.0 and grid[1, 0] == 100.0 and math.isnan(grid[1, 1])
    path = plot_niah_heatmap(cells, tmp_path / "heat.png", model_name="tiny")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
