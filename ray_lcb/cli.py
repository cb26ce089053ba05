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

from ray_lcb.config import ConfigError, RayLCBConfig, load_config, preset_names

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
    return parser


def resolve_config(args: argparse.Namespace) -> RayLCBConfig:
    overrides = list(args.overrides)
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


COMMANDS = {"serve": cmd_serve}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = resolve_config(args)
    except ConfigError as err:
        print(f"ray-lcb: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    return COMMANDS[args.command](cfg, args)


if __name__ == "__main__":
    sys.exit(main())
