"""Kill the synthesis job mid-run, rerun it: every sample id exactly once, the expected count."""

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq


def _cli(out, address, tiny):
    # Long-output samples take one LLM call each, which keeps this test short; their
    # rows still flow through every stage of the Ray Data pipeline.
    sets = [f"synthesis.{k}={v}" for k, v in {**tiny, "num_samples": 0, "num_long_output_samples": 6,
                                               "chunk_tokens": 256, "max_rounds": 8}.items()]
    argv = [sys.executable, "-m", "ray_lcb.cli", "synthesize", "--out", str(out), "--set", f"ray.address={address}"]
    for item in sets:
        argv += ["--set", item]
    return argv


def _committed(out):
    files = sorted((out / "data").glob("samples-*.parquet"))
    return [i for f in files for i in pq.read_table(f, columns=["sample_id"]).column(0).to_pylist()], files


def test_killed_job_resumes_without_loss_or_duplicates(ray_session, tmp_path, tiny_synthesis):
    address = ray_session.get_runtime_context().gcs_address
    out = tmp_path / "out"
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(_cli(out, address, tiny_synthesis), stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and first.poll() is None:
        kept, _ = _committed(out) if (out / "data").exists() else ([], [])
        if kept:
            break
        time.sleep(0.2)
    assert first.poll() is None, f"first run ended before it could be killed: {(tmp_path / 'first.log').read_text()[-2000:]}"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before, before_files = _committed(out)
    snapshot = {f.name: f.read_bytes() for f in before_files}
    assert 1 <= len(before) < 6

    second = subprocess.run(_cli(out, address, tiny_synthesis), capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after, _ = _committed(out)
    assert len(after) == len(set(after)) == 6  # exactly once, the expected count
    assert set(before) <= set(after)
    for name, content in snapshot.items():  # committed shards were not rewritten
        assert (out / "data" / name).read_bytes() == content
    ledger = [row for f in (out / "_state").glob("ledger-*.parquet") for row in pq.read_table(f).to_pylist()]
    ledger_ids = [row["sample_id"] for row in ledger]
    assert len(ledger_ids) == len(set(ledger_ids))  # no id processed twice
    assert {r["sample_id"] for r in ledger if r["drop_reason"] is None} == set(after)
