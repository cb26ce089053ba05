"""RULER's scoring rules and aggregates on hand-made predictions."""

from __future__ import annotations

import pytest

from ray_lcb.evaluation.scoring import (effective_length, mean, postprocess_prediction, score_prediction,
                                        string_match_all, string_match_part, task_score, weighted_averages)


def test_string_match_all_is_the_fraction_found():
    refs = ["1234567", "7654321", "1111111", "2222222"]
    assert string_match_all("1234567 and 7654321", refs) == 0.5
    assert string_match_all("none", refs) == 0.0
    assert string_match_all("2222222 1111111 7654321 1234567", refs) == 1.0


def test_string_match_part_is_any_found():
    assert string_match_part("It was Paris, I think", ["Paris", "Lyon"]) == 1.0
    assert string_match_part("It was Rome", ["Paris", "Lyon"]) == 0.0


def test_matching_ignores_case_and_finds_substrings():
    assert score_prediction("THE ANSWER: Dolores PARK!", ["dolores park"], "all") == 1.0
    assert score_prediction("xyzbrave-lionxyz", ["Brave-Lion"], "part") == 1.0
    assert score_prediction("brave lion", ["brave-lion"], "all") == 0.0


def test_control_characters_become_newlines_after_strip():
    assert postprocess_prediction("  \x00abc\tdef\x1f \n") == "abc\ndef"
    # A reference split by a control character is no longer a substring.
    assert score_prediction("123\x004567", ["1234567"], "all") == 0.0
    assert score_prediction("\t 1234567\x07", ["1234567"], "all") == 1.0
    assert postprocess_prediction(" \x01 \x02 ") == ""


def test_unknown_metric_and_empty_references_fail():
    with pytest.raises(ValueError, match="unknown metric"):
        score_prediction("a", ["a"], "exact")
    with pytest.raises(ValueError, match="at least one reference"):
        string_match_all("a", [])


def test_task_score_is_a_rounded_percentage():
    assert task_score([1.0, 0.5, 0.0]) == 50.0
    assert task_score([1.0, 1.0, 0.0]) == 66.67
    with pytest.raises(ValueError):
        task_score([])


def test_aggregates_reproduce_rulers_llama31_8b_row():
    # RULER README, Llama-3.1-8B-Instruct: per-length scores -> Avg 88.3, wAvg 85.4 / 91.3, effective 32K.
    per_length = {4096: 95.5, 8192: 93.8, 16384: 91.6, 32768: 87.4, 65536: 84.7, 131072: 77.0}
    assert mean(per_length.values()) == 88.33
    assert weighted_averages(per_length) == (85.38, 91.29)
    assert effective_length(per_length) == 32768
    assert effective_length({4096: 80.0}) is None
