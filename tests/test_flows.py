"""Where each deposit went, on the real node: a driven run where a greedy taker
take label flippers' deposits. The per-contribution flows add up to what the trainer holds at the end
(read from the chain at the run's last block), the group x group matrix shows who took from whom, the
corruption is attributed to the non-honest roles, and the report shows all of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from orchestrator import metrics
from orchestrator.report import write_report
from orchestrator.run import Run
from orchestrator.scenario import load_scenario_text

SCENARIO = """
name: flows-test
seed: 11
chain: {mining: driven, block_time: 2s, gas_limit: 30_000_000, base_fee: 1 gwei}
dataset: {name: synthetic_sparse, samples: 300, features: 200, avg_length: 8, noise: 0.02}
incentive: {cost_weight: 1e12, refund_wait: 1h, owner_claim_wait: 2h, any_address_claim_wait: 3h}
agents:
  - {policy: honest, count: 3, funding: 1 ether, samples_per_agent: 6, rate: 1/s,
     params: {recheck_s: 1800, give_up_s: 7200}}
  - {policy: adversarial, name: flipper, count: 2, funding: 1 ether, samples_per_agent: 6, rate: 1/s,
     params: {attack: label_flip, budget: 0.5 ether}}
  - {policy: greedy, count: 1, funding: 1 ether, samples_per_agent: 3, rate: 0.2/s,
     params: {value_per_valid: 0.01 ether}}
schedule: {duration: 150 blocks, max_wall_time: 3m}
evaluation: {every: 10 blocks, baseline: counterfactual}
outputs: {progress: false}
telemetry: {mqtt: none}
"""


@pytest.fixture(scope="module")
def flows_run(tmp_path_factory, ray_cluster) -> tuple[Path, int, dict[str, Any]]:
    root = tmp_path_factory.mktemp("flows-runs")
    d = Run(load_scenario_text(SCENARIO, "flows-test.yaml"), results_root=root, run_id="f", progress=False).execute()
    summary = json.loads((d / "summary.json").read_text())
    assert summary["status"] == "completed", summary["error"]
    # The run reads the trainer's balance from the chain at its last block: the independent figure
    # the per-contribution flows (built from the ledger and the AddData events) must equal.
    balance = summary["settlement"]["trainer_balance_end"]
    assert balance is not None
    return d, int(balance["wei"]), summary


def test_locked_ether_equals_the_trainers_balance(flows_run):
    d, balance, s = flows_run
    st = s["settlement"]
    assert int(st["locked"]["wei"]) == balance
    flows = pq.read_table(d / "contribution_flows.parquet").to_pylist()
    assert len(flows) == st["contributions"] == s["transactions"]["by_action"]["add"].get("included", 0)
    for c in flows:
        assert int(c["deposit"]) == int(c["refunded"]) + int(c["taken"]) + int(c["locked"]), c
    assert sum(int(c["locked"]) for c in flows) == balance
    assert st["attributed"] is True and st["unattributed_claims"] == 0
    assert st["ok"] is True
    # Each group's own locked deposits sum to the total, and are part of its loss.
    assert sum(int(g["locked"]) for g in s["incentives"].values()) == balance


def test_matrix_shows_who_took_from_whom(flows_run):
    d, _, s = flows_run
    m = s["settlement"]["taken_matrix"]
    groups = m["groups"]
    taken = {(t, a): int(m["wei"][i][j]) for i, t in enumerate(groups) for j, a in enumerate(groups)}
    # Someone took flippers' deposits, and the matrix agrees with the ledger's takes per group.
    assert sum(w for (t, a), w in taken.items() if a == "flipper" and t != "flipper") > 0
    for g, v in s["incentives"].items():
        row = sum(w for (t, _), w in taken.items() if t == g)
        assert row <= int(v["takes"])  # takes without a contribution named would be unattributed
    assert sum(taken.values()) == sum(int(v["takes"]) for v in s["incentives"].values())
    html = write_report(d).read_text()
    assert 'id="money"' in html and "Who took from whom" in html
    cells = {(t, a) for (t, a), w in taken.items() if w}
    for t, a in cells:
        assert f'data-taker="{t}" data-author="{a}"' in html


def test_summary_explains_itself(flows_run):
    d, _, s = flows_run
    assert s["dataset"]["label_noise"] == 0.02
    rule = s["deposit_rule"]
    assert int(rule["same_block_max"]["wei"]) == 10**12 * 3600
    assert int(rule["deposit_max"]["wei"]) <= int(rule["same_block_max"]["wei"])
    for g in s["incentives"].values():
        assert g["per_agent"]["net_ether"] == pytest.approx(g["net_per_agent_ether"])
        assert g["distinct_contributions"]["distinct"] <= g["distinct_contributions"]["contributions"]
    # The honest group is in the baseline: its change against it is the difference of per-agent nets.
    base = json.loads((d / "baseline" / "summary.json").read_text())
    honest = s["incentives"]["honest"]
    assert honest["vs_baseline"]["net_per_agent_ether"] == pytest.approx(
        honest["net_per_agent_ether"] - base["incentives"]["honest"]["net_per_agent_ether"])
    assert s["incentives"]["flipper"]["vs_baseline"] is None
    # Corruption is shared by every non-honest role (attacker and opportunist here), by contributions.
    att = s["corruption"]["attribution"]
    assert set(att["by_group"]) == {"flipper", "greedy"}
    assert set(att["by_role"]) == {"attacker", "opportunist"}
    assert sum(v["share"] for v in att["by_group"].values()) == pytest.approx(1.0)
    assert sum(v["drop_pts"] for v in att["by_role"].values()) == pytest.approx(att["drop_pts"])
    # The registry's figures are the summary's, and the same function gives them again.
    assert s["metrics"] == metrics.compute(s)
    assert s["metrics"]["locked_ether"] == pytest.approx(int(s["settlement"]["locked"]["wei"]) / 1e18)
    html = write_report(d).read_text()
    for text in ("label noise", "same-block maximum deposit", "Distinct contributions per group",
                 "Profit and loss per group", "Ether left in the trainer"):
        assert text in html, text
