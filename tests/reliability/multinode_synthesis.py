"""A synthesis job on a three-node Ray cluster that loses a worker node mid-run.

    python tests/reliability/multinode_synthesis.py OUT_DIR

Run by ``test_synthesis_faults.py::test_worker_node_removed_mid_run`` in a
subprocess, because it starts its own Ray cluster (``ray.cluster_utils.Cluster``:
a head and two worker nodes, each a separate raylet and object store on this
machine) and must not meet the test session's Ray instance. The LLM replica
is deployed while the head is the only node, so it sits on the head and takes
its one CPU; the synthesis stage actors then can only run on the workers. When
the first sample is committed, the worker node that hosts the InstructionStage
actor is removed (its raylet, workers and object store killed). Prints one
JSON line: the committed and ledger ids, the removed node and what ran on it.
"""

import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# After ray.shutdown() a Serve handle's metrics thread may call into Ray once more; Ray would then
# auto-connect to the newest local instance -- the test session's -- and cluster.shutdown() would refuse
# to remove a head the driver is connected to (seen once in CI emulation).
os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"

import ray
from ray import serve
from ray._private.state import actors as actor_table
from ray.cluster_utils import Cluster

from ray_lcb.corpus import CorpusConfig
from ray_lcb.retrieval import IndexConfig
from ray_lcb.serving.config import LLMServingConfig
from ray_lcb.serving.launch import start_llm_service
from ray_lcb.synthesis.config import SynthesisConfig
from ray_lcb.synthesis.pipeline import SynthesisInputs, run_synthesis
from reliability_helpers import FAULT_SYNTHESIS, committed_sample_ids, ledger_rows

NUM_SAMPLES = FAULT_SYNTHESIS["num_long_output_samples"]
STARTED = time.time()


def log(message: str) -> None:
    print(f"[{time.time() - STARTED:6.1f}s] {message}", flush=True)
NODE_ARGS = {"num_cpus": 1, "object_store_memory": 200 * 1024 * 1024}


def _actors_on(node_id: str) -> list[str]:
    return sorted(a["ActorClassName"] for a in actor_table().values()
                  if a["State"] == "ALIVE" and a["Address"]["NodeID"] == node_id)


def remove_instruction_node(cluster: Cluster, out: Path, removed: dict) -> None:
    """At the first commit, remove the worker node running the InstructionStage actor."""
    deadline = time.time() + 600
    while time.time() < deadline and not ((out / "_state").exists() and ledger_rows(out)):
        time.sleep(0.2)
    hosts = {a["Address"]["NodeID"] for a in actor_table().values()
             if a["State"] == "ALIVE" and a["ActorClassName"] == "MapWorker(MapBatches(InstructionStage))"}
    workers = sorted(cluster.worker_nodes, key=lambda n: n.node_id not in hosts)
    victim = workers[0]
    removed.update(node_id=victim.node_id, actors=_actors_on(victim.node_id), committed=len(ledger_rows(out)))
    log(f"removing worker node {victim.node_id[:8]} running {removed['actors']}")
    cluster.remove_node(victim)
    log("removed")


def main(out_dir: str) -> None:
    out = Path(out_dir)
    cluster = Cluster(initialize_head=True, head_node_args={**NODE_ARGS, "include_dashboard": False})
    log("head started")
    try:
        ray.init(address=cluster.address, log_to_driver=False,
                 runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
        # All nodes share this machine's ports: no HTTP proxies (synthesis calls the deployment by handle).
        serve.start(proxy_location="Disabled")
        llm = LLMServingConfig()
        start_llm_service(llm)  # the head is the only node yet: the replica lands there
        log("LLM replica running on the head")
        for _ in range(2):
            cluster.add_node(**NODE_ARGS)
        cluster.wait_for_nodes()
        log("two worker nodes added")
        config = SynthesisConfig(**FAULT_SYNTHESIS)
        removed: dict = {}
        killer = threading.Thread(target=remove_instruction_node, args=(cluster, out, removed), daemon=True)
        killer.start()
        report = run_synthesis(config, SynthesisInputs(corpus=CorpusConfig(), llm=llm, index=IndexConfig()), out,
                               progress=log)
        killer.join(timeout=60)
        batch_sizes = serve.get_deployment_handle(llm.deployment_name, llm.app_name).stats.remote().result()
        log(f"replica batch sizes: {batch_sizes['batch_sizes']}")
        replica_nodes = sorted(a["Address"]["NodeID"] for a in actor_table().values()
                               if a["State"] == "ALIVE" and a["ActorClassName"].startswith("ServeReplica:"))
        result = {"expected": NUM_SAMPLES, "kept": committed_sample_ids(out),
                  "ledger": [(r["sample_id"], r["drop_reason"]) for r in ledger_rows(out)],
                  "removed": removed, "head": cluster.head_node.node_id, "replica_nodes": replica_nodes,
                  "alive_nodes": sum(n["Alive"] for n in ray.nodes()), "report_total": report["samples"]["total"]}
        print("RESULT " + json.dumps(result), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
