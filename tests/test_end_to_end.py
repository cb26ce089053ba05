"""`ray-lcb run`: synthesize -> train -> evaluate on the embedded default, then a rerun that skips every step."""

import json
import math
import shutil

from ray_lcb.config import load_config
from ray_lcb.end_to_end import run_end_to_end


def _tiny_run_config(tiny_synthesis: dict):
    overrides = [f"synthesis.{k}={json.dumps(v)}" for k, v in tiny_synthesis.items()]
    overrides += [
        "training.stages=[{seq_len: 2048, steps: 1, learning_rate: 1.0e-5}]", "training.cpus_per_worker=0.5",
        "evaluation.tasks=[niah_single_1, niah]", "evaluation.lengths=[1024]", "evaluation.num_samples=1",
        "evaluation.niah.depths=[0, 100]",
    ]
    return load_config("local", overrides)


def test_run_end_to_end_and_resume(ray_session, synthesized, tiny_synthesis, tmp_path):
    cfg = _tiny_run_config(tiny_synthesis)
    out = tmp_path / "run"
    out.mkdir()
    # The synthesis step resumes into a copy of the session's tiny synthesis output (already complete),
    # so this test spends its time on training and evaluation.
    shutil.copytree(synthesized[0], out / "data")
    lines: list[str] = []
    summary = run_end_to_end(cfg, out, progress=lines.append)

    assert any("[synthesize] complete" in line for line in lines)
    assert summary["samples"]["total"] == synthesized[2]["samples"]["total"]
    (stage,) = summary["training"]
    assert stage["seq_len"] == 2048 and math.isfinite(stage["final_loss"])
    assert set(summary["evaluation"]) == {"base", "rope_only", "trained"}
    for result in summary["evaluation"].values():
        assert 0 <= result["average"] <= 100 and 0 <= result["niah_mean"] <= 100
    for name in ("base", "rope_only", "trained"):
        assert (out / "eval" / name / "niah_heatmap.png").exists()
    assert json.loads((out / "summary.json").read_text()) == summary

    # A rerun finds every step complete and does nothing again.
    rerun_lines: list[str] = []
    again = run_end_to_end(cfg, out, progress=rerun_lines.append)
    assert [line for line in rerun_lines if "skipping" in line] == rerun_lines[:5]
    assert again["evaluation"] == summary["evaluation"] and again["training"] == summary["training"]
