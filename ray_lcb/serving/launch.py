"""Start (or find) the one shared LLM deployment.

Every LLM-calling stage calls :func:`start_llm_service` with the same
:class:`LLMServingConfig`; the first call deploys, later calls reuse the
running application. Serve's HTTP proxy binds to ``cfg.host`` (127.0.0.1 by
default) and the app is exposed over HTTP only when asked (``http=True``).
"""

from __future__ import annotations

import logging

from ray import serve

from ray_lcb.serving.config import LLMServingConfig

logger = logging.getLogger(__name__)


def build_llm_app(cfg: LLMServingConfig, *, http: bool = False):
    if cfg.engine == "vllm":
        from ray_lcb.serving.engines.vllm import build_vllm_app

        return build_vllm_app(cfg, http=http)
    from ray_lcb.serving.deployment import build_transformers_app

    return build_transformers_app(cfg)


def start_llm_service(cfg: LLMServingConfig, *, http: bool = False):
    """Deploy the LLM application unless it already runs; return its handle.

    Args:
        cfg: the serving config (engine, model, replicas, batching).
        http: also expose the OpenAI-compatible routes on ``cfg.host:cfg.port``.
    """
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    running = serve.status().applications.get(cfg.app_name)
    if running is None or running.status != "RUNNING" or http or not _serves(cfg):
        logger.info("deploying LLM app %s (%s engine, model %s)", cfg.app_name, cfg.engine, cfg.model)
        serve.run(build_llm_app(cfg, http=http), name=cfg.app_name, route_prefix="/" if http else None)
    return serve.get_deployment_handle(cfg.deployment_name, cfg.app_name)


def _serves(cfg: LLMServingConfig) -> bool:
    """Whether the running app was built from ``cfg`` (a different model must not be reused).
    vLLM replicas are ray.serve.llm's and carry no such record: they are trusted by name."""
    if cfg.engine != "transformers":
        return True
    handle = serve.get_deployment_handle(cfg.deployment_name, cfg.app_name)
    try:
        return handle.info.remote().result(timeout_s=60) == cfg.model_dump()
    except Exception:  # noqa: BLE001 - an app of another kind under this name: replace it
        return False


def stop_llm_service(cfg: LLMServingConfig) -> None:
    serve.delete(cfg.app_name)
