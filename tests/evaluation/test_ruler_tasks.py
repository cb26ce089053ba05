"""RULER sample generation with the real SmolLM2 tokenizer: lengths, answers, determinism."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from ray_lcb.evaluation.length_fit import LengthTooSmallError
from ray_lcb.evaluation.ruler import RULER_TASKS, build_ruler_samples

SAMPLE_KEYS = {"task", "length", "index", "input", "answer_prefix", "answers", "tokens_to_generate", "depth",
               "metric", "num_tokens", "haystack_size"}
# RULER's tokens_to_generate and metric per task (scripts/data/synthetic/constants.py, eval constants).
EXPECTED = {**{t: (128, "all") for t in RULER_TASKS if t.startswith("niah")},
            "vt": (30, "all"), "cwe": (120, "all"), "fwe": (50, "all"), "qa_1": (32, "part"), "qa_2": (32, "part")}
NEEDLE = re.compile(r"One of the special magic (\w+) for (\S+) is: (\S+)\.")


def _samples(task, length, renderer, squad_file, hotpotqa_file, num=2, seed=42):
    return build_ruler_samples(task, length, num, renderer, seed=seed, squad_path=str(squad_file),
                               hotpotqa_path=str(hotpotqa_file))


@pytest.fixture(scope="module")
def generated(renderer, squad_file, hotpotqa_file):
    """Two samples of every task at 1024 and 4096 tokens, built once for the module."""
    return {(task, length): _samples(task, length, renderer, squad_file, hotpotqa_file)
            for task in RULER_TASKS for length in (1024, 4096)}


@pytest.mark.parametrize("length", [1024, 4096])
@pytest.mark.parametrize("task", list(RULER_TASKS))
def test_sample_fits_length_with_chat_template(generated, renderer, task, length):
    for index, sample in enumerate(generated[task, length]):
        assert set(sample) == SAMPLE_KEYS
        assert (sample["task"], sample["length"], sample["index"]) == (task, length, index)
        assert (sample["tokens_to_generate"], sample["metric"]) == EXPECTED[task]
        # Recount independently: chat template + answer prefix + tokens to generate.
        prompt = renderer.tokenizer.apply_chat_template([{"role": "user", "content": sample["input"]}],
                                                        tokenize=False, add_generation_prompt=True)
        assert prompt.startswith("<|im_start|>")
        total = len(renderer.tokenizer(prompt + sample["answer_prefix"], add_special_tokens=False)["input_ids"])
        total += sample["tokens_to_generate"]
        assert total == sample["num_tokens"]
        assert 0.9 * length <= total <= length, (task, length, total)
        assert sample["answers"] and all(isinstance(a, str) and a for a in sample["answers"])


@pytest.mark.parametrize("task", [t for t in RULER_TASKS if t.startswith("niah")])
def test_niah_answers_are_needles_of_the_queried_keys(generated, task):
    spec = RULER_TASKS[task].params
    for sample in generated[task, 4096]:
        text = sample["input"]
        question = text.rsplit("\n", 1)[-1]
        needles = NEEDLE.findall(text)
        # Every answer is the value of a needle whose key the question asks about.
        queried = {key for _, key, value in needles if value in sample["answers"]}
        assert {v for _, k, v in needles if k in queried} == set(sample["answers"])
        assert all(key in question for key in queried)
        assert len(queried) == spec.num_queries
        assert len(sample["answers"]) == spec.num_queries * spec.num_values
        if spec.haystack != "needle":
            assert len(needles) == spec.num_needles  # only the real needles
        else:
            assert len(needles) == sample["haystack_size"] + spec.num_needles  # every line is a needle ...
            assert sum(k in queried for _, k, _ in needles) == spec.num_values  # ... and the key is unique
        single = spec.num_queries * spec.num_values == 1
        assert sample["answer_prefix"].endswith(" is" if single else " are")
        assert text.startswith("A special magic" if single else "Some special magic")
        if spec.value_type == "numbers":
            assert all(re.fullmatch(r"\d{7}", a) for a in sample["answers"])
        if spec.value_type == "uuids":
            assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a)
                       for a in sample["answers"])


def test_noise_haystack_is_the_filler_line(generated):
    lines = generated["niah_single_1", 1024][0]["input"].split("\n")
    filler = [line for line in lines if line.startswith("The grass is green.")]
    assert len(filler) == generated["niah_single_1", 1024][0]["haystack_size"]


@pytest.mark.parametrize("task", ["niah_single_2", "niah_single_3", "niah_multikey_1"])
def test_essay_needle_sits_at_its_depth_on_a_sentence_boundary(generated, task):
    for sample in generated[task, 4096]:
        text = sample["input"]
        context = text[text.index("\n") + 1:text.rindex("\n")]
        value = sample["answers"][0]
        needle_start = next(m.start() for m in NEEDLE.finditer(context) if m.group(3) == value)
        assert needle_start == 0 or context[:needle_start].rstrip()[-1] in ".!?\"')]\u201d\u2019"
        assert abs(100 * needle_start / len(context) - sample["depth"]) < 5, (needle_start, sample["depth"])


def test_vt_chain_is_in_the_text(generated):
    for sample in generated["vt", 4096]:
        text, names = sample["input"], sample["answers"]
        assert len(names) == 5 and all(re.fullmatch(r"[A-Z]{5}", n) for n in names)
        value = re.search(rf"VAR {names[0]} = (\d{{5}})", text).group(1)
        for previous, name in zip(names, names[1:]):
            assert f"VAR {name} = VAR {previous}" in text
        assert text.rstrip().endswith(f"assigned the value {value} in the text above.")
        assert f"5 variables are assigned the value {value}" in sample["answer_prefix"]
        # The in-context example (3-letter names, with its answer) comes first.
        example, task_text = text.split("\n\n", 1)[0], text.split("\n\n")[-1]
        assert re.search(r"VAR [A-Z]{3} = \d{5}", text.split("Question:")[0])
        assert text.count("Memorize and track the chain(s)") == 2
        assert example and task_text


@pytest.mark.parametrize("length,repeats", [(1024, (6, 1)), (4096, (30, 3))])
def test_cwe_common_words_repeat_as_ruler_defines(generated, length, repeats):
    for sample in generated["cwe", length]:
        main_list = sample["input"].rsplit("Below is a numbered list of words.", 1)[1]
        counts = Counter(re.findall(r"\d+\. (\S+)", main_list))
        assert {counts[w] for w in sample["answers"]} == {repeats[0]}
        others = {c for w, c in counts.items() if w not in sample["answers"]}
        assert others == {repeats[1]}
        assert len(sample["answers"]) == 10
        assert sample["input"].count("Below is a numbered list of words.") == 2  # one worked example


def test_fwe_answers_are_ranks_two_to_four(generated):
    for sample in generated["fwe", 4096]:
        context = sample["input"].split("coded words. ", 1)[1].split("\nQuestion:")[0]
        counts = Counter(context.split())
        ranked = [w for w, _ in counts.most_common()]
        assert ranked[0] == "..."
        assert ranked[1:4] == sample["answers"]
        assert counts[ranked[3]] > counts[ranked[4]]
        assert all(re.fullmatch(r"[a-z]{6}", w) for w in sample["answers"])


@pytest.mark.parametrize("task,answer_prefix", [("qa_1", "Zorvaton"), ("qa_2", "Brindlemoor")])
def test_qa_gold_document_and_answer_in_context(generated, task, answer_prefix):
    for index, sample in enumerate(generated[task, 4096]):
        assert sample["answers"][0].startswith(answer_prefix)
        assert sample["answers"][0] in sample["input"]
        assert "Document 1:\n" in sample["input"] and sample["answer_prefix"] == " Answer:"
        assert sample["input"].count("Document ") == sample["haystack_size"]
    # Sample i asks question i (impossible SQuAD questions are dropped).
    assert [s["answers"] for s in generated["qa_1", 4096]] == [["Zorvaton0x0"], ["Zorvaton0x1"]]


def test_deterministic_per_seed_and_distinct_per_index(renderer, squad_file, hotpotqa_file):
    for task in ["niah_multikey_2", "vt", "cwe", "fwe", "qa_1"]:
        first = _samples(task, 1024, renderer, squad_file, hotpotqa_file)
        again = _samples(task, 1024, renderer, squad_file, hotpotqa_file)
        other_seed = _samples(task, 1024, renderer, squad_file, hotpotqa_file, seed=7)
        assert first == again
        assert first[0]["input"] != first[1]["input"]
        assert first[0]["input"] != other_seed[0]["input"]


def test_unknown_task_and_too_short_length(renderer):
    with pytest.raises(ValueError, match="unknown RULER task 'niah_single_9'"):
        build_ruler_samples("niah_single_9", 1024, 1, renderer)
    with pytest.raises(LengthTooSmallError, match=r"'cwe' at length 300.*at least \d+"):
        build_ruler_samples("cwe", 300, 1, renderer)
    assert issubclass(LengthTooSmallError, ValueError)


def test_qa_without_dataset_path_or_with_a_bad_file(renderer, tmp_path):
    with pytest.raises(ValueError, match="no squad_path configured"):
        build_ruler_samples("qa_1", 1024, 1, renderer)
    with pytest.raises(ValueError, match="hotpotqa_path '.*missing.json' does not exist"):
        build_ruler_samples("qa_2", 1024, 1, renderer, hotpotqa_path=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "v2.0", "articles": []}')
    with pytest.raises(ValueError, match="is not SQuAD v2 JSON"):
        build_ruler_samples("qa_1", 1024, 1, renderer, squad_path=str(bad))
