"""A real head node (`ray start --head`), a real `ray job submit`, a real result."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def head(tmp_path):
    gcs, dashboard = _free_port(), _free_port()
    env = {**os.environ, "RAY_LCB_CACHE": os.environ.get("RAY_LCB_CACHE", str(Path.home() / ".cache" / "ray_lcb"))}
    subprocess.run([RAY, "start", "--head", f"--port={gcs}", "--num-cpus=2", "--include-dashboard=true",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--disable-usage-stats",
                    f"--temp-dir={tmp_path / 'ray'}"], check=True, capture_output=True, timeout=180, env=env)
    try:
        yield f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{gcs}", env
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


def test_index_job_submitted_with_ray_job_submit(head, tmp_path):
    address, gcs, env = head
    out = tmp_path / "index"
    submit = subprocess.run(
        [RAY, "job", "submit", "--address", address, "--working-dir", str(REPO),
         "--runtime-env-json", json.dumps({"env_vars": {"HF_HUB_OFFLINE": "1"}, "excludes": ["runs", ".ci-venv"]}),
         "--", "python", "jobs/index.py", "--config", "local",
         "--set", "corpus.max_documents=40", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=env)
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    assert "SUCCEEDED" in submit.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_vectors"] == 40
    status = subprocess.run([RAY, "job", "list", "--address", address], capture_output=True, text=True, timeout=60)
    assert "SUCCEEDED" in status.stdout
