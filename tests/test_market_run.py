"""A prediction-market round as a scenario: participants stake through their shards, the round is
settled on chain, everyone collects, and the books balance."""

from __future__ import annotations

import json

from orchestrator.run import Run
from orchestrator.scenario import load_scenario_text

SCENARIO = """
name: market-test
seed: 9
chain: {mining: driven, block_time: 12s}
dataset: {samples: 800, features: 300, avg_length: 10}
incentive: {type: prediction_market, bounty: 1 ether, min_stake: 0.01 ether, portions: 3, min_contributions: 4}
agents:
  - {policy: honest, count: 4, funding: 1 ether, samples_per_agent: 4, rate: 0.05/s}
  - {policy: adversarial, name: flipper, count: 2, funding: 1 ether, samples_per_agent: 4, rate: 0.05/s,
     params: {attack: label_flip}}
schedule: {duration: 40 blocks}
evaluation: {every: 20 blocks, spot_checks: 1}
outputs: {progress: false}
telemetry: {mqtt: none}
"""


def test_market_round_pays_honest_and_charges_flippers(tmp_path):
    import ray

    started = not ray.is_initialized()
    run_dir = Run(load_scenario_text(SCENARIO, "market.yaml"), results_root=tmp_path, run_id="m",
                  progress=False).execute()
    if started and ray.is_initialized():
        ray.shutdown()
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "completed", s["error"]
    pm = s["prediction_market"]
    assert pm["phase_at_end"] == "COLLECT" and pm["passes"], pm
    adds = s["transactions"]["by_action"]["add"]["included"]
    assert s["transactions"]["by_action"]["collect"]["included"] == 6  # every participant withdrew
    inc = s["incentives"]
    assert int(inc["honest"]["deposits"]) + int(inc["flipper"]["deposits"]) == adds * 10**16
    # Stakes come back with the bounty's share to those who improved the model, and the
    # flippers' stakes go to the others: flippers lose, and every ether an honest agent staked
    # returns more than a flipper's. (Whether honest agents end above their stakes depends on the
    # hidden test portion, drawn from a block hash: with a bounty mostly returned to the provider
    # they may not.)
    assert int(inc["flipper"]["refunds"]) < int(inc["flipper"]["deposits"])
    honest_rate = int(inc["honest"]["refunds"]) / int(inc["honest"]["deposits"])
    flipper_rate = int(inc["flipper"]["refunds"]) / int(inc["flipper"]["deposits"])
    assert honest_rate > flipper_rate
    # Nothing is created or lost: stakes + bounty = what participants and the provider collected.
    paid_in = int(inc["honest"]["deposits"]) + int(inc["flipper"]["deposits"]) + 10**18
    paid_out = int(inc["honest"]["refunds"]) + int(inc["flipper"]["refunds"]) + int(pm["provider_collected"])
    assert paid_out == paid_in
    assert s["reconciliation"]["ok"]
