"""Configuration of the evaluation stage: RULER, needle in a haystack, long output.

``EvaluationConfig`` is composed into the root config by ``ray_lcb.config``
and passed to ``runner.evaluate``. Values are checked at parse time: unknown
task names, non-positive lengths, depths outside 0-100 and dataset paths that
do not exist fail with the field name in the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from ray_lcb.configbase import ComponentConfig
from ray_lcb.evaluation.ruler import RULER_TASKS

NIAH_TASK = "niah"
LONG_OUTPUT_TASK = "long_output"
KNOWN_TASKS = [*RULER_TASKS, NIAH_TASK, LONG_OUTPUT_TASK]
RULER_LENGTHS = [4096, 8192, 16384, 32768, 65536, 131072]


def check_tasks(tasks: list[str], field: str = "tasks") -> list[str]:
    """Validate task names (RULER's 13, ``niah``, ``long_output``); duplicates are an error too."""
    unknown = [t for t in tasks if t not in KNOWN_TASKS]
    if unknown:
        raise ValueError(f"{field}: unknown task(s) {unknown}; choose from {KNOWN_TASKS}")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"{field}: task names repeat in {tasks}")
    if not tasks:
        raise ValueError(f"{field}: name at least one task")
    return list(tasks)


def check_lengths(lengths: list[int], field: str = "lengths") -> list[int]:
    if not lengths:
        raise ValueError(f"{field}: name at least one length")
    if any(n <= 0 for n in lengths):
        raise ValueError(f"{field}: lengths must be positive token counts, got {lengths}")
    return sorted(set(lengths))


class NeedleHaystackConfig(ComponentConfig):
    context_lengths: list[int] = Field(
        default_factory=lambda: list(RULER_LENGTHS),
        description="Context lengths (tokens, prompt plus max_tokens) of the heatmap's columns; "
                    "the runner's `lengths` argument replaces them.")
    depths: list[float] = Field(
        default_factory=lambda: [float(d) for d in range(0, 101, 10)],
        description="Needle depths in percent of the haystack (0 = start, 100 = end): the heatmap's rows.")
    num_samples: int = Field(1, ge=1, description="Samples per (length, depth) cell; index 0 starts the haystack "
                                                  "at the first essay, later ones at random offsets.")
    needle: str = Field(
        "\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n",
        description="The fact hidden in the haystack (gkamradt's default).")
    question: str = Field("What is the best thing to do in San Francisco?",
                          description="The question whose answer is the needle.")
    key_facts: list[str] = Field(
        default_factory=lambda: ["sandwich", "Dolores Park"],
        description="Substrings of a correct answer; substring scoring gives the share found (case-insensitive).")
    scoring: Literal["substring", "judge"] = Field(
        "substring", description="'substring': key facts found in the answer (offline, deterministic); "
                                 "'judge': the evaluated model itself (via the same generate callable) "
                                 "grades the answer 1-10 with gkamradt's rubric.")
    max_tokens: int = Field(300, ge=1, description="Tokens to generate per answer (gkamradt: 300); counted "
                                                   "inside the context length.")
    system_prompt: str | None = Field(
        "You are a helpful AI bot that answers questions for a user. Keep your response short and direct",
        description="System message (gkamradt's); null sends none, for chat templates without a system role.")
    judge_max_tokens: int = Field(16, ge=1, description="Tokens the judge may generate for its score.")

    @field_validator("depths")
    @classmethod
    def _depths_in_range(cls, depths: list[float]) -> list[float]:
        if not depths or any(not 0 <= d <= 100 for d in depths):
            raise ValueError(f"niah.depths must be percentages in [0, 100], got {depths}")
        return sorted(set(depths))

    @field_validator("context_lengths")
    @classmethod
    def _lengths_positive(cls, lengths: list[int]) -> list[int]:
        return check_lengths(lengths, "niah.context_lengths")

    @field_validator("key_facts")
    @classmethod
    def _facts_nonempty(cls, facts: list[str]) -> list[str]:
        if not facts or any(not f.strip() for f in facts):
            raise ValueError("niah.key_facts needs at least one non-empty substring of the needle's answer")
        return facts


class LongOutputConfig(ComponentConfig):
    target_words: list[int] = Field(default_factory=lambda: [1000, 2000, 4000, 8000],
                                    description="Requested output lengths in words, one prompt each.")
    tokens_per_word: float = Field(2.0, gt=0, description="max_tokens = words x this; English runs ~1.3-1.5 "
                                                          "tokens per word, so 2.0 leaves room to overshoot.")

    @field_validator("target_words")
    @classmethod
    def _positive(cls, words: list[int]) -> list[int]:
        if not words or any(w <= 0 for w in words) or len(set(words)) != len(words):
            raise ValueError(f"long_output.target_words must be distinct positive word counts, got {words}")
        return words


class EvaluationConfig(ComponentConfig):
    tasks: list[str] = Field(
        default_factory=lambda: [*RULER_TASKS, NIAH_TASK],
        description=f"What to run: any of RULER's 13 tasks, '{NIAH_TASK}' (the heatmap grid) and "
                    f"'{LONG_OUTPUT_TASK}' (the 1k-8k word generation check).")
    lengths: list[int] = Field(default_factory=lambda: list(RULER_LENGTHS),
                               description="RULER sequence lengths in tokens, prompt plus generated tokens.")
    num_samples: int = Field(500, ge=1, description="Samples per RULER task and length (RULER: 500).")
    seed: int = Field(42, description="Seed of every random choice in sample generation (RULER: 42).")
    prompt_format: Literal["chat_template", "raw", "llama3"] = Field(
        "chat_template", description="How prompts are rendered: the model's own chat template; 'raw' task text "
                                     "(base models); or 'llama3', RULER's meta-llama3 template without the system "
                                     "header that HF's Llama-3.1 template adds (for comparing with RULER's table).")
    squad_path: str | None = Field(None, description="Local SQuAD v2 dev JSON (dev-v2.0.json) for qa_1; "
                                                     "unset skips qa_1.")
    hotpotqa_path: str | None = Field(None, description="Local HotpotQA dev distractor JSON "
                                                        "(hotpot_dev_distractor_v1.json) for qa_2; unset skips qa_2.")
    niah: NeedleHaystackConfig = Field(default_factory=NeedleHaystackConfig,
                                       description="Needle-in-a-haystack grid and scoring.")
    long_output: LongOutputConfig = Field(default_factory=LongOutputConfig,
                                          description="Long-output length-adherence check.")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        return check_tasks(tasks)

    @field_validator("lengths")
    @classmethod
    def _positive_lengths(cls, lengths: list[int]) -> list[int]:
        return check_lengths(lengths)

    @field_validator("squad_path", "hotpotqa_path")
    @classmethod
    def _file_exists(cls, path: str | None, info) -> str | None:
        if path is not None and not Path(path).expanduser().is_file():
            raise ValueError(f"{info.field_name} '{path}' does not exist; point it at the dataset's JSON file "
                             "or leave it unset to skip that QA task")
        return str(Path(path).expanduser()) if path is not None else None
