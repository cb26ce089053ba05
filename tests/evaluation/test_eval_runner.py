"""The evaluation runner: files, scores, failures, skips, bad input; one end-to-end run with SmolLM2."""

from __future__ import annotations

import json

import pytest

from ray_lcb.evaluation import EvaluationConfig, RULER_TASKS, evaluate, read_model_info
from ray_lcb.evaluation.length_fit import PromptRenderer

SMOLLM2 = "bundled:smollm2-135m-instruct"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class EchoGenerate:
    """Replies with the prompt itself, so every answer contained in the prompt is found.

    ``fail`` ids get an error, ``drop`` ids get no response at all; judge
    requests get the reply scripted for their id in ``judge_replies``.
    """

    def __init__(self, fail=(), drop=(), judge_replies=None):
        self.fail, self.drop, self.judge_replies = set(fail), set(drop), dict(judge_replies or {})
        self.requests: list[dict] = []

    def __call__(self, requests):
        self.requests.extend(requests)
        out = []
        for r in reversed(requests):  # order must not matter
            if r["id"] in self.drop:
                continue
            if r["id"] in self.fail:
                out.append({"id": r["id"], "text": None, "error": "replica died"})
            elif r["id"].endswith("/judge"):
                out.append({"id": r["id"], "text": self.judge_replies[r["id"]], "error": None})
            else:
                out.append({"id": r["id"], "text": r["prompt"], "error": None})
        return out


def _config(squad_file=None, hotpotqa_file=None, **overrides):
    base = dict(lengths=[1024], num_samples=2,
                niah={"context_lengths": [1024, 2048], "depths": [0, 50, 100], "max_tokens": 32},
                long_output={"target_words": [50, 100]},
                squad_path=str(squad_file) if squad_file else None,
                hotpotqa_path=str(hotpotqa_file) if hotpotqa_file else None)
    base.update(overrides)
    return EvaluationConfig(**base)


def test_all_tasks_files_scores_and_failures(tmp_path, tokenizer, squad_file, hotpotqa_file):
    tasks = [*RULER_TASKS, "niah", "long_output"]
    generate = EchoGenerate(fail={"vt/1024/1"}, drop={"cwe/1024/0"})
    results = evaluate(_config(squad_file, hotpotqa_file, tasks=tasks), generate, tmp_path, model_ref=SMOLLM2,
                       tokenizer=tokenizer)

    # Echoed prompts contain every answer: 100, except the failed and the missing generation.
    expected = {t: 100.0 for t in RULER_TASKS} | {"vt": 50.0, "cwe": 50.0}
    assert {t: v["1024"] for t, v in results["scores"].items()} == expected
    assert results["errors"]["vt"]["1024"] == 1 and results["errors"]["cwe"]["1024"] == 1
    assert results["nulls"]["vt"]["1024"] == 1 and results["nulls"]["niah_single_1"]["1024"] == 0
    assert results["per_length_average"] == {"1024": round(sum(expected.values()) / 13, 2)}
    assert results["average"] == results["per_length_average"]["1024"]
    assert results["skipped"] == {} and results["warnings"] == []
    assert results["model_ref"] == SMOLLM2 and results["rope_theta"] == 100000.0
    assert results["niah"]["mean_score"] == 100.0 and results["niah"]["grid"] == [[100.0, 100.0]] * 3
    assert set(results["long_output"]["per_length"]) == {"50", "100"}

    # Every request is the chat-templated prompt plus answer prefix, within its length.
    renderer = PromptRenderer(tokenizer)
    samples = {}
    for task in RULER_TASKS:
        rows = [json.loads(line) for line in (tmp_path / "samples" / f"{task}_1024.jsonl").read_text().splitlines()]
        assert len(rows) == 2
        samples.update({f"{task}/1024/{r['index']}": r for r in rows})
    for request in generate.requests:
        if request["id"] in samples:
            sample = samples[request["id"]]
            assert request["prompt"] == renderer.render(sample["input"], sample["answer_prefix"])
            assert request["max_tokens"] == sample["tokens_to_generate"]
            assert renderer.count(request["prompt"]) + request["max_tokens"] <= 1024
    assert len([r for r in generate.requests if r["id"].startswith("niah/")]) == 6

    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 13 * 2 + 6 + 2
    failed = {p["id"]: p for p in predictions if p["error"]}
    assert set(failed) == {"vt/1024/1", "cwe/1024/0"}
    assert all(p["score"] == 0.0 for p in failed.values())
    assert json.loads((tmp_path / "results.json").read_text()) == results
    markdown = (tmp_path / "results.md").read_text()
    assert "| niah_single_1 | 100.00 |" in markdown and "| vt | 50.00 (1 null) |" in markdown
    assert (tmp_path / "niah_heatmap.png").read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == sorted(
        [f"{t}_1024.jsonl" for t in RULER_TASKS] + ["niah_1024.jsonl", "niah_2048.jsonl", "long_output.jsonl"])


def test_missing_qa_paths_are_recorded_skips(tmp_path, tokenizer):
    generate = EchoGenerate()
    results = evaluate(_config(tasks=["niah_single_1", "qa_1", "qa_2"]), generate, tmp_path, model_ref=SMOLLM2,
                       tokenizer=tokenizer)
    assert set(results["skipped"]) == {"qa_1", "qa_2"}
    assert "no squad_path configured" in results["skipped"]["qa_1"]
    assert "no hotpotqa_path configured" in results["skipped"]["qa_2"]
    assert list(results["scores"]) == ["niah_single_1"]
    assert results["per_length_average"] == {"1024": 100.0}
    assert not any(r["id"].startswith("qa_") for r in generate.requests)
    assert "## Skipped" in (tmp_path / "results.md").read_text()
    assert not (tmp_path / "niah_heatmap.png").exists()  # 'niah' was not asked for


def test_judge_scoring_counts_unparsable_replies(tmp_path, tokenizer):
    config = _config(tasks=["niah"], niah={"context_lengths": [1024], "depths": [0, 50, 100], "max_tokens": 32,
                                           "scoring": "judge"})
    generate = EchoGenerate(fail={"niah/1024/50/0"}, judge_replies={"niah/1024/0/0/judge": "Score: 8",
                                                                    "niah/1024/100/0/judge": "the answer is good"})
    results = evaluate(config, generate, tmp_path, model_ref=SMOLLM2, tokenizer=tokenizer)
    niah = results["niah"]
    # Depth 0 judged 8 -> 80; depth 50 failed -> 0; depth 100 unparsable -> no score.
    assert [c["score"] for c in niah["cells"]] == [80.0, 0.0, None]
    assert niah["errors"] == 1 and niah["judge_unparsable"] == 1 and niah["mean_score"] == 40.0
    judge_requests = [r for r in generate.requests if r["id"].endswith("/judge")]
    assert len(judge_requests) == 2  # the failed answer is not judged
    assert "[Reference answer]" in judge_requests[0]["prompt"] and judge_requests[0]["prompt"].endswith("Score:")
    assert (tmp_path / "niah_heatmap.png").read_bytes()[:8] == PNG_MAGIC


def test_bad_input_fails_before_generation(tmp_path, tokenizer):
    generate = EchoGenerate()
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['ruler_all'\]"):
        evaluate(_config(), generate, tmp_path, model_ref=SMOLLM2, tasks=["ruler_all"], tokenizer=tokenizer)
    with pytest.raises(ValueError, match="'cwe' at length 300"):
        evaluate(_config(tasks=["niah_single_1", "cwe"]), generate, tmp_path, model_ref=SMOLLM2, lengths=[300, 1024],
                 tokenizer=tokenizer)
    with pytest.raises(ValueError, match="needle-in-a-haystack at length 100"):
        evaluate(_config(tasks=["niah"]), generate, tmp_path, model_ref=SMOLLM2, lengths=[100], tokenizer=tokenizer)
    with pytest.raises(ValueError, match="lengths must be positive"):
        evaluate(_config(), generate, tmp_path, model_ref=SMOLLM2, lengths=[0], tokenizer=tokenizer)
    assert generate.requests == []
    with pytest.raises(ValueError, match="squad_path '.*nope.json' does not exist"):
        _config(squad_path=str(tmp_path / "nope.json"))
    with pytest.raises(ValueError, match="niah.depths"):
        _config(niah={"depths": [120]})
    with pytest.raises(ValueError, match="Extra inputs"):
        _config(num_sample=3)


def test_checkpoint_rope_settings_and_long_length_warning(tmp_path, tokenizer, smollm2_path):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    config = json.loads((smollm2_path / "config.json").read_text())
    config.pop("rope_parameters", None)
    config.update(rope_theta=400000.0, max_position_embeddings=1024)  # a transformers v4-style checkpoint
    (checkpoint / "config.json").write_text(json.dumps(config))
    info = read_model_info(str(checkpoint))
    assert info["rope_theta"] == 400000.0 and info["max_position_embeddings"] == 1024
    assert read_model_info(SMOLLM2)["rope_theta"] == 100000.0  # v5-style rope_parameters

    results = evaluate(_config(tasks=["niah_single_1"], num_samples=1), EchoGenerate(), tmp_path / "out",
                       model_ref=str(checkpoint), lengths=[1024, 2048], tokenizer=tokenizer)
    assert results["rope_theta"] == 400000.0
    assert results["scores"]["niah_single_1"] == {"1024": 100.0, "2048": 100.0}
    assert len(results["warnings"]) == 1 and "[2048] exceed" in results["warnings"][0]


@pytest.mark.slow
def test_end_to_end_with_smollm2(tmp_path, hf_generate, hotpotqa_file):
    """The real model, greedy: four RULER tasks at 1K, a 2x2 needle grid at 1K-1.5K, one long output."""
    tasks = ["niah_single_1", "vt", "cwe", "qa_2", "niah", "long_output"]
    config = _config(None, hotpotqa_file, tasks=tasks, num_samples=1,
                     niah={"context_lengths": [1024, 1536], "depths": [0, 50], "max_tokens": 32},
                     long_output={"target_words": [30]})
    results = evaluate(config, hf_generate, tmp_path, model_ref=SMOLLM2, tokenizer=hf_generate.tokenizer)

    scores = [v["1024"] for v in results["scores"].values()]
    assert len(scores) == 4 and all(0.0 <= s <= 100.0 for s in scores)
    assert 0.0 <= results["average"] <= 100.0
    assert sum(e["1024"] for e in results["errors"].values()) == 0
    # Repeating the needle sentence is easy for the model when the prompt is rendered right.
    assert results["niah"]["mean_score"] >= 50.0
    assert results["long_output"]["per_length"]["30"]["output_words"] > 0
    for name in ["results.json", "results.md", "predictions.jsonl", "niah_heatmap.png"]:
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "niah_heatmap.png").read_bytes()[:8] == PNG_MAGIC
    for request in hf_generate.requests:
        assert len(hf_generate.tokenizer(request["prompt"], add_special_tokens=False)["input_ids"]) \
            + request["max_tokens"] <= 1536
