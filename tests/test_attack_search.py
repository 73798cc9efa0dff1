"""`dcai attack-search` on a reduced example: real runs on real nodes, searched by Ray Tune + Optuna."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.attack_search import Outcome, load_search, measure, pareto, read_summary, summary_figures, \
    trial_scenario
from orchestrator.attack_search_run import execute, run_search
from orchestrator.cli import main
from orchestrator.scenario import ScenarioError

ROOT = Path(__file__).resolve().parents[1]

CELLS = f"""
name: as-cells
base: {ROOT / 'scenarios' / 'label_flip.yaml'}
overrides:
  dataset: {{name: synthetic_sparse, samples: 800, features: 300, avg_length: 10, noise: 0.0,
            init_train_fraction: 0.08, test_fraction: 0.25}}
  agents.honest.count: 6
  agents.honest.samples_per_agent: 12
  agents.flipper.count: 4
  agents.flipper.rate: 0.05/s
  agents.flipper.samples_per_agent: 12
  agents.greedy.count: 1
  schedule: {{duration: 120 blocks, max_wall_time: 3m}}
  evaluation.every: 20 blocks
  telemetry.mqtt: none
grid:
  incentive.type: [stakeable]
seeds: [21]
shards: 1
"""

SEARCH = """
name: flip-small
sweep: cells.yaml
attacker: flipper
search:
  agents.flipper.count: {int: [1, 4]}
  agents.flipper.rate: {loguniform: [0.01, 0.05]}
target: {accuracy_drop_pts: 2}
trials: 4
parallel: 2
"""


def write(tmp: Path, search: str = SEARCH) -> Path:
    (tmp / "cells.yaml").write_text(CELLS)
    (tmp / "search.yaml").write_text(search)
    return tmp / "search.yaml"


def test_measure_and_frontier_rules() -> None:
    plan_target = load_target()
    base = {"accuracy_end": 0.9, "honest_net_ether": 1.0, "attacker_cost_ether": None}
    hit = measure({"accuracy_end": 0.85, "attacker_cost_ether": 0.4}, base, plan_target, "completed", "a")
    miss = measure({"accuracy_end": 0.89, "attacker_cost_ether": 0.1}, base, plan_target, "completed", "b")
    failed = measure({}, base, plan_target, "failed", "c")
    assert hit.reached and hit.score == pytest.approx(0.4) and hit.damage == pytest.approx(5.0)
    # A miss scores above every hit, a near miss below a far one, a failed run worst of all.
    assert not miss.reached and hit.score < miss.score < failed.score
    pts = [Outcome(1.0, 5.0, True, 1.0, "completed", "x"), Outcome(0.5, 6.0, True, 0.5, "completed", "y"),
           Outcome(0.2, 1.0, False, 2e6, "completed", "z"), Outcome(0.7, 5.5, True, 0.7, "completed", "w")]
    assert [p.run_id for p in pareto(pts)] == ["z", "y"]


def load_target():  # type: ignore[no-untyped-def]
    from orchestrator.attack_search import Target

    return Target(accuracy_drop_pts=2)


def test_bad_search_files_name_file_line_and_field(tmp_path: Path) -> None:
    bad = write(tmp_path, SEARCH.replace("agents.flipper.count: {int: [1, 4]}", "agents.honest.count: {int: [1, 4]}"))
    with pytest.raises(ScenarioError, match=r"search.yaml:6:3: search.agents.honest.count: only the attacker"):
        load_search(bad)
    bad = write(tmp_path, SEARCH.replace("{int: [1, 4]}", "{int: [4, 1]}"))
    with pytest.raises(ScenarioError, match=r"search.yaml:6:3: search\['agents.flipper.count'\]: the low bound"):
        load_search(bad)
    bad = write(tmp_path, SEARCH.replace("attacker: flipper", "attacker: greedy").replace("agents.flipper", "agents.greedy"))
    with pytest.raises(ScenarioError, match="search.yaml:4:1: attacker: group 'greedy' has role 'opportunist'.*role: attacker"):
        load_search(bad)
    bad = write(tmp_path, SEARCH.replace("{int: [1, 4]}", "{int: [1, 100000000]}"))
    with pytest.raises(ScenarioError, match=r"search.yaml:6:3: search.agents.flipper.count: value 100000000 breaks cell 'stakeable'"):
        load_search(bad)
    assert main(["attack-search", str(bad)]) == 2


@pytest.mark.timeout(900)
def test_search_beats_the_hand_written_attack_and_resumes(tmp_path: Path) -> None:
    plan = load_search(write(tmp_path))
    root = run_search(plan, out=tmp_path / "out", echo=lambda _m: None)
    doc = json.loads((root / "frontier.json").read_text())
    cell = doc["cells"][0]
    assert len(cell["trials"]) == 4 and all(t["status"] in ("completed", "stopped") for t in cell["trials"])
    # The hand-written attack of the base (4 flippers at 0.05/s), measured the same way.
    base_cell = plan.sweep.cells[0]
    status = execute(trial_scenario(base_cell.scenario, {}, 21), str(root / "runs"), "hand-written", False, 1.0)
    _, summary = read_summary(root / "runs" / "hand-written")
    hand = measure(summary_figures(summary or {}), cell["baselines"]["21"], plan.target, status, "hand-written")
    assert hand.reached, hand
    best = cell["best"]
    assert best is not None, "no searched attack reached the target"
    assert best["cost"]["mean"] <= hand.cost_ether + 1e-9
    assert doc["ranking"][0]["cell"] == "stakeable" and doc["ranking"][0]["rank"] == 1
    page = (root / "frontier.html").read_text()
    assert 'data-plot="frontier-stakeable"' in page and "report.html" in page
    # Resume: the finished trials are told to the sampler, not run again.
    lines = (root / "trials.jsonl").read_text().splitlines()
    run_search(plan, out=tmp_path / "out", echo=lambda _m: None)
    assert (root / "trials.jsonl").read_text().splitlines() == lines
