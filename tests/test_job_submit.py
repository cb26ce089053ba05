"""A real head node (`ray start --head`), a real `ray job submit`, a real result."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_dashboard(url: str, head: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start --head exited: {log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{url}/api/version", timeout=5)
            return
        except urllib.error.HTTPError:
            return  # it answers (token authentication may refuse an anonymous request)
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"dashboard {url} did not come up: {log.read_text()[-3000:]}")


@pytest.fixture()
def head(tmp_path):
    """A head node of its own. `--block` keeps `ray start` in the foreground so the
    teardown can end exactly this cluster (`ray stop` would end every Ray on the machine)."""
    gcs, dashboard = _free_port(), _free_port()
    # Token authentication on, as README's Security section asks of a shared cluster: the
    # head, the job driver and the `ray job submit` client all use ~/.ray/auth_token.
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_AUTH_MODE": "token"}
    if not (Path.home() / ".ray" / "auth_token").exists():
        subprocess.run([RAY, "get-auth-token", "--generate"], check=True, capture_output=True, env=env, timeout=60)
    log = tmp_path / "head.log"
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--disable-usage-stats",
         # Not the fixed default 52365: another Ray on this machine (the test session's) may hold it.
         f"--dashboard-agent-listen-port={_free_port()}",
         f"--temp-dir={tempfile.mkdtemp(prefix='rlcb', dir='/tmp')}"],  # short: AF_UNIX paths max 107 bytes
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
        start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_for_dashboard(url, head, log)
        yield url, env
    finally:
        if head.poll() is None:
            # SIGTERM asks every process to stop gracefully (that took ~35 s); the cluster is
            # this test's own, so a short grace period and then SIGKILL are enough.
            os.killpg(head.pid, signal.SIGTERM)
            try:
                head.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait(timeout=60)


def test_index_job_submitted_with_ray_job_submit(head, tmp_path):
    address, env = head
    out = tmp_path / "index"
    submit_argv = (
        [RAY, "job", "submit", "--address", address, "--working-dir", str(REPO),
         "--runtime-env-json", json.dumps({"env_vars": {"HF_HUB_OFFLINE": "1"}, "excludes": ["runs", ".ci-venv"]}),
         "--", sys.executable, "jobs/index.py", "--config", "local",
         "--set", "corpus.max_documents=40", "--out", str(out)])
    for _ in range(20):  # the head's job agent starts a little after its dashboard
        submit = subprocess.run(submit_argv, capture_output=True, text=True, timeout=600, env=env)
        if "No available agent" not in submit.stderr + submit.stdout:
            break
        time.sleep(3)
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    assert "succeeded" in (submit.stdout + submit.stderr).lower()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_vectors"] == 40
    status = subprocess.run([RAY, "job", "list", "--address", address], capture_output=True, text=True, timeout=60,
                            env=env)
    assert "SUCCEEDED" in status.stdout
