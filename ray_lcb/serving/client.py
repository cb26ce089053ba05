"""Clients of the shared LLM deployment.

* :func:`build_llm_processor` -- a Ray Data processor
  (``ray.data.llm.build_processor`` with ``ServeDeploymentProcessorConfig``)
  that turns each row into one request. Output rows keep their input
  columns and gain ``generated_text``, ``finish_reason``, ``completion_tokens``
  and ``error`` (a failed row carries its error message instead of failing
  the job).
* :class:`LLMClient` -- an asyncio client for stages whose control flow is not
  one-request-per-row (retries, recursive summarisation). It holds a Serve
  handle, never a model.

Any number of processors and clients share one deployment at the same time;
the replica batches their requests together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from ray import serve

from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.serving.protocol import response_text

OUTPUT_COLUMNS = ("generated_text", "finish_reason", "completion_tokens", "error")


@dataclass
class LLMReply:
    text: str
    finish_reason: str
    completion_tokens: int


class LLMClient:
    """Async access to the shared deployment from inside a Ray actor or driver."""

    def __init__(self, cfg: LLMServingConfig):
        self._handle = serve.get_deployment_handle(cfg.deployment_name, cfg.app_name).options(stream=True)
        self._request_types = None
        if cfg.engine == "vllm":
            from ray_lcb.serving.engines.vllm import request_types

            self._request_types = request_types()
        self.model = cfg.model

    async def _call(self, method: str, request: dict, request_type: str) -> LLMReply:
        if self._request_types:
            request = self._request_types[request_type](model=self.model, **request)
        stream = getattr(self._handle, method).remote(request)
        response = await stream.__anext__()
        if hasattr(response, "model_dump"):
            response = response.model_dump()
        choice = response["choices"][0]
        return LLMReply(response_text(response), choice.get("finish_reason") or "stop",
                        int((response.get("usage") or {}).get("completion_tokens", 0)))

    async def chat(self, messages: list[dict], **sampling) -> LLMReply:
        """One chat request; ``sampling`` takes OpenAI fields (max_tokens, temperature, top_p, stop, seed)."""
        return await self._call("chat", {"messages": messages, **sampling}, "ChatCompletionRequest")

    async def complete(self, prompt: str, **sampling) -> LLMReply:
        return await self._call("completions", {"prompt": prompt, **sampling}, "CompletionRequest")


def build_llm_processor(cfg: LLMServingConfig, make_request: Callable[[dict], dict], *, method: str = "chat",
                        batch_size: int = 8, concurrency: int = 1, request_timeout_s: float | None = None):
    """A Ray Data processor sending one request per row to the shared deployment.

    Args:
        cfg: the serving config naming the deployment.
        make_request: row -> OpenAI request fields (``messages`` or ``prompt``,
            plus sampling fields). Runs in the Ray Data workers.
        method: ``"chat"`` or ``"completions"``.
        batch_size: rows per client batch (the replica batches across clients).
        concurrency: client actors (a fixed pool).
        request_timeout_s: a request slower than this becomes an error row.

    Returns:
        A callable ``dataset -> dataset``.
    """
    from ray.data.llm import ServeDeploymentProcessorConfig, build_processor

    if method not in ("chat", "completions"):
        raise ValueError(f"method must be 'chat' or 'completions', got {method!r}")
    dtype_name = None
    extra = {}
    if cfg.engine == "vllm":
        from ray_lcb.serving.engines.vllm import request_types

        extra["dtype_mapping"] = request_types()
        dtype_name = "ChatCompletionRequest" if method == "chat" else "CompletionRequest"
    config = ServeDeploymentProcessorConfig(
        deployment_name=cfg.deployment_name, app_name=cfg.app_name, batch_size=batch_size,
        concurrency=concurrency, should_continue_on_error=True, request_timeout_s=request_timeout_s, **extra)
    model = cfg.model

    def preprocess(row: dict) -> dict:
        # The input row travels as JSON so that its columns come back unchanged
        # (error rows skip the processor's postprocess, so finalize() rebuilds them).
        try:
            request = make_request(row)
        except Exception as err:  # noqa: BLE001 - a bad row must not kill the job
            request = {"prompt" if method == "completions" else "messages": None, "_invalid": repr(err)}
        if cfg.engine == "vllm":
            request = {"model": model, **request}
        out = {"_row_json": json.dumps(row, default=_jsonable), "method": method, "request_kwargs": request}
        if dtype_name:
            out["dtype"] = dtype_name
        return out

    processor = build_processor(config, preprocess=preprocess)

    def run(dataset):
        return processor(dataset).map(_finalize)

    return run


def _jsonable(value):
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _finalize(row: dict) -> dict:
    out = json.loads(row["_row_json"])
    error = row.get("__inference_error__") or None
    choices = row.get("choices")
    if error is None and choices is not None and len(choices):
        choice = choices[0]
        message = choice.get("message")
        out["generated_text"] = message["content"] if message else choice["text"]
        out["finish_reason"] = choice.get("finish_reason") or "stop"
        out["completion_tokens"] = int((row.get("usage") or {}).get("completion_tokens") or 0)
        out["error"] = None
    else:
        out.update(generated_text=None, finish_reason=None, completion_tokens=0,
                   error=short_error(str(error or "no response")))
    return out


def short_error(message: str) -> str:
    """The ``Type: message`` line of a remote traceback, without Ray's frames."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1] if lines else message
