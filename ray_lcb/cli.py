"""The ``ray-lcb`` command line.

    ray-lcb serve --config local --smoke          # deploy the LLM, ask a few questions
    ray-lcb serve --config local                  # OpenAI endpoint on 127.0.0.1:8000
    ray-lcb index --config local --out INDEX_DIR
    ray-lcb search --index INDEX_DIR --top-k 3 "query" ...
    ray-lcb synthesize --config local --out DATA_DIR
    ray-lcb train --config local --data DATA_DIR --out RUN_DIR
    ray-lcb evaluate --config local --out EVAL_DIR
    ray-lcb run --config local --out RUN_DIR

Every command takes ``--config PRESET_OR_FILE`` and repeated
``--set section.field=value``; commands that read a corpus take ``--corpus``.
Config errors exit with code 2 before Ray starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from ray_lcb.config import ConfigError, RayLCBConfig, load_config, preset_names
from ray_lcb.corpus import CorpusError
from ray_lcb.models import ModelNotFoundError

EXIT_CONFIG_ERROR = 2


def _add_config_args(parser: argparse.ArgumentParser, *, corpus: bool = False) -> None:
    parser.add_argument("--config", default="local", help=f"preset ({', '.join(preset_names())}) or YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set llm.max_batch_size=16 (repeatable)")
    if corpus:
        parser.add_argument("--corpus", help="corpus file, folder, offline:paul-graham or hf:// URI (overrides corpus.source)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ray-lcb", description="Bootstrap long-context LLMs on Ray.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the shared LLM deployment (OpenAI endpoint on localhost)")
    _add_config_args(serve)
    serve.add_argument("--model", help="model reference or checkpoint folder (overrides llm.model)")
    serve.add_argument("--smoke", action="store_true", help="send a few prompts, print the answers and exit")

    index = commands.add_parser("index", help="embed the corpus and build a FAISS index folder")
    _add_config_args(index, corpus=True)
    index.add_argument("--out", required=True, help="index folder to write")
    index.add_argument("--overwrite", action="store_true", help="replace an existing index folder")

    search = commands.add_parser("search", help="query an index folder; one JSON line per query")
    search.add_argument("--index", required=True, help="index folder written by `ray-lcb index`")
    search.add_argument("--top-k", type=int, default=5)
    search.add_argument("queries", nargs="+")

    synthesize = commands.add_parser("synthesize", help="make long-context training samples (resumable)")
    _add_config_args(synthesize, corpus=True)
    synthesize.add_argument("--num-samples", type=int, help="long-input samples to make (overrides synthesis.num_samples)")
    synthesize.add_argument("--out", required=True, help="output folder (rerun with the same folder to resume)")

    train = commands.add_parser("train", help="progressive sequence-parallel training on Ray Train (resumable)")
    _add_config_args(train)
    train.add_argument("--data", required=True, help="synthesis output folder (or any folder of chat Parquet)")
    train.add_argument("--out", required=True, help="run folder (rerun with the same folder to resume)")

    run = commands.add_parser("run", help="index -> synthesize -> train -> evaluate, each skipped when complete")
    _add_config_args(run, corpus=True)
    run.add_argument("--out", required=True, help="run folder (rerun with the same folder to resume)")

    evaluate = commands.add_parser("evaluate", help="RULER + needle-in-a-haystack through the serving layer")
    _add_config_args(evaluate)
    evaluate.add_argument("--model", help="model reference or checkpoint folder (default: llm.model)")
    evaluate.add_argument("--tasks", help="comma-separated tasks (RULER names, 'niah', 'long_output')")
    evaluate.add_argument("--lengths", help="comma-separated context lengths in tokens, e.g. 1024,4096")
    evaluate.add_argument("--rope-theta", type=float,
                          help="evaluate the model with only its RoPE base changed (the 'adjusted RoPE' baseline)")
    evaluate.add_argument("--out", required=True, help="output folder")
    return parser


def _csv(value: str | None, cast=str) -> list | None:
    return None if not value else [cast(v.strip()) for v in value.split(",") if v.strip()]


def resolve_config(args: argparse.Namespace) -> RayLCBConfig:
    if args.command == "search":
        return load_config("local")
    overrides = list(args.overrides)
    if getattr(args, "num_samples", None) is not None:
        overrides.append(f"synthesis.num_samples={args.num_samples}")
    if getattr(args, "corpus", None):
        overrides.append(f"corpus.source={json.dumps(args.corpus)}")
    if getattr(args, "model", None):
        overrides.append(f"llm.model={json.dumps(args.model)}")
    return load_config(args.config, overrides)


SMOKE_PROMPTS = ["What is the capital of France?", "Give one tip for writing clear code.",
                 "Explain in one sentence what a context window is."]


def cmd_serve(cfg: RayLCBConfig, args: argparse.Namespace) -> int:
    from ray_lcb.runtime import init_ray
    from ray_lcb.serving.client import LLMClient
    from ray_lcb.serving.launch import start_llm_service

    init_ray(cfg.ray)
    start_llm_service(cfg.llm, http=not args.smoke)
    if args.smoke:
        client = LLMClient(cfg.llm)

        async def ask_all():
            return await asyncio.gather(*[client.chat([{"role": "user", "content": p}], max_tokens=48)
                                          for p in SMOKE_PROMPTS])

        for prompt, reply in zip(SMOKE_PROMPTS, asyncio.run(ask_all())):
            print(json.dumps({"prompt": prompt, "answer": reply.text, "tokens": reply.completion_tokens}))
        return 0
    print(f"OpenAI-compatible endpoint: http://{cfg.llm.host}:{cfg.llm.port}/v1/chat/completions "
          f"(model {cfg.llm.model}); Ctrl-C to stop", flush=True)
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


def cmd_index(cfg: RayLCBConfig, args: argparse.Namespace) -> int:
    from ray_lcb.corpus import read_corpus
    from ray_lcb.retrieval import build_index
    from ray_lcb.runtime import init_ray
    from ray_lcb.synthesis.pipeline import prepare_cached_corpus

    prepared = prepare_cached_corpus(cfg.corpus)
    print(json.dumps({"corpus": prepared.report.as_dict()}))
    init_ray(cfg.ray)
    manifest = build_index(read_corpus(prepared), cfg.index, args.out, overwrite=args.overwrite)
    print(json.dumps({"index": str(args.out), "num_vectors": manifest.num_vectors, "dim": manifest.dim,
                      "index_type": manifest.index_type}))
    return 0


def cmd_search(cfg: RayLCBConfig, args: argparse.Namespace) -> int:
    from ray_lcb.retrieval import search

    if args.top_k < 1:
        print("ray-lcb: --top-k must be >= 1", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    for result in search(args.index, args.queries, args.top_k):
        print(json.dumps(result))
    return 0


def cmd_synthesize(cfg: RayLCBConfig, args: argparse.Namespace) -> int:
    from ray_lcb.runtime import init_ray
    from ray_lcb.synthesis.pipeline import SynthesisInputs, prepare_cached_corpus, run_synthesis

    prepare_cached_corpus(cfg.corpus)  # an unreadable corpus fails here, before Ray starts (cached for the job)
    init_ray(cfg.ray)
    report = run_synthesis(cfg.synthesis, SynthesisInputs(corpus=cfg.corpus, llm=cfg.llm, index=cfg.index,
                                                          seed=cfg.seed), args.out)
    print(json.dumps({"samples": report["samples"], "dropped": report["dropped"],
                      "this_run": report["this_run"]}, indent=2))
    return 0


def training_data_dir(path: str) -> Path:
    """A synthesis output folder keeps its samples in ``data/``; other folders are used as given."""
    folder = Path(path)
    return folder / "data" if (folder / "data").is_dir() else folder


def cmd_train(cfg: RayLCBConfig, args: argparse.Namespace) -> int:
    from ray_lcb.runtime import init_ray
    from ray_lcb.training import train
    from ray_lcb.training.loop import check_data_dir

    if cfg.training is None:
        print(f"ray-lcb: config '{args.config}' has no training section", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    data = training_data_dir(args.data)
    try:
        check_data_dir(data)
    except ValueError as err:
        print(f"ray-lcb: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    init_ray(cfg.ray)
    summary = train(cfg.training, data, args.out)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_run(cfg: RayLCBConfig, args: argparse.Namespace) -> int:
    from ray_lcb.end_to_end import run_end_to_end

    if cfg.training is None:
        print(f"ray-lcb: config '{args.config}' has no training section", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    summary = run_end_to_end(cfg, args.out)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_evaluate(cfg: RayLCBConfig, args: argparse.Namespace) -> int:
    from ray_lcb.evaluation.serving_generate import evaluate_with_deployment
    from ray_lcb.models import with_rope_theta
    from ray_lcb.runtime import init_ray

    try:
        tasks, lengths = _csv(args.tasks), _csv(args.lengths, int)
    except ValueError:
        print(f"ray-lcb: --lengths must be integers, got {args.lengths!r}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    model = cfg.llm.model
    if args.rope_theta:
        model = str(with_rope_theta(model, args.rope_theta, max(lengths or cfg.evaluation.lengths)))
    init_ray(cfg.ray)
    results = evaluate_with_deployment(cfg.evaluation, cfg.llm, model, args.out, tasks=tasks, lengths=lengths)
    print(json.dumps({k: results[k] for k in ("model", "average", "per_length_average", "niah") if k in results},
                     indent=2, default=str))
    return 0


COMMANDS = {"serve": cmd_serve, "evaluate": cmd_evaluate, "train": cmd_train, "run": cmd_run, "index": cmd_index, "search": cmd_search, "synthesize": cmd_synthesize}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = resolve_config(args)
    except ConfigError as err:
        print(f"ray-lcb: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    try:
        return COMMANDS[args.command](cfg, args)
    except (CorpusError, ModelNotFoundError) as err:  # bad input the user can fix: a message, not a traceback
        print(f"ray-lcb: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


if __name__ == "__main__":
    sys.exit(main())
