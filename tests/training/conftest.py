"""Session fixtures of the Ray Train tests: the tiny model, its chat data and one uninterrupted run."""

import pytest

from ray_lcb.training import train
from tiny_training import make_chat_data, make_tiny_model, tiny_config


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_path):
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama-chat"), smollm2_path)


@pytest.fixture(scope="session")
def chat_data(tmp_path_factory):
    return make_chat_data(tmp_path_factory.mktemp("chat-data"))


@pytest.fixture(scope="session")
def uninterrupted(ray_session, tiny_model_dir, chat_data, tmp_path_factory):
    """Stage 0 without faults: run directory, progress lines, summary and final weights (trained once)."""
    from transformers import AutoModelForCausalLM

    run_dir = tmp_path_factory.mktemp("uninterrupted")
    lines: list[str] = []
    summary = train(tiny_config(tiny_model_dir), chat_data, run_dir, progress=lines.append)
    model = AutoModelForCausalLM.from_pretrained(summary["final_checkpoint"], use_safetensors=True)
    return {"run_dir": run_dir, "lines": lines, "summary": summary, "weights": model.state_dict()}
