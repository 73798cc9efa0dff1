"""Whole runs on a managed Hardhat node: the shipped scenarios' short versions (driven where the
scenario is driven: Hardhat mines with a given timestamp), and a shard actor killed mid-run whose
replacement adopts from blocks and the pending block (Hardhat has no txpool methods). Every run
must reconcile the ledger with the chain to the wei."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from orchestrator.run import Run
from orchestrator.scenario import ScenarioError, load_scenario_text

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def _short(name: str, duration: int, **chain: Any) -> str:
    """The shipped scenario on Hardhat, scaled down: fewer agents and samples, fewer blocks."""
    doc = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    doc["chain"] = {**doc.get("chain", {}), "node": "hardhat", **chain}
    doc["dataset"]["samples"] = min(doc["dataset"].get("samples", 600), 600)
    for g in doc["agents"]:
        g["count"] = max(1, g["count"] // 4)
        g["samples_per_agent"] = min(g.get("samples_per_agent", 10), 10)
    doc["schedule"] = {**doc["schedule"], "duration": f"{duration} blocks", "max_wall_time": "4m"}
    # No counterfactual baseline: it is a second whole run, and anvil's tests cover it.
    doc["evaluation"] = {k: v for k, v in doc.get("evaluation", {}).items() if k != "baseline"} | {"every": "10 blocks"}
    doc["outputs"] = {"progress": False}
    return yaml.safe_dump(doc, sort_keys=False)


def _run(text: str, tmp_path: Path, run_id: str) -> tuple[Path, dict[str, Any]]:
    scenario = load_scenario_text(text, f"{run_id}.yaml")
    run_dir = Run(scenario, results_root=tmp_path, run_id=run_id, progress=False).execute()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed", summary["error"]
    assert summary["node"]["kind"] == "hardhat" and summary["node"]["managed"]
    assert (run_dir / "hardhat.log").exists() and (run_dir / "hardhat.config.js").exists()
    assert summary["transactions"]["all_final"]
    assert summary["reconciliation"]["ok"], summary["reconciliation"]["mismatches"]
    assert summary["reconciliation"]["agents"] == sum(g["count"] for g in yaml.safe_load(text)["agents"])
    return run_dir, summary


def _included_adds(run_dir: Path) -> list[str]:
    led = pq.read_table(run_dir / "ledger.parquet").to_pydict()
    assert len(set(led["tx_hash"])) == len(led["tx_hash"])
    return [h for h, a, st in zip(led["tx_hash"], led["action"], led["status"]) if a == "add" and st == "included"]


@pytest.mark.parametrize("name,duration", [("quickstart", 30), ("label_flip", 60), ("karma_farm", 60)])
def test_shipped_scenario_short_on_hardhat(name, duration, tmp_path, ray_cluster):
    run_dir, summary = _run(_short(name, duration), tmp_path, name)
    adds = _included_adds(run_dir)
    assert adds, "no contribution reached the chain"
    on_chain = pq.read_table(run_dir / "contributions.parquet").to_pydict()["tx_hash"]
    assert sorted(on_chain) == sorted(adds)
    if yaml.safe_load(_short(name, duration))["chain"]["mining"] == "driven":
        blocks = pq.read_table(run_dir / "blocks.parquet").to_pydict()
        gaps = [b - a for a, b in zip(blocks["timestamp"], blocks["timestamp"][1:])]
        # Every block mined by the run at the timestamp it chose: block_time, or an idle-time skip.
        warps = {w["to"] - w["from"] for w in summary["chain"]["time_warps"]}
        assert gaps.count(12) > 0 and set(gaps) <= {12} | warps, (set(gaps), warps)


def test_prediction_market_short_on_hardhat(tmp_path, ray_cluster):
    run_dir, summary = _run(_short("prediction_market", 60), tmp_path, "market")
    pm = summary["prediction_market"]
    assert pm["phase_at_end"] == "COLLECT" and pm["passes"], pm  # the whole round ran on Hardhat
    adds = summary["transactions"]["by_action"]["add"]["included"]
    assert adds == len(_included_adds(run_dir)) > 0
    inc = summary["incentives"]
    # Nothing is created or lost: stakes + bounty = what participants and the provider collected.
    paid_in = sum(int(g["deposits"]) for g in inc.values()) + 2 * 10**18
    paid_out = sum(int(g["refunds"]) for g in inc.values()) + int(pm["provider_collected"])
    assert paid_out == paid_in


def test_killed_shard_on_hardhat_adopts_from_blocks_and_the_pending_block(tmp_path, ray_cluster):
    text = """
name: crash-hardhat
seed: 17
chain: {node: hardhat, mining: driven, block_time: 2s, checkpoint_every: 10 blocks}
dataset: {name: synthetic_sparse, samples: 300, features: 200, avg_length: 8}
incentive: {cost_weight: 1e12, refund_wait: 1h, owner_claim_wait: 2h, any_address_claim_wait: 3h}
agents:
  - {policy: honest, count: 6, funding: 1 ether, samples_per_agent: 20, rate: 0.5/s,
     params: {recheck_s: 1800, give_up_s: 7200}}
schedule: {duration: 100 blocks, max_wall_time: 3m, chaos: [{at: 25, event: kill_shard, shard: 1}]}
evaluation: {every: 10 blocks, spot_checks: 2}
outputs: {progress: false}
"""
    run_dir, summary = _run(text, tmp_path, "crash")
    restarts = summary["chain"]["shard_restarts"]
    assert len(restarts) == 1 and restarts[0]["shard"] == 1
    assert restarts[0]["adopted"] > 0
    assert restarts[0]["pool_source"] == "pending_block" and "no txpool methods" in restarts[0]["note"]
    checkpoints = summary["chain"]["node_checkpoints"]
    assert "count" not in checkpoints and checkpoints["shard_snapshots"] >= 2  # no node dumps on Hardhat
    contrib = pq.read_table(run_dir / "contributions.parquet").to_pydict()
    pairs = list(zip(contrib["author"], map(tuple, contrib["data"])))
    assert len(pairs) == len(set(pairs)) == 120  # every sample once: none lost, none sent twice
    assert sorted(contrib["tx_hash"]) == sorted(_included_adds(run_dir))


def test_scenario_asking_what_hardhat_cannot_do_is_refused():
    text = _short("chaos", 40)
    with pytest.raises(ScenarioError) as e:
        load_scenario_text(text, "chaos.yaml")
    msg = str(e.value)
    assert "chain.node 'hardhat'" in msg and "'drop_pending' needs the node capability 'txpool'" in msg
    assert "'reorg' needs the node capability 'reorg'" in msg
    assert "base_fee_shock" not in msg  # Hardhat sets the next base fee: that event is allowed


def test_chaos_hardhat_can_do_is_observed_on_chain(tmp_path, ray_cluster):
    """The chaos events Hardhat's capabilities allow, each seen on its chain, and the books balance."""
    text = """
name: chaos-hardhat
seed: 4
chain: {node: hardhat, mining: driven, block_time: 2s, gas_limit: 30M}
dataset: {samples: 400, features: 100, avg_length: 6}
incentive: {cost_weight: 1e12, refund_wait: 1h, owner_claim_wait: 2h, any_address_claim_wait: 3h}
agents:
  - {policy: honest, count: 6, funding: 1 ether, samples_per_agent: 20, rate: 0.25/s, arrival: constant,
     params: {max_in_flight: 3, recheck_s: 1800, give_up_s: 7200}}
schedule:
  duration: 40 blocks
  chaos:
    - {at: 4 blocks, event: base_fee_shock, factor: 10}
    - {at: 6 blocks, event: gas_limit, gas_limit: 20M}
    - {at: 8 blocks, event: block_time, block_time: 5s}
    - {at: 12 blocks, event: pause_mining, blocks: 3}
evaluation: {every: 5 blocks, spot_checks: 2}
outputs: {progress: false}
"""
    run_dir, s = _run(text, tmp_path, "chaos")
    events = {e["event"]: e for e in s["chain"]["chaos_events"]}
    assert set(events) >= {"base_fee_shock", "gas_limit", "block_time", "pause_mining", "resume_mining"}
    blocks = pq.read_table(run_dir / "blocks.parquet").to_pydict()
    by_number = {n: i for i, n in enumerate(blocks["number"])}
    shock = events["base_fee_shock"]
    assert int(blocks["base_fee"][by_number[shock["block"] + 1]]) == shock["base_fee"]
    gl = events["gas_limit"]
    assert all(blocks["gas_limit"][by_number[n]] == 20_000_000 for n in blocks["number"] if n > gl["block"])
    bt = events["block_time"]
    later = [n for n in blocks["number"] if n > bt["block"] + 1 and n - 1 in by_number]
    gaps = {blocks["timestamp"][by_number[n]] - blocks["timestamp"][by_number[n - 1]] for n in later}
    assert 5 in gaps and 2 not in gaps - {max(gaps)}
    assert events["resume_mining"]["block"] == events["pause_mining"]["block"]  # nothing mined while paused
