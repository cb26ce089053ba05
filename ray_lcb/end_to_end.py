"""``ray-lcb run``: index -> synthesize -> train -> evaluate, in one resumable command.

    ray-lcb run --config local --out runs/local

Layout of the run folder: ``data/`` (synthesis output), ``train/`` (stage
checkpoints), ``eval/base``, ``eval/rope_only`` (the base weights with the
final stage's RoPE base: the paper's "adjusted RoPE only" baseline) and
``eval/trained``, and ``summary.json``. Each step is skipped when its output
is complete, and the synthesis and training steps resume their own partial
work, so rerunning the command after a failure continues where it stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from ray_lcb.config import RayLCBConfig


def _done(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def run_end_to_end(cfg: RayLCBConfig, out_dir: str | Path, *, progress: Callable[[str], None] = print) -> dict:
    from ray_lcb.evaluation.serving_generate import evaluate_with_deployment
    from ray_lcb.models import with_rope_theta
    from ray_lcb.runtime import init_ray
    from ray_lcb.synthesis.pipeline import SynthesisInputs, run_synthesis
    from ray_lcb.training import train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    init_ray(cfg.ray)
    timings = {}

    started = time.time()
    report = _done(out / "data" / "report.json")
    requested = report and report["samples"]["requested"]
    if report and requested == {"long_input": cfg.synthesis.num_samples,
                                "long_output": cfg.synthesis.num_long_output_samples} \
            and report["samples"]["total"] >= cfg.synthesis.num_samples:
        progress(f"[synthesize] complete ({report['samples']['total']} samples), skipping")
    else:
        progress("[synthesize] building the index if needed, then synthesizing")
        report = run_synthesis(cfg.synthesis, SynthesisInputs(corpus=cfg.corpus, llm=cfg.llm, index=cfg.index,
                                                              seed=cfg.seed), out / "data", progress=progress)
    timings["synthesize_s"] = round(time.time() - started, 1)

    started = time.time()
    training = _done(out / "train" / "summary.json")
    if training:
        progress(f"[train] complete, skipping (checkpoint {training['final_checkpoint']})")
    else:
        training = train(cfg.training, out / "data" / "data", out / "train", progress=progress)
    timings["train_s"] = round(time.time() - started, 1)

    started = time.time()
    final = training["stages"][-1]
    models = {"base": cfg.llm.model,
              "rope_only": str(with_rope_theta(cfg.llm.model, final["rope_theta"], final["max_position_embeddings"])),
              "trained": training["final_checkpoint"]}
    evaluations = {}
    for name, model in models.items():
        results = _done(out / "eval" / name / "results.json")
        if results:
            progress(f"[evaluate:{name}] complete, skipping")
        else:
            progress(f"[evaluate:{name}] {model}")
            results = evaluate_with_deployment(cfg.evaluation, cfg.llm, model, out / "eval" / name)
        evaluations[name] = {"average": results.get("average"), "per_length": results.get("per_length_average"),
                             "niah_mean": (results.get("niah") or {}).get("mean_score")}
    timings["evaluate_s"] = round(time.time() - started, 1)

    summary = {"run_dir": str(out), "samples": report["samples"], "dropped": report["dropped"]["total"],
               "training": [{k: s.get(k) for k in ("name", "seq_len", "rope_theta", "final_loss", "steps")}
                            for s in training["stages"]],
               "evaluation": evaluations, "timings": timings}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    progress(f"[done] {json.dumps(summary)}")
    return summary
