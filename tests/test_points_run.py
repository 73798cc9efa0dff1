"""The points mechanism in a full run: karma seekers out-score honest contributors."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from orchestrator.run import Run
from orchestrator.scenario import load_scenario_text

SCENARIO = """
name: karma-test
seed: 2
chain: {mining: driven, block_time: 12s}
dataset: {samples: 600, features: 200, avg_length: 8}
incentive: {type: points, refund_wait: 10m, owner_claim_wait: 10m, any_address_claim_wait: 10m}
agents:
  - {policy: honest, count: 3, funding: 1 ether, samples_per_agent: 10, rate: 0.1/s,
     params: {recheck_s: 10m, give_up_s: 1h}}
  - {policy: karma_seeker, count: 3, funding: 1 ether, samples_per_agent: 10, rate: 0.1/s,
     params: {near_duplicates: 2}}
schedule: {duration: 300 blocks}
evaluation: {every: 50 blocks, spot_checks: 1}
outputs: {progress: false}
telemetry: {mqtt: none}
"""


def test_karma_seekers_gain_points_faster_than_honest_agents(tmp_path):
    import ray

    started = not ray.is_initialized()
    run_dir = Run(load_scenario_text(SCENARIO, "karma.yaml"), results_root=tmp_path, run_id="k",
                  progress=False).execute()
    if started and ray.is_initialized():
        ray.shutdown()
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "completed", s["error"]
    inc = s["incentives"]
    assert int(inc["honest"]["deposits"]) == 0 and int(inc["karma_seeker"]["deposits"]) == 0  # no deposits
    assert inc["karma_seeker"]["points"] > inc["honest"]["points"] > 0
    # Points are the chain's own counters: every validation the ledger saw is one point on chain.
    agents = pq.read_table(run_dir / "agents.parquet").to_pydict()
    led = pq.read_table(run_dir / "ledger.parquet").to_pydict()
    for addr, pts in zip(agents["address"], agents["points"]):
        validated = sum(1 for snd, a, st in zip(led["sender"], led["action"], led["status"])
                        if snd == addr and a == "refund" and st == "included")
        assert pts == validated
    assert s["reconciliation"]["ok"]
