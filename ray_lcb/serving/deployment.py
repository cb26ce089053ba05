"""The CPU replica: a Serve deployment around :class:`TransformersEngine`.

It mimics the interface of ray.serve.llm's ``LLMServer`` -- async-generator
``chat``/``completions`` methods taking OpenAI-shaped requests -- so Ray
Data's ``ServeDeploymentProcessorConfig``, :class:`~ray_lcb.serving.client.LLMClient`
and HTTP clients talk to it exactly as they talk to vLLM replicas.
Concurrent requests from any number of callers are merged by ``@serve.batch``
into one ``generate`` call (dynamic batching).
"""

from __future__ import annotations

import asyncio
import time

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
                                         max_model_len=cfg.max_model_len, num_threads=threads)
        self._generate_batch.set_max_batch_size(cfg.max_batch_size)
        self._generate_batch.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)
        self.batch_sizes: list[int] = []  # observed batch sizes, for tests and benchmarks
        self.batch_log: list[dict] = []  # per batch: size, seconds, prompt and completion tokens

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def _generate_batch(self, requests: list[GenerationRequest]) -> list:
        self.batch_sizes.append(len(requests))
        started = time.perf_counter()
        # In a thread, so health checks and new requests are served meanwhile.
        results = await asyncio.to_thread(self.engine.generate, requests)
        done = [r for r in results if not isinstance(r, Exception)]
        self.batch_log.append({"size": len(requests), "seconds": round(time.perf_counter() - started, 3),
                               "prompt_tokens": sum(r.prompt_tokens for r in done),
                               "completion_tokens": sum(r.completion_tokens for r in done)})
        return results

    async def _generate(self, request: GenerationRequest):
        result = await self._generate_batch(request)
        if isinstance(result, Exception):
            raise result
        return result

    async def chat(self, request: dict):
        """Async generator (as LLMServer.chat): yields one OpenAI chat.completion dict."""
        yield chat_response(await self._generate(parse_request(request, chat=True)), self.model_name)

    async def completions(self, request: dict):
        """Async generator (as LLMServer.completions): yields one text_completion dict."""
        yield completion_response(await self._generate(parse_request(request, chat=False)), self.model_name)

    async def stats(self) -> dict:
        return {"batch_sizes": list(self.batch_sizes), "batches": list(self.batch_log)}

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
