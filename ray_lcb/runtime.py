"""Start or join Ray with the settings every ray_lcb job shares."""

from __future__ import annotations

import os

from ray_lcb.config import RayConfig
from ray_lcb.openmp import OPENMP_DEFAULTS

# Forwarded to every worker so offline mode, the model cache and the OpenMP wait settings
# (ray_lcb/openmp.py) hold cluster-wide.
FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "RAY_LCB_CACHE", "TOKENIZERS_PARALLELISM", *OPENMP_DEFAULTS)


def init_ray(cfg: RayConfig):
    import ray

    if ray.is_initialized():
        return ray
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    address = cfg.address or os.environ.get("RAY_ADDRESS")  # set inside `ray job submit` drivers
    if address:
        # A cluster's environment is its own (cluster.yaml, or the job's runtime_env); a
        # runtime_env here would clash with a submitted job's.
        ray.init(address=address, log_to_driver=True)
    else:
        # address="local": a new instance, even when another Ray (`ray start`) runs on this machine.
        ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=cfg.include_dashboard,
                 dashboard_host=cfg.dashboard_host,
                 runtime_env={"env_vars": env}, log_to_driver=True)
    return ray
