"""The fee market under full blocks: the node's base fee follows EIP-1559 block by block, and the
monitor's check would flag any block where it does not."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from orchestrator.monitor import next_base_fee
from orchestrator.run import Run
from orchestrator.scenario import load_scenario_text

SCENARIO = """
name: full-blocks
seed: 8
chain: {mining: driven, block_time: 12s, gas_limit: 2M, base_fee: 1 gwei}
dataset: {samples: 600, features: 200, avg_length: 10}
incentive: {cost_weight: 1e12, refund_wait: 1h, owner_claim_wait: 2h, any_address_claim_wait: 3h}
agents:
  - {policy: honest, count: 8, funding: 2 ether, samples_per_agent: 25, rate: 1/s, arrival: constant,
     params: {max_in_flight: 6}}
  - {policy: adversarial, name: spammer, count: 1, funding: 5 ether, samples_per_agent: 1,
     params: {attack: spam, spam_indices: 300, spam_per_block: 4, budget: 1 ether, max_in_flight: 8}}
schedule: {duration: 40 blocks}
evaluation: {every: 20 blocks, spot_checks: 1}
outputs: {progress: false}
telemetry: {mqtt: none}
"""


def test_base_fee_follows_eip1559_under_full_blocks(tmp_path):
    import ray

    started = not ray.is_initialized()
    run_dir = Run(load_scenario_text(SCENARIO, "full.yaml"), results_root=tmp_path, run_id="f",
                  progress=False).execute()
    if started and ray.is_initialized():
        ray.shutdown()
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "completed", s["error"]
    b = pq.read_table(run_dir / "blocks.parquet").to_pydict()
    fills = [u / lim for u, lim in zip(b["gas_used"], b["gas_limit"])]
    full = sum(f > 0.5 for f in fills)
    assert full >= 10, f"only {full} blocks above target: not congested"
    assert max(int(x) for x in b["base_fee"]) > 2 * 10**9  # the fee climbed
    # Recompute the rule independently of the monitor: every child's base fee from its parent.
    for i in range(1, len(b["number"])):
        assert b["number"][i] == b["number"][i - 1] + 1
        assert int(b["base_fee"][i]) == next_base_fee(int(b["base_fee"][i - 1]), b["gas_used"][i - 1],
                                                      b["gas_limit"][i - 1])
    assert s["base_fee"]["eip1559_deviations"] == 0
    assert s["reconciliation"]["ok"]
    # Eight honest agents with 12 arrivals a block and room for 6 in flight: the run says so once
    # (each agent's shard passes the text on once; the run keeps one copy), not once per agent.
    unmet = [w for w in s["warnings"] if w.startswith("arrival rate cannot be met")]
    assert len(unmet) == 1 and "constant arrivals at 1/s (load 1) on 12 s blocks" in unmet[0], s["warnings"]
