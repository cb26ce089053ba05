"""cluster.yaml passes Ray's own cluster-config schema validation, with the layout we promise."""

from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


def test_cluster_yaml_validates_with_rays_schema():
    config = prepare_config(yaml.safe_load(CLUSTER_YAML.read_text()))
    validate_config(config)  # raises jsonschema.ValidationError / ValueError when invalid
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"] == {"CPU": 0}  # no work on the head
    assert all(nodes[n]["min_workers"] == 0 for n in ("gpu_inference", "gpu_train_8x"))  # autoscaled from zero
    assert "ray-ml" not in config["docker"]["image"] and "2.60.0" in config["docker"]["image"]
    assert any("[gpu]" in command for command in config["setup_commands"])
    assert all("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"] if "ray start" in c)


def test_schema_validation_catches_mistakes():
    config = prepare_config(yaml.safe_load(CLUSTER_YAML.read_text()))
    config["available_node_types"]["head"]["not_a_field"] = 1
    with pytest.raises(Exception, match="not_a_field"):
        validate_config(config)
