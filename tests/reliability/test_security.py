"""Security defaults, each checked for real.

* No remote code: every ``trust_remote_code`` the code passes is the constant False.
* Safe weights: models load from safetensors only (a pickled ``pytorch_model.bin``
  is refused, and its payload never runs), ``torch.load`` always has
  ``weights_only=True``, nothing unpickles.
* Nothing listens beyond localhost by default: Serve's HTTP proxy, the dashboard
  (config default and cluster.yaml).
* Config values never reach a shell: no ``os.system``, ``shell=True``,
  ``eval``/``exec`` in the code; a value full of shell syntax stays data.
* The README says how to turn on Ray's token authentication for a shared cluster.
"""

import ast
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CODE_FOLDERS = ("ray_lcb", "jobs", "bench")


def _python_files(folders=CODE_FOLDERS) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def _dotted(node: ast.AST) -> str:
    """``torch.load`` for the call target ``torch.load``; '' for anything not a plain name chain."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _calls(folders=CODE_FOLDERS):
    """(file:line, dotted callee, {keyword: value node}) of every call in the code."""
    for path in _python_files(folders):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call):
                yield (f"{path.relative_to(REPO)}:{node.lineno}", _dotted(node.func),
                       {k.arg: k.value for k in node.keywords if k.arg})


def _is_const(node: ast.AST | None, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


# ------------------------------------------------------------------ remote code

def test_trust_remote_code_is_always_false():
    passed = [(where, kw["trust_remote_code"]) for where, _, kw in _calls() if "trust_remote_code" in kw]
    for path in _python_files():  # dict literals too (vLLM engine arguments)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):
                passed += [(f"{path.relative_to(REPO)}:{node.lineno}", v) for k, v in zip(node.keys, node.values)
                           if isinstance(k, ast.Constant) and k.value == "trust_remote_code"]
    assert len(passed) >= 5  # the scan sees the loaders (tokenizers, models, vLLM)
    assert [where for where, value in passed if not _is_const(value, False)] == []
    pattern = re.compile(r"trust_remote_code\W{0,3}\s*[=:]\s*['\"]?true", re.IGNORECASE)
    offenders = [str(p.relative_to(REPO)) for folder in (*CODE_FOLDERS, "notebooks") for p in (REPO / folder).rglob("*")
                 if p.is_file() and p.suffix in (".py", ".yaml", ".yml", ".json", ".ipynb", ".md", ".sh")
                 and pattern.search(p.read_text(errors="replace"))]
    assert offenders == []


# ------------------------------------------------------------------ weights

UNPICKLERS = {"pickle.load", "pickle.loads", "cloudpickle.load", "cloudpickle.loads", "dill.load", "dill.loads",
              "joblib.load", "pd.read_pickle", "pandas.read_pickle", "torch.jit.load", "marshal.loads", "shelve.open"}


def test_tensors_and_checkpoints_load_without_pickle():
    calls = list(_calls())
    torch_loads = [(where, kw) for where, name, kw in calls if name == "torch.load"]
    assert [where for where, kw in torch_loads if not _is_const(kw.get("weights_only"), True)] == []
    assert [where for where, name, _ in calls if name in UNPICKLERS] == []
    assert [where for where, name, kw in calls if name in ("np.load", "numpy.load")
            and not _is_const(kw.get("allow_pickle", ast.Constant(False)), False)] == []
    for path in _python_files(("ray_lcb",)):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "cloudpickle", "dill"):
                pytest.fail(f"{path.relative_to(REPO)}:{node.lineno} imports from {node.module}")
    # Model weights: every model from_pretrained reads safetensors (GGUF, a non-pickle format, is converted once).
    model_loads = [(where, kw) for where, name, kw in calls
                   if name.endswith(".from_pretrained") and re.match(r"Auto\w*Model|\w+For\w+", name.split(".")[-2])]
    assert len(model_loads) >= 4
    assert [where for where, kw in model_loads
            if not (_is_const(kw.get("use_safetensors"), True) or "gguf_file" in kw)] == []


def _tiny_llama_folder(folder: Path, *, safetensors: bool, payload_marker: Path | None = None) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    if safetensors:
        model.save_pretrained(folder)
        return folder
    config.save_pretrained(folder)
    state = dict(model.state_dict())
    if payload_marker is not None:
        state["__payload__"] = _Payload(str(payload_marker))  # runs on unpickling
    torch.save(state, folder / "pytorch_model.bin")
    return folder


class _Payload:
    """A pickle payload: unpickling it creates a file (as a malicious checkpoint would run code)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def test_pickled_weights_are_refused_and_never_unpickled(tmp_path):
    from ray_lcb.models import load_causal_lm

    marker = tmp_path / "payload_ran"
    pickled = _tiny_llama_folder(tmp_path / "pickled", safetensors=False, payload_marker=marker)
    with pytest.raises(OSError, match="safetensors"):
        load_causal_lm(str(pickled))
    assert not marker.exists()
    # The same architecture in safetensors loads: the refusal is about the format.
    safe = _tiny_llama_folder(tmp_path / "safe", safetensors=True)
    assert load_causal_lm(str(safe)).config.hidden_size == 16
    # And the checkpoint reader's torch.load(weights_only=True) rejects the payload too.
    import torch

    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        torch.load(pickled / "pytorch_model.bin", weights_only=True)
    assert not marker.exists()


# ------------------------------------------------------------------ network binds

def _non_loopback_addresses() -> list[str]:
    found = set()
    try:
        found.add(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, timeout=10).stdout
        found |= set(re.findall(r"inet (\d+\.\d+\.\d+\.\d+)", out))
    except (OSError, subprocess.TimeoutExpired):
        pass
    return sorted(a for a in found if not a.startswith("127."))


def test_serve_http_is_reachable_on_loopback_only(ray_session, serve_http_port):
    from ray import serve

    from ray_lcb.serving.config import LLMServingConfig
    from ray_lcb.serving.launch import start_llm_service

    addresses = _non_loopback_addresses()
    if not addresses:
        pytest.skip("this machine has no non-loopback IPv4 address to probe")
    # The default host; the session's Serve proxy listens on a free port (tests/conftest.py).
    cfg = LLMServingConfig(app_name="ray_lcb_security", deployment_name="ray_lcb_security", port=serve_http_port)
    assert cfg.host == "127.0.0.1"
    start_llm_service(cfg, http=True)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{cfg.port}/v1/models", timeout=120) as response:
            assert response.status == 200 and json.loads(response.read())["data"]
        for address in addresses:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((address, cfg.port), timeout=10).close()
    finally:
        serve.delete(cfg.app_name)


def test_dashboard_binds_to_loopback_by_default():
    from ray_lcb.config import RayConfig, load_config, preset_names

    assert RayConfig().dashboard_host == "127.0.0.1"
    for preset in preset_names():
        config = load_config(preset)
        assert config.ray.dashboard_host == "127.0.0.1" and config.llm.host == "127.0.0.1", preset
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    head_starts = [c for c in cluster["head_start_ray_commands"] if "ray start" in c]
    assert head_starts and all("--dashboard-host=127.0.0.1" in c for c in head_starts)
    assert "0.0.0.0" not in (REPO / "cluster.yaml").read_text()


_LOCAL_INSTANCE = """
import json, ray
from ray.util.state import list_actors
from ray_lcb.config import RayConfig
from ray_lcb.runtime import init_ray
init_ray(RayConfig(num_cpus=1))
url = ray.get_runtime_context().worker.node.address_info["webui_url"]
# The address is explicit: the test session's own Ray instance runs on this machine too.
print(json.dumps({"url": url, "state_api": isinstance(list_actors(address=f"http://{url}"), list)}))
ray.shutdown()
"""


def test_a_local_instance_starts_its_dashboard_on_loopback_with_the_state_api():
    # The default local instance runs the dashboard (Ray Train's placement-group cleaner needs
    # its state API); it must listen on 127.0.0.1 only. A subprocess: this session's Ray is its own.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", _LOCAL_INSTANCE], capture_output=True, text=True, timeout=300,
                          env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["url"].split("//")[-1].startswith("127.0.0.1:") and result["state_api"]


# ------------------------------------------------------------------ no shell

SHELL_CALLS = {"os.system", "os.popen", "os.execl", "os.execlp", "os.execv", "os.execvp", "os.spawnl", "os.spawnv",
               "eval", "exec", "compile", "asyncio.create_subprocess_shell", "subprocess.getoutput",
               "subprocess.getstatusoutput", "yaml.load", "yaml.unsafe_load", "yaml.full_load"}


def test_no_shell_eval_or_unsafe_yaml_in_the_code():
    calls = list(_calls(("ray_lcb", "jobs")))
    assert [f"{where} {name}" for where, name, _ in calls if name in SHELL_CALLS] == []
    shell = [where for where, name, kw in calls if "shell" in kw and not _is_const(kw["shell"], False)]
    assert shell == []
    assert any(name == "yaml.safe_load" for _, name, _ in calls)  # configs are parsed as data


def test_shell_syntax_in_a_config_value_stays_data(tmp_path):
    from ray_lcb.config import load_config

    marker = tmp_path / "pwned"
    value = f"$(touch {marker}); `touch {marker}`; x"
    assert load_config("local", [f"corpus.source={value}"]).corpus.source == value  # kept verbatim
    for command in ("index", "synthesize"):
        proc = subprocess.run([sys.executable, "-m", "ray_lcb.cli", command, "--set", f"corpus.source={value}",
                               "--out", str(tmp_path / command)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"ray-lcb: corpus '{value}' does not exist" in proc.stderr and "Traceback" not in proc.stderr
        assert not marker.exists()


# ------------------------------------------------------------------ docs

def _section(markdown: str, title: str) -> str | None:
    """The text under the heading ``title`` up to the next heading of the same or a higher level."""
    level, lines, fenced = None, [], False
    for line in markdown.splitlines():
        fenced = fenced != line.lstrip().startswith("```")
        heading = None if fenced else re.match(r"(#+)\s+(.*)", line)
        if level is None:
            if heading and heading.group(2).strip().lower().startswith(title.lower()):
                level = len(heading.group(1))
        elif heading and len(heading.group(1)) <= level:
            break
        else:
            lines.append(line)
    return None if level is None else "\n".join(lines)


def test_readme_documents_token_authentication():
    section = _section((REPO / "README.md").read_text(), "Security")
    assert section is not None, "README.md has no 'Security' section"
    assert "RAY_AUTH_MODE" in section and re.search(r"token[- ]auth", section, re.IGNORECASE), section
