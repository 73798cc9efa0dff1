"""The node process dies mid-run: the orchestrator restarts it from its last state dump, shards undo
what they read from the lost blocks and re-broadcast what the node no longer knows, and the run
completes with every agent's ledger reconciled to the wei against the restored chain."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

from orchestrator.run import Run
from orchestrator.scenario import load_scenario_text

SCENARIO = """
name: crash-{mode}
seed: 17
chain: {{mining: {mode}, block_time: {block_time}, checkpoint_every: 10 blocks}}
dataset: {{name: synthetic_sparse, samples: 300, features: 200, avg_length: 8}}
incentive: {{cost_weight: 1e12, refund_wait: 1h, owner_claim_wait: 2h, any_address_claim_wait: 3h}}
agents:
  - {{policy: honest, count: 6, funding: 1 ether, samples_per_agent: {samples}, rate: 0.5/s,
     params: {{recheck_s: 1800, give_up_s: 7200}}}}
schedule: {{duration: {duration} blocks, max_wall_time: 3m, chaos: [{chaos}]}}
evaluation: {{every: 5 blocks, spot_checks: 2}}
outputs: {{progress: false}}
"""


def _check_recovered_run(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed", summary["error"]
    restarts = summary["chain"]["node_restarts"]
    assert len(restarts) == 1
    r = restarts[0]
    # The dump was older than the crash: blocks were lost and had to be redone.
    assert r["lost_head"] >= r["lost_from_block"]
    assert r["undone"] + r["resent"] + r["refused"] > 0
    assert summary["chain"]["node_checkpoints"]["count"] >= 2
    tx = summary["transactions"]
    assert tx["all_final"]
    assert summary["reconciliation"]["ok"], summary["reconciliation"]["mismatches"]
    assert summary["reconciliation"]["agents"] == 6
    led = pq.read_table(run_dir / "ledger.parquet").to_pydict()
    assert len(set(led["tx_hash"])) == len(led["tx_hash"])  # no transaction recorded twice
    # The restored chain's AddData events (read from the node at the end) are exactly the ledger's
    # included adds: nothing lost with the node is counted, nothing re-broadcast is counted twice.
    on_chain = pq.read_table(run_dir / "contributions.parquet").to_pydict()["tx_hash"]
    included_adds = [h for h, a, st in zip(led["tx_hash"], led["action"], led["status"])
                     if a == "add" and st == "included"]
    assert sorted(on_chain) == sorted(included_adds)
    assert not (run_dir / "node_state.json.gz").exists()
    return summary


def test_kill_node_chaos_restarts_from_the_dump_and_reconciles(tmp_path: Path, ray_cluster):
    text = SCENARIO.format(mode="driven", block_time="2s", duration=120,
                           chaos="{at: 25, event: kill_node}", samples=30)
    scenario = load_scenario_text(text, "crash.yaml")
    run = Run(scenario, results_root=tmp_path, run_id="k", progress=False)
    run_dir = run.execute()
    summary = _check_recovered_run(run_dir)
    r = summary["chain"]["node_restarts"][0]
    # Dumps every 10 blocks from the start: the kill at offset 25 lost the blocks after offset 20.
    start = summary["chain"]["start_block"]
    assert r["lost_from_block"] == start + 21
    assert r["lost_head"] == start + 25
    assert any(e["event"] == "kill_node" for e in summary["chain"]["chaos_events"])
    led = pq.read_table(run_dir / "ledger.parquet").to_pydict()
    # Every contribution ends added on the restored chain (re-broadcast, not lost), and the ledger's
    # included transactions are exactly the agents' transactions in the restored blocks.
    adds = [s for s, a in zip(led["status"], led["action"]) if a == "add"]
    assert adds.count("included") == 180, dict((s, adds.count(s)) for s in set(adds))


def test_node_killed_from_outside_during_interval_mining(tmp_path: Path, ray_cluster):
    text = SCENARIO.format(mode="interval", block_time="1s", duration=60, chaos="", samples=10)
    scenario = load_scenario_text(text, "crash.yaml")
    run = Run(scenario, results_root=tmp_path, run_id="x", progress=False)
    killed: dict[str, int] = {}

    def killer() -> None:
        # Kill the node 13 blocks into the loop: after its second dump, with adds in flight.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if run.monitor is not None and run.node is not None and run.node.proc is not None \
                    and run.state.start_block >= 0 and run.monitor.last >= run.state.start_block + 13:
                killed["pid"] = run.node.proc.pid
                killed["at"] = run.monitor.last
                os.kill(run.node.proc.pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    run_dir = run.execute()
    t.join(timeout=5)
    assert killed, "the node was never killed"
    summary = _check_recovered_run(run_dir)
    assert summary["transactions"]["by_action"]["add"].get("included") == 60


def test_killed_shard_actor_is_replaced_from_its_snapshot_and_the_chain(tmp_path: Path, ray_cluster):
    text = SCENARIO.format(mode="driven", block_time="2s", duration=120,
                           chaos="{at: 25, event: kill_shard, shard: 1}", samples=30)
    scenario = load_scenario_text(text, "crash.yaml")
    run_dir = Run(scenario, results_root=tmp_path, run_id="s", progress=False).execute()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed", summary["error"]
    restarts = summary["chain"]["shard_restarts"]
    assert len(restarts) == 1 and restarts[0]["shard"] == 1
    # Its agents had sent transactions after the snapshot (offset 20): found again on chain.
    assert restarts[0]["adopted"] > 0 and restarts[0]["contributions"] > 0
    assert summary["transactions"]["all_final"]
    assert summary["reconciliation"]["ok"], summary["reconciliation"]["mismatches"]
    assert summary["reconciliation"]["agents"] == 6
    led = pq.read_table(run_dir / "ledger.parquet").to_pydict()
    assert len(set(led["tx_hash"])) == len(led["tx_hash"])
    contrib = pq.read_table(run_dir / "contributions.parquet").to_pydict()
    # Every sample contributed exactly once: none lost with the actor, none sent again after it.
    pairs = list(zip(contrib["author"], map(tuple, contrib["data"])))
    assert len(pairs) == len(set(pairs)) == 180
    included_adds = [h for h, a, st in zip(led["tx_hash"], led["action"], led["status"])
                     if a == "add" and st == "included"]
    assert sorted(contrib["tx_hash"]) == sorted(included_adds)
