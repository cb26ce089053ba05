"""Evaluation: RULER's 13 tasks, needle in a haystack, long-output length adherence."""

from ray_lcb.evaluation.config import EvaluationConfig, LongOutputConfig, NeedleHaystackConfig
from ray_lcb.evaluation.length_fit import LengthTooSmallError, PromptRenderer
from ray_lcb.evaluation.long_output import count_words, length_score
from ray_lcb.evaluation.ruler import RULER_TASKS, build_ruler_samples
from ray_lcb.evaluation.runner import GenerateFn, evaluate, read_model_info
from ray_lcb.evaluation.scoring import score_prediction, string_match_all, string_match_part

__all__ = [
    "EvaluationConfig", "GenerateFn", "LengthTooSmallError", "LongOutputConfig", "NeedleHaystackConfig",
    "PromptRenderer", "RULER_TASKS", "build_ruler_samples", "count_words", "evaluate", "length_score",
    "read_model_info", "score_prediction", "string_match_all", "string_match_part",
]
