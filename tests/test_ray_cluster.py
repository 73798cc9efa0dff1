"""Scale-out: a run joins an existing two-node Ray cluster on this machine and its shards run on both
nodes. The cluster is Ray's own multi-raylet test cluster (a head and a worker, separate raylet
processes) in a private RAY_TMPDIR, so no other Ray on the machine can join it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from orchestrator.run import Run
from orchestrator.scenario import load_scenario_text

SCENARIO = """
name: cluster
seed: 5
chain: {mining: driven, block_time: 2s}
dataset: {name: synthetic_sparse, samples: 200, features: 100, avg_length: 6}
incentive: {cost_weight: 1e12, refund_wait: 1h, owner_claim_wait: 2h, any_address_claim_wait: 3h}
agents:
  - {policy: honest, count: 4, funding: 1 ether, samples_per_agent: 4, rate: 1/s,
     params: {recheck_s: 1800, give_up_s: 7200}}
schedule: {duration: 60 blocks, max_wall_time: 2m}
evaluation: {every: 10 blocks, spot_checks: 2}
outputs: {progress: false}
"""


@pytest.fixture()
def two_node_cluster(monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    # Not under pytest's tmp_path: Ray's Unix sockets live under RAY_TMPDIR and a socket path is
    # limited to 107 bytes, which pytest-xdist's deeper tmp_path (.../popen-gw0/...) exceeds.
    private = Path(tempfile.mkdtemp(prefix="rc-"))
    monkeypatch.setenv("RAY_TMPDIR", str(private))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(private, ignore_errors=True)


def test_run_joins_a_two_node_cluster_and_uses_both(tmp_path: Path, two_node_cluster):
    import ray

    scenario = load_scenario_text(SCENARIO, "cluster.yaml")
    run_dir = Run(scenario, results_root=tmp_path, run_id="c", progress=False,
                  ray_address=two_node_cluster.address).execute()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed", summary["error"]
    shards = summary["shards"]
    # One shard per cluster CPU (one on each node), placed on two different raylets.
    assert len(shards) == 2
    nodes = {s["ray_node"] for s in shards}
    assert len(nodes) == 2 and None not in nodes
    assert summary["transactions"]["all_final"]
    assert summary["transactions"]["by_action"]["add"].get("included") == 16  # 4 agents x 4 samples
    assert summary["reconciliation"]["ok"] and summary["reconciliation"]["agents"] == 4
    # The run joined the cluster rather than starting its own Ray, and left it running for its owner.
    assert not ray.is_initialized()
    assert len([n for n in two_node_cluster.list_all_nodes()]) == 2
    assert os.environ["RAY_TMPDIR"] in str(two_node_cluster.head_node.get_session_dir_path())
