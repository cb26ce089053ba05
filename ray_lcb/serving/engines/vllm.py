"""GPU engine: vLLM replicas through ``ray.serve.llm`` (imported only here).

``has_vllm()`` is the probe; nothing else in ray_lcb imports vllm or
``ray.serve.llm``. The deployment is ray.serve.llm's ``LLMServer`` with a
stable name, so clients address it exactly like the CPU replica.
"""

from __future__ import annotations

import importlib.util

from ray_lcb.serving.config import LLMServingConfig


def has_vllm() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _llm_config(cfg: LLMServingConfig):
    from ray.serve.llm import LLMConfig

    from ray_lcb.models import resolve_model

    engine_kwargs = {"tensor_parallel_size": cfg.tensor_parallel_size,
                     "gpu_memory_utilization": cfg.gpu_memory_utilization, "dtype": cfg.dtype,
                     "trust_remote_code": False}
    if cfg.max_model_len:
        # Without it vLLM sizes the KV cache for the model maximum and can hang on OOM (ray#59986).
        engine_kwargs["max_model_len"] = cfg.max_model_len
    return LLMConfig(
        model_loading_config={"model_id": cfg.model, "model_source": str(resolve_model(cfg.model))},
        engine_kwargs=engine_kwargs,
        deployment_config={"autoscaling_config": {"min_replicas": cfg.min_replicas, "max_replicas": cfg.max_replicas},
                           "max_ongoing_requests": cfg.max_ongoing_requests},
    )


def build_vllm_app(cfg: LLMServingConfig, *, http: bool = False):
    if not has_vllm():
        raise RuntimeError("engine 'vllm' needs the gpu extra: pip install -e '.[gpu]'")
    from ray.serve.llm import build_llm_deployment, build_openai_app

    llm_config = _llm_config(cfg)
    if http:
        return build_openai_app({"llm_configs": [llm_config]})
    return build_llm_deployment(llm_config, override_serve_options={"name": cfg.deployment_name})


def request_types() -> dict:
    """Request classes LLMServer expects (the CPU replica takes plain dicts)."""
    from ray.serve.llm.openai_api_models import ChatCompletionRequest, CompletionRequest

    return {"ChatCompletionRequest": ChatCompletionRequest, "CompletionRequest": CompletionRequest}
