"""The OpenAI-compatible endpoint on localhost, serving a model folder (as `ray-lcb serve --model DIR`)."""

import json
import urllib.error
import urllib.request

import pytest
from ray import serve

from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.serving.launch import start_llm_service


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def endpoint(ray_session, smollm2_path, serve_http_port):
    cfg = LLMServingConfig(model=str(smollm2_path), app_name="ray_lcb_http", deployment_name="ray_lcb_http",
                           port=serve_http_port)
    start_llm_service(cfg, http=True)
    yield f"http://{cfg.host}:{cfg.port}"
    serve.delete(cfg.app_name)


def test_chat_completion_over_http(endpoint):
    status, body = _post(f"{endpoint}/v1/chat/completions", {
        "model": "any", "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 16, "temperature": 0})
    assert status == 200, body
    assert body["object"] == "chat.completion" and "Paris" in body["choices"][0]["message"]["content"]
    assert 0 < body["usage"]["completion_tokens"] <= 16
    with urllib.request.urlopen(f"{endpoint}/v1/models", timeout=60) as response:
        assert json.loads(response.read())["data"][0]["id"].endswith("smollm2-135m-instruct")


def test_bad_request_is_a_400_with_a_message(endpoint):
    status, body = _post(f"{endpoint}/v1/chat/completions", {"messages": [], "max_tokens": 4})
    assert status == 400 and "messages" in body["error"]["message"]


def test_serve_binds_to_localhost(endpoint):
    assert endpoint.startswith("http://127.0.0.1:")
    proxies = serve.status().proxies
    assert proxies  # a running HTTP proxy, started with host 127.0.0.1 by launch.py
