"""The root config: composes the component configs and loads presets.

A job's config is a preset shipped in ``ray_lcb/presets/`` (``local``,
``paper-8b-1m``) or a YAML file, plus dotted overrides
(``--set llm.max_batch_size=16``). Every error -- a missing file, an unknown
key, a bad value -- raises :class:`ConfigError` naming the field and the
value, before Ray starts; the CLI turns it into exit code 2.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from ray_lcb.configbase import ComponentConfig
from ray_lcb.corpus import CorpusConfig
from ray_lcb.evaluation.config import EvaluationConfig
from ray_lcb.retrieval.config import IndexConfig
from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.synthesis.config import SynthesisConfig
from ray_lcb.training.config import TrainingConfig


class RayConfig(ComponentConfig):
    address: str | None = Field(
        None, description="Ray cluster to join ('auto', ray://host:10001); None starts a local instance.")
    num_cpus: int | None = Field(None, ge=1, description="Logical CPUs of a local instance (None: all cores).")
    include_dashboard: bool = Field(
        True, description="Start the dashboard with a local instance. Ray's state API runs in it; without it "
                          "Ray Train's placement-group cleaner cannot watch its controller (and warns every second).")
    dashboard_host: str = Field("127.0.0.1", description="Dashboard bind address (localhost unless configured).")


class RayLCBConfig(ComponentConfig):
    name: str = Field("local", description="Run name, used for output folders and resumable training runs.")
    seed: int = Field(0, description="Seed of every random choice in the pipeline.")
    ray: RayConfig = Field(default_factory=RayConfig, description="How to start or join Ray.")
    corpus: CorpusConfig = Field(default_factory=CorpusConfig, description="The document collection.")
    llm: LLMServingConfig = Field(default_factory=LLMServingConfig, description="The shared LLM deployment.")
    index: IndexConfig = Field(default_factory=IndexConfig, description="Embedding job and FAISS index.")
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig, description="The synthesis workflow.")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, description="RULER, NIAH and long-output checks.")
    training: TrainingConfig | None = Field(None, description="Progressive sequence-parallel training (presets set it).")


class ConfigError(ValueError):
    """A config cannot be loaded; the message names the file or field."""


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("ray_lcb.presets").iterdir()
                  if p.name.endswith(".yaml"))


def _read_yaml(preset_or_path: str) -> dict:
    path = Path(preset_or_path)
    if preset_or_path in preset_names():
        text = resources.files("ray_lcb.presets").joinpath(preset_or_path + ".yaml").read_text()
        source = f"preset '{preset_or_path}'"
    elif path.is_file():
        text, source = path.read_text(), f"config file '{path}'"
    else:
        raise ConfigError(f"config '{preset_or_path}' is neither a file nor a preset ({', '.join(preset_names())})")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a YAML mapping, got {type(data).__name__}")
    return data


def apply_override(data: dict, override: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to the nested dict ``data``."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{override}' must look like section.field=value")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{override}': '{part}' is a value, not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override '{override}': value is not valid YAML: {err}") from err


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for problem in err.errors():
        field = ".".join(str(p) for p in problem["loc"]) or "(root)"
        value = problem.get("input")
        shown = "" if problem["type"] == "missing" else f" (got {value!r})"[:200]
        message = "unknown field" if problem["type"] == "extra_forbidden" else problem["msg"]
        lines.append(f"  {field}: {message}{shown}")
    return "invalid config:\n" + "\n".join(lines)


def load_config(preset_or_path: str = "local", overrides: list[str] | tuple[str, ...] = ()) -> RayLCBConfig:
    """Load a preset or YAML file and apply dotted overrides.

    Raises:
        ConfigError: missing file, invalid YAML, unknown key or invalid value.
    """
    data = _read_yaml(preset_or_path)
    for override in overrides:
        apply_override(data, override)
    try:
        return RayLCBConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None
