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


# Agents still adding when the duration ends (30 samples at 0.05/s each, 60 s of blocks): what they
# added is only claimable an hour and more later, after the schedule.
UNFINISHED = """
name: settle-late
seed: 9
chain: {{mining: driven, block_time: 2s, gas_limit: 30M}}
dataset: {{samples: 400, features: 80, avg_length: 6}}
incentive: {{cost_weight: 1e12, refund_wait: 1h, owner_claim_wait: 2h, any_address_claim_wait: 3h}}
agents:
  - {{policy: honest, count: 3, funding: 1 ether, samples_per_agent: 30, rate: 0.1/s, arrival: constant}}
  - {{policy: adversarial, name: flipper, count: 1, funding: 1 ether, samples_per_agent: 30, rate: 0.1/s,
     arrival: constant, params: {{attack: label_flip, budget: 0.5 ether}}}}
schedule: {{duration: 30 blocks, settle: {settle}, settle_max_blocks: 400}}
evaluation: {{every: 10 blocks, spot_checks: 1}}
outputs: {{progress: false}}
telemetry: {{mqtt: none}}
"""


def _run(tmp_path, settle: str) -> tuple[Run, dict]:
    run = Run(load_scenario_text(UNFINISHED.format(settle=settle), "late.yaml"), results_root=tmp_path,
              run_id=f"settle-{settle}", progress=False, report=False)
    run_dir = run.execute()
    assert run.state.status == "completed", run.state.error
    return run, pq.read_table(run_dir / "ledger.parquet").to_pydict()


def test_settlement_claims_after_the_schedule_and_frees_deposits(tmp_path, ray_cluster):
    settled, ledger = _run(tmp_path, "true")
    stopped, ledger_off = _run(tmp_path, "false")
    end = settled.state.start_block + 30
    assert settled.state.ended_because == "duration" and settled.state.settle_blocks > 0
    late_claims = [b for a, s, b in zip(ledger["action"], ledger["status"], ledger["submitted_block"])
                   if a in ("refund", "report") and s == "included" and b > end]
    assert late_claims, "no claim was made after the schedule"
    assert settled.state.warps and settled.state.warps[-1]["block"] > end  # idle time skipped while settling
    assert not [b for a, b in zip(ledger_off["action"], ledger_off["submitted_block"])
                if a in ("refund", "report") and b > stopped.state.start_block + 30 + 1]
    assert stopped.state.settle_blocks == 0
    # Settling freed deposits the run without it left locked.
    assert settled.state.trainer_balance_end < stopped.state.trainer_balance_end
