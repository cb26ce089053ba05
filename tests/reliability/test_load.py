"""Concurrent load on the LLM deployment: every request is answered or explicitly rejected, none lost.

Runs ``bench/load.py`` (the 1,000-request benchmark, scaled down) against the
session cluster with its own app, so the benchmark itself stays tested. The
limits (8 ongoing + 8 queued against 200 sent at once) make Serve reject with
``BackPressureError``.
"""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "load.py"
SENT = 200


def test_concurrent_requests_are_answered_or_rejected_never_lost(ray_session):
    address = ray_session.get_runtime_context().gcs_address
    proc = subprocess.run([sys.executable, str(BENCH), "--requests", str(SENT), "--max-tokens", "2",
                           "--max-ongoing", "8", "--max-queued", "8", "--max-batch", "8", "--baseline", "2",
                           "--address", address, "--app", "ray_lcb_load", "--json"],
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    load = json.loads(lines[-1].removeprefix("RESULT "))["load"]
    assert load["sent"] == SENT
    assert load["answered"] + load["rejected"] == SENT  # none lost
    assert load["failed"] == 0, load["errors"]  # no error other than back-pressure
    assert load["answered"] >= 8 and load["rejected"] >= 1  # both paths really taken
