"""The request/response schema shared by every engine: OpenAI chat and completions.

Clients send OpenAI-shaped dicts (``messages`` or ``prompt`` plus sampling
fields); both the vLLM replica (ray.serve.llm's ``LLMServer``) and the CPU
transformers replica accept them and answer OpenAI-shaped responses, so a
client never branches on the engine. This file holds the engine-neutral
parsing and response building.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

# Keys that Ray Data's ServeDeploymentStage or OpenAI clients add and that
# carry no sampling meaning here.
IGNORED_KEYS = {"model", "request_id", "idx_in_batch", "n", "stream", "user", "logprobs", "frequency_penalty",
                "presence_penalty",
                "add_special_tokens"}  # raw prompts are already rendered; the CPU engine never adds BOS
SAMPLING_KEYS = {"max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed"}


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class GenerationRequest:
    """One parsed request: either chat ``messages`` or a raw ``prompt`` string."""

    messages: list[dict] | None
    prompt: str | None
    params: SamplingParams


@dataclass
class GenerationResult:
    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


def _plain(value):
    """Undo Arrow/NumPy wrapping: rows from Ray Data carry lists as object arrays."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def parse_request(request: dict, *, chat: bool) -> GenerationRequest:
    """Validate an OpenAI-shaped request dict.

    Raises:
        ValueError: a missing or malformed field, named in the message. Ray
            Data's Serve stage treats ValueError as a per-row error.
    """
    if hasattr(request, "model_dump"):
        request = request.model_dump(exclude_none=True)
    request = _plain(dict(request))
    unknown = set(request) - IGNORED_KEYS - SAMPLING_KEYS - {"messages", "prompt"}
    if unknown:
        raise ValueError(f"unsupported request field(s) {sorted(unknown)}")
    stop = request.get("stop") or []
    max_tokens = request.get("max_tokens", request.get("max_completion_tokens"))
    params = SamplingParams(
        max_tokens=256 if max_tokens is None else int(max_tokens),
        temperature=float(request.get("temperature", 0.0) or 0.0),
        top_p=float(request.get("top_p", 1.0) or 1.0),
        stop=[stop] if isinstance(stop, str) else [str(s) for s in stop],
        seed=None if request.get("seed") is None else int(request["seed"]),
    )
    if params.max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {params.max_tokens}")
    if params.temperature < 0 or not 0 < params.top_p <= 1:
        raise ValueError(f"temperature must be >= 0 and top_p in (0, 1], got {params.temperature}, {params.top_p}")
    if chat:
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("chat request needs a non-empty 'messages' list")
        for message in messages:
            if not isinstance(message, dict) or not isinstance(message.get("content"), str) or "role" not in message:
                raise ValueError(f"each message needs 'role' and string 'content', got {str(message)[:200]}")
        return GenerationRequest([{"role": m["role"], "content": m["content"]} for m in messages], None, params)
    prompt = request.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("completions request needs a non-empty string 'prompt'")
    return GenerationRequest(None, prompt, params)


def _usage(result: GenerationResult) -> dict:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens}


def chat_response(result: GenerationResult, model: str) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                     "finish_reason": result.finish_reason}],
        "usage": _usage(result),
    }


def completion_response(result: GenerationResult, model: str) -> dict:
    return {
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "text": result.text, "finish_reason": result.finish_reason}],
        "usage": _usage(result),
    }


def response_text(response: dict) -> str:
    """The generated text of a chat or completion response."""
    choice = response["choices"][0]
    message = choice.get("message")
    return message["content"] if message else choice["text"]
