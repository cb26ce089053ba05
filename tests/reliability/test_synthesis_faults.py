"""Synthesis under faults: nothing is lost or duplicated when parts of the job die mid-run.

The job runs as ``ray-lcb synthesize`` in a subprocess joined to the session
cluster; the test kills the Serve replica of the shared LLM deployment (Serve
starts a new one; the LLM stages retry their calls), then the process of the
InstructionStage's Ray Data actor (Ray restarts it and retries its tasks),
while samples are still in flight. A second test removes a whole worker node
of a three-node cluster (``multinode_synthesis.py``).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from ray._private.state import actors as actor_table

from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.serving.launch import start_llm_service
from reliability_helpers import FAULT_SYNTHESIS, committed_sample_ids, ledger_rows, synthesize_argv

NUM_SAMPLES = FAULT_SYNTHESIS["num_long_output_samples"]
REPLICA_CLASS = "ServeReplica:ray_lcb_llm:ray_lcb_llm"


def _alive(predicate) -> list[dict]:
    # The GCS actor table: ray.util.state needs the dashboard, which the test session does not start.
    return [a for a in actor_table().values() if a["State"] == "ALIVE" and predicate(a["ActorClassName"])]


def _replicas() -> list[dict]:
    return _alive(lambda name: name == REPLICA_CLASS)


def _instruction_workers() -> list[dict]:
    return _alive(lambda name: name == "MapWorker(MapBatches(InstructionStage))")


def _wait_for(condition, job, log_path, what: str, timeout_s: float = 600):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert job.poll() is None, f"the job ended before {what}:\n{log_path.read_text()[-3000:]}"
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_llm_replica_and_stage_actor_killed_mid_run(ray_session, tmp_path):
    start_llm_service(LLMServingConfig())  # the shared app, deployed before the job so its replica can be killed
    old_replicas = {a["ActorID"] for a in _replicas()}
    assert len(old_replicas) == 1
    out, log_path = tmp_path / "out", tmp_path / "job.log"
    address = ray_session.get_runtime_context().gcs_address
    with open(log_path, "w") as log:
        job = subprocess.Popen(synthesize_argv(out, address), stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        # Mid-run: at the first commit the replica dies under in-flight requests; once a stage
        # has seen a call fail (and waits to retry it), the stage's actor process is killed too.
        _wait_for(lambda: (out / "_state").exists() and len(ledger_rows(out)) >= 1, job, log_path, "the first commit")
        ray.kill(ray.get_actor(_replicas()[0]["Name"], namespace="serve"))
        committed_at_kill = len(ledger_rows(out))
        _wait_for(lambda: "LLM call failed (" in log_path.read_text(), job, log_path,
                  "an LLM call cut by the replica kill", timeout_s=120)
        workers = _instruction_workers()
        for worker in workers:
            os.kill(worker["Pid"], signal.SIGKILL)
        returncode = job.wait(timeout=900)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    log_text = log_path.read_text()
    assert returncode == 0, log_text[-4000:]
    assert workers, "no InstructionStage actor was alive mid-run"
    assert committed_at_kill < NUM_SAMPLES, "the kills came after the job had finished"
    assert "retrying" in log_text  # the stage retried the failed call (llm_stage.py) rather than dropping it

    kept = committed_sample_ids(out)
    assert len(kept) == len(set(kept)) == NUM_SAMPLES  # exactly once, all of them
    ledger = ledger_rows(out)
    ledger_ids = [r["sample_id"] for r in ledger]
    assert len(ledger_ids) == len(set(ledger_ids))  # no id processed twice
    assert {r["sample_id"] for r in ledger if r["drop_reason"] is None} == set(kept)
    # The failures were absorbed by retries, not turned into dropped samples.
    assert not [r for r in ledger if r["drop_reason"] and "_error:" in r["drop_reason"]], ledger
    for worker in workers:  # Ray restarted the killed actor (and retried its tasks)
        assert actor_table(worker["ActorID"])["NumRestarts"] >= 1
    new_replicas = {a["ActorID"] for a in _replicas()}
    assert new_replicas and not new_replicas & old_replicas  # Serve replaced the killed replica


@pytest.mark.slow
def test_worker_node_removed_mid_run(tmp_path):
    """Three nodes (head + two workers); the worker running the InstructionStage actor is removed
    at the first commit. Runs in a subprocess: it is its own Ray cluster, not the session's."""
    script = Path(__file__).with_name("multinode_synthesis.py")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=900, start_new_session=True)
    (tmp_path / "multinode.log").write_text(proc.stdout + proc.stderr)  # kept for a post-mortem
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    removed = result["removed"]
    assert "MapWorker(MapBatches(InstructionStage))" in removed["actors"]  # the node ran synthesis work
    assert removed["node_id"] != result["head"] and result["alive_nodes"] == 2
    assert removed["committed"] < result["expected"], "the node was removed after the job had finished"
    assert len(result["kept"]) == len(set(result["kept"])) == result["expected"] == result["report_total"]
    ledger_ids = [sample_id for sample_id, _ in result["ledger"]]
    assert len(ledger_ids) == len(set(ledger_ids))  # no id processed twice
    assert {i for i, reason in result["ledger"] if reason is None} == set(result["kept"])
    assert not [reason for _, reason in result["ledger"] if reason and "_error:" in reason], result["ledger"]
    assert result["replica_nodes"] == [result["head"]]  # the replica stayed on the head throughout
