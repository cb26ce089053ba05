"""The 13 RULER tasks: their definitions, and sample generation fitted to a length.

``build_ruler_samples`` is what the runner calls: for each sample index it
binary-searches the haystack size (``length_fit.fit_largest``) so that the
prompt, rendered with the evaluated model's chat template plus the answer
prefix, plus the task's ``tokens_to_generate``, is at most ``length`` tokens
and as close to it as the haystack's granularity allows. Each family of tasks
lives in its own module (``ruler_niah``, ``ruler_vt``, ``ruler_cwe``,
``ruler_fwe``, ``ruler_qa``); task parameters and generation lengths follow
NVIDIA/RULER's ``scripts/synthetic.yaml`` and ``constants.py``.

A sample is a dict::

    {"task", "length", "index", "input", "answer_prefix", "answers",
     "tokens_to_generate", "depth", "metric", "num_tokens", "haystack_size"}

``input`` is the user message without the chat template; ``num_tokens`` is the
counted prompt tokens plus ``tokens_to_generate``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from ray_lcb.evaluation import ruler_cwe, ruler_fwe, ruler_niah, ruler_qa, ruler_vt
from ray_lcb.evaluation.length_fit import PromptRenderer, fit_largest
from ray_lcb.evaluation.ruler_niah import NiahParams
from ray_lcb.evaluation.scoring import Metric


@dataclass(frozen=True)
class RulerTask:
    name: str
    family: Literal["niah", "vt", "cwe", "fwe", "qa"]
    params: object
    tokens_to_generate: int
    metric: Metric


def _niah(name: str, haystack: str, key: str, value: str, k: int = 1, v: int = 1, q: int = 1) -> RulerTask:
    return RulerTask(name, "niah", NiahParams(haystack, key, value, k, v, q), 128, "all")


# The order of scripts/config_tasks.sh.
RULER_TASKS: dict[str, RulerTask] = {t.name: t for t in [
    _niah("niah_single_1", "noise", "words", "numbers"),
    _niah("niah_single_2", "essay", "words", "numbers"),
    _niah("niah_single_3", "essay", "words", "uuids"),
    _niah("niah_multikey_1", "essay", "words", "numbers", k=4),
    _niah("niah_multikey_2", "needle", "words", "numbers"),
    _niah("niah_multikey_3", "needle", "uuids", "uuids"),
    _niah("niah_multivalue", "essay", "words", "numbers", v=4),
    _niah("niah_multiquery", "essay", "words", "numbers", q=4),
    RulerTask("vt", "vt", ruler_vt.VtParams(num_chains=1, num_hops=4), 30, "all"),
    RulerTask("cwe", "cwe", ruler_cwe.CweParams(freq_cw=30, freq_ucw=3, num_cw=10), 120, "all"),
    RulerTask("fwe", "fwe", ruler_fwe.FweParams(alpha=2.0), 50, "all"),
    RulerTask("qa_1", "qa", "squad", 32, "part"),
    RulerTask("qa_2", "qa", "hotpotqa", 32, "part"),
]}
QA_PATH_FIELDS = {"qa_1": "squad_path", "qa_2": "hotpotqa_path"}


def get_task(name: str) -> RulerTask:
    if name not in RULER_TASKS:
        raise ValueError(f"unknown RULER task '{name}'; choose from {list(RULER_TASKS)}")
    return RULER_TASKS[name]


def missing_qa_data(name: str, squad_path: str | None, hotpotqa_path: str | None) -> str | None:
    """Why a QA task cannot run (its dataset path is not configured), or None if it can."""
    field = QA_PATH_FIELDS.get(name)
    if field is None:
        return None
    path = squad_path if field == "squad_path" else hotpotqa_path
    if path:
        return None
    dataset = "SQuAD v2 dev (dev-v2.0.json)" if field == "squad_path" else \
        "HotpotQA dev, distractor setting (hotpot_dev_distractor_v1.json)"
    return f"no {field} configured: set {field} to a local copy of {dataset} to run {name}"


def build_ruler_samples(task: str, length: int, num_samples: int, renderer: PromptRenderer, *, seed: int = 42,
                        squad_path: str | None = None, hotpotqa_path: str | None = None) -> list[dict]:
    """``num_samples`` samples of ``task`` fitted to ``length`` tokens (see the module docstring).

    Samples are deterministic in ``(seed, task, length, index)``.

    Raises:
        ValueError: unknown task, a QA task without its dataset path, or a
            length too small for the task (the message gives the minimum).
    """
    spec = get_task(task)
    dataset = None
    if spec.family == "qa":
        reason = missing_qa_data(task, squad_path, hotpotqa_path)
        if reason:
            raise ValueError(reason)
        dataset = ruler_qa.load_squad(str(squad_path)) if spec.params == "squad" else \
            ruler_qa.load_hotpotqa(str(hotpotqa_path))
    samples, hint = [], None
    for index in range(num_samples):
        low, high, core = _family_builder(spec, length, index, seed, renderer, dataset)

        def build(size: int, index: int = index, core=core) -> dict:
            # A fresh generator per call: every size draws the same keys and values.
            rng = random.Random(f"{seed}:{task}:{length}:{index}")
            fields = core(size, rng)
            return {"task": task, "length": length, "index": index, "input": fields["input"],
                    "answer_prefix": fields["answer_prefix"], "answers": fields["answers"],
                    "tokens_to_generate": spec.tokens_to_generate, "depth": fields["depth"],
                    "metric": spec.metric}

        size, sample, total = fit_largest(build, renderer.sample_tokens, length, low=low, high=high, hint=hint,
                                          what=f"RULER task '{task}' at length {length}")
        sample["num_tokens"] = total
        sample["haystack_size"] = size
        samples.append(sample)
        hint = size  # the next sample's size is close: start the search there
    return samples


def _family_builder(spec: RulerTask, length: int, index: int, seed: int, renderer: PromptRenderer,
                    dataset: ruler_qa.QaDataset | None):
    """(smallest size, largest size or None, ``core(size, rng) -> fields``) for one sample of ``spec``."""
    gen = spec.tokens_to_generate
    if spec.family == "niah":
        low, high = ruler_niah.size_range(spec.params)
        return low, high, lambda size, rng: ruler_niah.build_niah(spec.params, size, rng)
    if spec.family == "vt":
        low, high = ruler_vt.size_range(spec.params)
        return low, high, lambda size, rng: ruler_vt.build_vt(spec.params, size, rng, seed=seed, renderer=renderer,
                                                               tokens_to_generate=gen)
    if spec.family == "cwe":
        low, high = ruler_cwe.size_range(spec.params)
        return low, high, lambda size, rng: ruler_cwe.build_cwe(spec.params, size, rng, length=length)
    if spec.family == "fwe":
        low, high = ruler_fwe.size_range(spec.params)
        return low, high, lambda size, rng: ruler_fwe.build_fwe(spec.params, size, rng, length=length,
                                                                 tokens_to_generate=gen)
    assert spec.family == "qa" and dataset is not None, spec
    low, high = ruler_qa.size_range(dataset, index)
    return low, high, lambda size, rng: ruler_qa.build_qa(dataset, size, rng, index=index)
