"""The CPU replica: a Serve deployment around :class:`TransformersEngine`.

It mimics the interface of ray.serve.llm's ``LLMServer`` -- async-generator
``chat``/``completions`` methods taking OpenAI-shaped requests -- so Ray
Data's ``ServeDeploymentProcessorConfig``, :class:`~ray_lcb.serving.client.LLMClient`
and HTTP clients talk to it exactly as they talk to vLLM replicas.
Requests from any number of callers go straight to the engine's continuous
batcher, which decodes them together and lets each join and leave the running
batch at any step (no batch window to wait for).
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from ray import serve

from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.serving.protocol import GenerationRequest, chat_response, completion_response, parse_request

http_app = FastAPI(title="ray_lcb OpenAI-compatible endpoint")


@serve.deployment
@serve.ingress(http_app)
class TransformersLLMServer:
    def __init__(self, config: dict):
        from ray_lcb.models import resolve_model
        from ray_lcb.serving.engines.transformers import TransformersEngine

        cfg = LLMServingConfig(**config)
        self.config = config
        self.model_name = cfg.model
        threads = cfg.num_threads or max(1, int(cfg.num_cpus_per_replica))
        self.engine = TransformersEngine(str(resolve_model(cfg.model)), dtype=cfg.dtype,
                                         max_model_len=cfg.max_model_len, num_threads=threads,
                                         max_batch_size=cfg.max_batch_size)

    async def _generate(self, request: GenerationRequest):
        return await asyncio.wrap_future(self.engine.submit(request))

    async def chat(self, request: dict):
        """Async generator (as LLMServer.chat): yields one OpenAI chat.completion dict."""
        yield chat_response(await self._generate(parse_request(request, chat=True)), self.model_name)

    async def completions(self, request: dict):
        """Async generator (as LLMServer.completions): yields one text_completion dict."""
        yield completion_response(await self._generate(parse_request(request, chat=False)), self.model_name)

    async def stats(self) -> dict:
        """For tests and benchmarks. ``batch_sizes``: per admission round (requests joining the
        decode batch), the rows decoded together right after it; ``batches``: those rounds in
        full (rows admitted, their prompt tokens, prefill seconds); ``decode_steps``: decode
        steps counted by the number of rows they decoded together; ``decode_seconds``: their time."""
        stats = self.engine.stats()
        return {"batch_sizes": [a["size"] for a in stats["admissions"]], "batches": stats["admissions"],
                "decode_steps": stats["decode_steps"], "decode_seconds": stats["decode_seconds"]}

    async def info(self) -> dict:
        """The serving config this replica was built from (launch.py checks it before reuse)."""
        return dict(self.config)

    @http_app.post("/v1/chat/completions")
    async def http_chat(self, body: dict):
        return await self._http(body, chat=True)

    @http_app.post("/v1/completions")
    async def http_completions(self, body: dict):
        return await self._http(body, chat=False)

    @http_app.get("/v1/models")
    async def http_models(self):
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "ray_lcb"}]}

    async def _http(self, body: dict, *, chat: bool):
        if body.get("stream"):
            return JSONResponse({"error": {"message": "stream=true is not supported"}}, status_code=400)
        try:
            request = parse_request(body, chat=chat)
            result = await self._generate(request)
        except ValueError as err:
            return JSONResponse({"error": {"message": str(err), "type": "invalid_request_error"}}, status_code=400)
        return (chat_response if chat else completion_response)(result, self.model_name)


def build_transformers_app(cfg: LLMServingConfig):
    return TransformersLLMServer.options(
        name=cfg.deployment_name,
        ray_actor_options={"num_cpus": cfg.num_cpus_per_replica, "num_gpus": cfg.num_gpus_per_replica},
        max_ongoing_requests=cfg.max_ongoing_requests,
        max_queued_requests=cfg.max_queued_requests,
        autoscaling_config={"min_replicas": cfg.min_replicas, "max_replicas": cfg.max_replicas,
                            "target_ongoing_requests": max(2, cfg.max_batch_size)},
    ).bind(cfg.model_dump())
