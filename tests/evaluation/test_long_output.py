"""LongBench-Write's length score and the long-output prompts."""

from __future__ import annotations

import pytest

from ray_lcb.evaluation.long_output import (build_long_output_samples, count_words, length_score,
                                            score_long_output)


@pytest.mark.parametrize("required,produced,expected", [
    (1000, 1000, 100.0),
    (1000, 1300, 90.0),      # over: 1 - (1.3 - 1) / 3
    (1000, 2500, 50.0),      # over: 1 - 1.5 / 3
    (1000, 4000, 0.0),       # over by 3x: clipped at 0
    (1000, 9000, 0.0),
    (1000, 800, 87.5),       # under: 1 - (1.25 - 1) / 2
    (1000, 500, 50.0),       # under: 1 - (2 - 1) / 2
    (1000, 250, 0.0),        # under: 1 - 3 / 2 < 0 -> 0
    (1000, 0, 0.0),
    (2000, 2600, 90.0),
])
def test_length_score_matches_longwriter(required, produced, expected):
    assert length_score(required, produced) == pytest.approx(expected)


def test_overshoot_is_penalised_less_than_undershoot():
    assert length_score(1000, 1500) > length_score(1000, 667)


def test_length_score_rejects_zero_requirement():
    with pytest.raises(ValueError, match="required length"):
        length_score(0, 10)


def test_count_words():
    assert count_words("Hello, world! It's a well-known fact: 42 apples.") == 8
    assert count_words("") == 0
    assert count_words("长文本 test") == 4


def test_samples_and_scores():
    samples = build_long_output_samples([1000, 2000], tokens_per_word=2.0)
    assert [s["tokens_to_generate"] for s in samples] == [2000, 4000]
    assert "1000-word" in samples[0]["input"] and "2000-word" in samples[1]["input"]
    result = score_long_output(samples, ["word " * 1300, "word " * 1000])
    assert result["per_length"]["1000"] == {"required_words": 1000, "output_words": 1300, "length_score": 90.0}
    assert result["per_length"]["2000"]["length_score"] == 50.0
    assert result["mean_length_score"] == 70.0
