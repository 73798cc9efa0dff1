"""After the schedule: the deposit holder's balance at the last block is recorded (ether left
locked), and it is exactly what the books say it holds; `schedule.settle` is in the schema."""

from __future__ import annotations

import pyarrow.parquet as pq

from orchestrator.run import Run
from orchestrator.scenario import load_scenario_text

SCENARIO = """
name: settle
seed: 8
chain: {{mining: driven, block_time: 2s, gas_limit: 30M}}
dataset: {{samples: 240, features: 80, avg_length: 6}}
incentive: {{cost_weight: 1e12, refund_wait: 1h, owner_claim_wait: 2h, any_address_claim_wait: 3h}}
agents:
  - {{policy: honest, count: 3, funding: 1 ether, samples_per_agent: 5, rate: 0.5/s,
     params: {{recheck_s: 1800, give_up_s: 7200}}}}
  - {{policy: adversarial, name: flipper, count: 2, funding: 1 ether, samples_per_agent: 5, rate: 0.5/s,
     params: {{attack: label_flip, budget: 0.5 ether}}}}
schedule: {{duration: 40 blocks, settle: {settle}, settle_max_blocks: 300}}
evaluation: {{every: 10 blocks, spot_checks: 1}}
outputs: {{progress: false}}
telemetry: {{mqtt: none}}
"""


def test_settle_fields_parse():
    on = load_scenario_text(SCENARIO.format(settle="true"), "s.yaml")
    off = load_scenario_text(SCENARIO.format(settle="false"), "s.yaml")
    assert on.schedule.settle and not off.schedule.settle and on.schedule.settle_max_blocks == 300
    assert load_scenario_text(SCENARIO.format(settle="true").replace(", settle: true, settle_max_blocks: 300", ""),
                              "s.yaml").schedule.settle


def test_locked_ether_is_the_trainers_balance_and_matches_the_books(tmp_path, ray_cluster):
    run = Run(load_scenario_text(SCENARIO.format(settle="true"), "s.yaml"), results_root=tmp_path, run_id="s",
              progress=False, report=False)
    run_dir = run.execute()
    state = run.state
    assert state.status == "completed", state.error
    assert run.result.state is state and run.result.system is not None
    contributions = pq.read_table(run_dir / "contributions.parquet").to_pydict()
    ledger = pq.read_table(run_dir / "ledger.parquet").to_pydict()
    paid_out = sum(int(r) for a, s, r in zip(ledger["action"], ledger["status"], ledger["received"])
                   if a in ("refund", "report") and s == "included")
    deposits = sum(int(d) for d in contributions["deposit"])
    assert deposits > 0
    # What the trainer still holds is every deposit minus every refund and take, to the wei.
    assert state.trainer_balance_end == deposits - paid_out
    assert state.ended_because.startswith(("all agents finished", "duration"))
