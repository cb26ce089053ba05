import subprocess
import sys

import pytest

from ray_lcb.config import ConfigError, load_config, preset_names


def test_presets_load():
    assert {"local", "paper-8b-1m"} <= set(preset_names())
    local = load_config("local")
    assert local.llm.engine == "transformers" and local.llm.model.startswith("bundled:")
    paper = load_config("paper-8b-1m")
    assert paper.llm.engine == "vllm" and paper.corpus.source.startswith("hf://")


def test_overrides_are_typed():
    cfg = load_config("local", ["llm.max_batch_size=12", "corpus.max_documents=10", "ray.address=null"])
    assert cfg.llm.max_batch_size == 12 and cfg.corpus.max_documents == 10 and cfg.ray.address is None


@pytest.mark.parametrize("override, field", [
    ("llm.max_batch_size=0", "llm.max_batch_size"),
    ("llm.engine=tpu", "llm.engine"),
    ("llm.not_a_field=1", "llm.not_a_field"),
    ("corpus.min_chars=abc", "corpus.min_chars"),
])
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("local", [override])


def test_vllm_needs_gpus():
    with pytest.raises(ConfigError, match="num_gpus_per_replica"):
        load_config("local", ["llm.engine=vllm"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="neither a file nor a preset"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("llm: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="section.field=value"):
        load_config("local", ["no_equals_sign"])


def test_cli_config_errors_exit_2_before_ray(tmp_path):
    cases = [["serve", "--set", "llm.max_batch_size=-1"], ["serve", "--config", str(tmp_path / "nope.yaml")],
             ["serve", "--set", "llm.typo=1"]]
    for argv in cases:
        proc = subprocess.run([sys.executable, "-m", "ray_lcb.cli", *argv], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "ray-lcb:" in proc.stderr and "Traceback" not in proc.stderr
        assert "Started a local Ray instance" not in proc.stderr
