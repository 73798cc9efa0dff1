"""Early stopping of hopeless attack-search trials, the registry's figures, and the chain attacks in the
search space: unit rules, then real runs (a run stopped at a checkpoint; a search whose trials cannot beat
a profitable attack already found stop early and stay off the frontier)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import metrics
from orchestrator.attack_search import load_search, read_summary, summary_figures, trial_scenario
from orchestrator.attack_search_run import run_search
from orchestrator.attack_search_stop import STOPPED, BestCost, hopeless, run_watched
from orchestrator.scenario import ScenarioError

ROOT = Path(__file__).resolve().parents[1]
CELLS = f"""
name: stop-cells
base: {ROOT / 'scenarios' / 'label_flip.yaml'}
overrides:
  dataset: {{name: synthetic_sparse, samples: 600, features: 200, avg_length: 8, noise: 0.0,
            init_train_fraction: 0.1, test_fraction: 0.25}}
  agents.honest.count: 3
  agents.honest.samples_per_agent: 8
  agents.flipper.policy: chain_attack
  agents.flipper.count: 2
  agents.flipper.samples_per_agent: 8
  agents.greedy.count: 1
  schedule: {{duration: 80 blocks, max_wall_time: 3m}}
  evaluation.every: 10 blocks
  telemetry.mqtt: none
grid:
  incentive.type: [stakeable]
seeds: [21]
shards: 1
"""
SEARCH = """
name: stop-small
sweep: cells.yaml
attacker: flipper
search:
  agents.flipper.params.attack: {choice: [label_flip, slow_poison, sybil]}
  agents.flipper.params.identities: {int: [1, 3]}
  agents.flipper.params.budget: {uniform: [1, 4], unit: ether}
target: {accuracy_drop_pts: 2}
trials: 3
parallel: 2
early_stop: {every_blocks: 10, margin_ether: 0}
"""


def write(tmp: Path, search: str = SEARCH) -> Path:
    (tmp / "cells.yaml").write_text(CELLS)
    (tmp / "search.yaml").write_text(search)
    return tmp / "search.yaml"


def test_the_stop_rule_and_the_shared_best(tmp_path: Path) -> None:
    assert not hopeless(None, 1.0, 0.0) and not hopeless(5.0, None, 0.0)
    assert hopeless(1.2, 1.0, 0.0) and not hopeless(1.2, 1.0, 0.5)
    # A profitable best (negative cost) stops only trials that are out of pocket beyond the margin.
    assert not hopeless(0.0, -2.0, 0.0) and hopeless(0.1, -2.0, 0.0)
    best = BestCost(tmp_path / "best" / "c.json")
    assert best.get() is None
    assert best.offer(2.0) == 2.0 and best.offer(3.0) == 2.0 and best.offer(-1.0) == -1.0
    assert BestCost(tmp_path / "best" / "c.json").get() == -1.0  # another process sees it


def test_search_figures_are_the_registry_metrics() -> None:
    s = {"accuracy": {"end": 0.8}, "incentives": {
        "f": {"role": "attacker", "net": str(-3 * 10**17), "takes": str(10**17), "agents": 2},
        "h": {"role": "honest", "net": str(2 * 10**17), "agents": 4}}}
    got = summary_figures(s)
    assert got == {"accuracy_end": 0.8, "attacker_cost_ether": pytest.approx(0.3),
                   "attacker_takes_ether": pytest.approx(0.1), "honest_net_ether": pytest.approx(0.2)}
    assert got["attacker_cost_ether"] == metrics.REGISTRY["attacker_cost_ether"].value(s)


def test_identities_set_the_group_count_and_bad_kinds_are_refused(tmp_path: Path) -> None:
    plan = load_search(write(tmp_path))
    sc = trial_scenario(plan.sweep.cells[0].scenario, {"agents.flipper.params.identities": 3,
                                                       "agents.flipper.params.attack": "sybil"}, 21)
    group = next(g for g in sc.agents if g.name == "flipper")
    assert group.count == 3 and group.params["identities"] == 3
    assert plan.attacker_funding_cap_ether == pytest.approx(30.0)  # 3 wallets of 10 ether
    bad = write(tmp_path, SEARCH.replace("slow_poison, sybil", "slow_poison, sibyl"))
    with pytest.raises(ScenarioError, match="sibyl"):
        load_search(bad)


def test_a_watched_run_stops_at_its_checkpoint(tmp_path: Path) -> None:
    plan = load_search(write(tmp_path))
    sc = trial_scenario(plan.sweep.cells[0].scenario, {"agents.flipper.params.attack": "label_flip"}, 21)
    seen = []

    def checkpoint(point):  # type: ignore[no-untyped-def]
        seen.append(point)
        return point.cost_so_far_ether is not None and point.cost_so_far_ether > 0

    status, stopped = run_watched(sc, str(tmp_path / "runs"), "watched", 1.0, 10, checkpoint)
    assert status == STOPPED and stopped is seen[-1]
    run_status, summary = read_summary(tmp_path / "runs" / "watched")
    assert run_status == "interrupted" and summary is not None
    chain = summary["chain"]
    assert chain["end_block"] - chain["start_block"] <= stopped.block - chain["start_block"] + 2 < 80
    assert stopped.cost_so_far_ether > 0


def test_trials_that_cannot_beat_a_profitable_attack_stop_early(tmp_path: Path) -> None:
    plan = load_search(write(tmp_path))
    root = tmp_path / "out" / plan.name
    root.mkdir(parents=True)
    # A trial already found (resumed from the log) that reached the target at a profit of 5 ether:
    # every new trial is out of pocket at its first checkpoints, so none can beat it.
    found = {"cell": "stakeable", "config": {"agents.flipper.params.attack": "label_flip",
                                             "agents.flipper.params.identities": 2,
                                             "agents.flipper.params.budget": 2.0},
             "cost_ether": -5.0, "damage": 9.0, "reached": True, "score": -5.0, "status": "completed",
             "run_id": "stakeable-found", "accuracy_end": 0.5}
    (root / "trials.jsonl").write_text(json.dumps(found) + "\n")
    run_search(plan, out=tmp_path / "out", echo=lambda _m: None)
    rows = [json.loads(line) for line in (root / "trials.jsonl").read_text().splitlines()]
    new = rows[1:]
    assert len(new) == 2 and all(r["status"] == STOPPED for r in new), new
    assert all(r["cost_at_stop_ether"] > 0 and r["stopped_at_block"] > 0 for r in new)
    doc = json.loads((root / "frontier.json").read_text())
    runs = {run for p in doc["cells"][0]["frontier"] for run in p["runs"]}
    assert not runs & {r["run_id"] for r in new}  # a stopped trial is never a frontier point
