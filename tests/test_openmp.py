"""ray_lcb sets libgomp's wait settings before torch loads it, keeping values the user set."""

import json
import os
import subprocess
import sys

PROBE = """
import ctypes, json, sys
import ray_lcb
import torch  # loads libgomp, which reads the C environment once
libc = ctypes.CDLL(None)
libc.getenv.restype = ctypes.c_char_p
print(json.dumps({name: (libc.getenv(name.encode()) or b"").decode() for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}))
"""


def probe(code: str = PROBE, **env_overrides) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_overrides)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_defaults_reach_the_c_environment_that_libgomp_reads():
    assert probe() == {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "300000"}


def test_a_users_settings_are_kept():
    # A chosen policy is left alone: a spin count would override PASSIVE's zero spin.
    assert probe(OMP_WAIT_POLICY="PASSIVE") == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": ""}
    assert probe(GOMP_SPINCOUNT="1000") == {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "1000"}


RAY_PROBE = """
import json, os
import ray
from ray_lcb.config import RayConfig
from ray_lcb.runtime import init_ray

init_ray(RayConfig(num_cpus=1, include_dashboard=False))
read = ray.remote(num_cpus=0)(lambda: {n: os.environ.get(n) for n in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")})
print(json.dumps(ray.get(read.remote())))
"""


def test_local_ray_workers_get_the_drivers_settings():
    assert probe(RAY_PROBE) == {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "300000"}
