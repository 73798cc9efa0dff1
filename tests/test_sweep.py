"""Sweeps: three mechanisms x two seeds on real anvil nodes (one per run) as Ray tasks, the
aggregate with confidence intervals, the comparison report, resume, and sweep-file errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from scipy.stats import t as student_t

from orchestrator.cli import main as dcai
from orchestrator.sweep import RANKING, SweepError, load_sweep, run_sweep

# Tiny and driven (reproducible, no wall-clock waits): two honest agents and a label flipper.
BASE = """\
name: sweep-test
seed: 5
chain: {mining: driven, block_time: 12s, gas_limit: 30M}
dataset: {name: synthetic_sparse, samples: 300, features: 150, avg_length: 8, test_fraction: 0.2}
incentive: {refund_wait: 1h, owner_claim_wait: 2h, any_address_claim_wait: 3h,
            bounty: 1 ether, min_stake: 0.01 ether, portions: 2, min_contributions: 2}
agents:
  - {policy: honest, count: 2, funding: 2 ether, samples_per_agent: 3, rate: 0.2/s,
     params: {recheck_s: 1h, give_up_s: 2h}}
  - {policy: adversarial, name: flipper, count: 1, funding: 2 ether, samples_per_agent: 3, rate: 0.2/s,
     params: {attack: label_flip, budget: 1 ether}}
schedule: {duration: 20 blocks, max_wall_time: 2m}
evaluation: {every: 5 blocks, spot_checks: 1}
outputs: {progress: false}
telemetry: {mqtt: none}
"""

SWEEP = """\
name: mech
description: three mechanisms under one label-flip attack
base: base.yaml
overrides: {evaluation.spot_checks: 2}
grid:
  incentive.type: [stakeable, points, prediction_market]
seeds: 2
parallel: 2
run_reports: false   # each run's report.html costs seconds; the comparison page is the point here
"""
CELLS = ["stakeable", "points", "prediction_market"]
RUN_IDS = [f"{c}-s{s}" for c in CELLS for s in (5, 6)]


@pytest.fixture(scope="module")
def swept(tmp_path_factory, ray_cluster):
    root = tmp_path_factory.mktemp("sweep")
    (root / "base.yaml").write_text(BASE)
    (root / "sweep.yaml").write_text(SWEEP)
    lines: list[str] = []
    outcome = run_sweep(load_sweep(root / "sweep.yaml"), out=root / "out", echo=lines.append)
    return root, outcome, lines


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_sweep_runs_every_cell_and_seed(swept):
    root, outcome, lines = swept
    sweep_dir = root / "out" / "mech"
    assert outcome.sweep_dir == sweep_dir
    assert sorted(outcome.ran) == sorted(RUN_IDS) and outcome.skipped == []
    assert outcome.ok, [(r.run_id, r.status, r.error) for r in outcome.records]
    for run_id in RUN_IDS:
        cell, seed = run_id.rsplit("-s", 1)
        s = _summary(sweep_dir / "runs" / run_id)
        assert s["status"] == "completed", s["error"]
        scenario = json.loads((sweep_dir / "runs" / run_id / "scenario.json").read_text())
        assert scenario["incentive"]["type"] == cell and scenario["seed"] == int(seed)
        assert scenario["evaluation"]["spot_checks"] == 2  # the shared override reached every run
        assert s["accuracy"]["spot_check_mismatches"] == 0
        assert s["reconciliation"]["ok"]
        groups = s["incentives"]
        # The mechanisms really differ on chain: points takes no deposit, the others do; only the
        # market has a round with collections.
        deposits = sum(int(g["deposits"]) for g in groups.values())
        assert (deposits == 0) == (cell == "points")
        assert (s["prediction_market"] is not None) == (cell == "prediction_market")
    # The same seed gives every cell the same agents and data: the initial model is the same.
    start = {r.run_id: _summary(sweep_dir / "runs" / r.run_id)["accuracy"]["start"] for r in outcome.records}
    assert start["stakeable-s5"] == start["points-s5"]
    assert any("[6/6]" in line for line in lines)
    plan = json.loads((sweep_dir / "sweep.json").read_text())
    assert [c["id"] for c in plan["cells"]] == CELLS and plan["seeds"] == [5, 6]


def test_aggregate_has_confidence_intervals_from_the_runs(swept):
    root, outcome, _ = swept
    sweep_dir = root / "out" / "mech"
    runs = pq.read_table(sweep_dir / "runs.parquet").to_pylist()
    assert len(runs) == 6 and {r["status"] for r in runs} == {"completed"}
    assert {r["param:incentive.type"] for r in runs} == set(CELLS)
    agg = pq.read_table(sweep_dir / "aggregate.parquet").to_pylist()
    t1 = float(student_t.ppf(0.975, 1))
    checked = 0
    for cell in CELLS:
        for metric, _ in RANKING + [("accuracy_end", True), ("fees_ether", False)]:
            vals = [r[metric] for r in runs if r["cell"] == cell]
            row = next(a for a in agg if a["cell"] == cell and a["metric"] == metric)
            assert row["n"] == 2 and row["completed"] == 2
            assert row["mean"] == pytest.approx(sum(vals) / 2)
            assert row["ci_low"] <= row["mean"] <= row["ci_high"]
            # Two values: mean +- t(0.975, 1) * s / sqrt(2), and s / sqrt(2) = |a - b| / 2.
            half = t1 * abs(vals[0] - vals[1]) / 2
            assert row["ci_low"] == pytest.approx(row["mean"] - half, abs=1e-12)
            assert row["ci_high"] == pytest.approx(row["mean"] + half, abs=1e-12)
            checked += 1
    assert checked == 15
    assert all(r["fees_ether"] > 0 and r["transactions"] > 0 for r in runs)
    data = json.loads((sweep_dir / "aggregate.json").read_text())
    assert [c["rank"] for c in data["cells"]] == [1, 2, 3]
    scores = [c["score"] for c in data["cells"]]
    assert scores == sorted(scores)


def test_report_is_self_contained_and_lists_every_cell(swept):
    root, _, _ = swept
    page = (root / "out" / "mech" / "sweep.html").read_text()
    for cell in CELLS:
        assert f'data-cell="{cell}"' in page
    for run_id in RUN_IDS:  # listed, and not linked: no run wrote its report (run_reports: false)
        assert f"<td>{run_id}</td>" in page and not (root / "out" / "mech" / "runs" / run_id / "report.html").exists()
    assert 'data-plot="ranking"' in page and "<script" not in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    # The error-bar plot holds a mean per cell for each ranking metric, and every run as a dot.
    ranking_svg = page.split('data-plot="ranking"', 1)[1][:200]
    points = int(ranking_svg.split('data-points="', 1)[1].split('"', 1)[0])
    assert points == 3 * (3 + 6)  # per ranking metric: 3 cell means and 6 run dots


def test_resume_skips_finished_runs_and_redoes_a_partial_one(swept, capsys):
    root, _, _ = swept
    sweep_dir = root / "out" / "mech"
    summaries = {r: sweep_dir / "runs" / r / "summary.json" for r in RUN_IDS}
    before = {r: p.stat().st_mtime_ns for r, p in summaries.items()}

    # Through the command line: everything is complete, nothing runs, exit 0, the ranking is printed.
    assert dcai(["sweep", str(root / "sweep.yaml"), "--out", str(root / "out")]) == 0
    out = capsys.readouterr().out
    assert "6 already complete, 0 to run" in out and "(0 run now, 6 resumed)" in out
    for cell in CELLS:
        assert cell in out.split("rank", 1)[1]
    assert {r: p.stat().st_mtime_ns for r, p in summaries.items()} == before

    # A run without its summary (as if killed mid-way) is the only one redone; its folder is kept aside.
    summaries["points-s6"].unlink()
    outcome = run_sweep(load_sweep(root / "sweep.yaml"), out=root / "out", echo=lambda _: None)
    assert outcome.ran == ["points-s6"] and len(outcome.skipped) == 5 and outcome.ok
    after = {r: p.stat().st_mtime_ns for r, p in summaries.items()}
    assert {r: v for r, v in after.items() if r != "points-s6"} == {r: v for r, v in before.items() if r != "points-s6"}
    assert _summary(sweep_dir / "runs" / "points-s6")["status"] == "completed"
    aside = list((sweep_dir / "attempts").iterdir())
    assert len(aside) == 1 and aside[0].name.startswith("points-s6-") and (aside[0] / "ledger.parquet").exists()
    # Driven runs replay exactly: the redone run has the same transactions as the first attempt.
    first = pq.read_table(aside[0] / "ledger.parquet").column("tx_hash").to_pylist()
    again = pq.read_table(sweep_dir / "runs" / "points-s6" / "ledger.parquet").column("tx_hash").to_pylist()
    assert sorted(first) == sorted(again) and first


# ---- errors -------------------------------------------------------------------------------------


def _error(tmp_path: Path, sweep: str, base: str = BASE) -> str:
    (tmp_path / "base.yaml").write_text(base)
    (tmp_path / "sweep.yaml").write_text(sweep)
    with pytest.raises(SweepError) as e:
        load_sweep(tmp_path / "sweep.yaml")
    return str(e.value)


def test_unknown_field_is_named_with_its_line(tmp_path):
    msg = _error(tmp_path, "base: base.yaml\ngrid:\n  incentive.tpye: [stakeable, points]\nseeds: 2\n")
    path = tmp_path / "sweep.yaml"
    assert msg == (f"{path}:3:3: grid['incentive.tpye']: in every cell: incentive.tpye: unknown key 'tpye' "
                   "(allowed: type, bounty, min_stake, portions, min_contributions, cost_weight, refund_wait, "
                   "owner_claim_wait, any_address_claim_wait); did you mean 'type'?")


def test_invalid_cell_is_named_before_anything_runs(tmp_path):
    sweep = ("base: base.yaml\nout: out\ngrid:\n  incentive.owner_claim_wait:\n    - 2h\n    - 30m\n"
             "  agents[flipper].count: [1, 2]\n")
    msg = _error(tmp_path, sweep)
    lines = msg.splitlines()
    assert len(lines) == 1, msg
    assert lines[0].startswith(f"{tmp_path / 'sweep.yaml'}:6:7: grid['incentive.owner_claim_wait']: "
                               "in cells '30m-1', '30m-2': incentive.owner_claim_wait: waits must satisfy refund_wait <= "
                               "owner_claim_wait <= any_address_claim_wait (got refund_wait=3600s, "
                               "owner_claim_wait=1800s")
    assert not (tmp_path / "out").exists()


def test_sweep_file_mistakes(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    assert _error(tmp_path, "base: base.yaml\nseed: 3\n") == (
        f"{path}:2:1: seed: unknown key 'seed' (allowed: name, description, base, overrides, grid, cases, seeds, "
        "parallel, shards, run_reports, out); did you mean 'seeds'?")
    # `[` cannot start a key inside a YAML flow mapping; in block style it is plain text.
    assert _error(tmp_path, "base: base.yaml\noverrides:\n  agents[nobody].count: 2\n") == (
        f"{path}:3:3: overrides['agents[nobody].count']: in cell 'base': agents has no entry named 'nobody' "
        "(names: 'honest', 'flipper')")
    # A group can be named with a dot as well; a list index must exist.
    assert _error(tmp_path, "base: base.yaml\noverrides: {agents.flipper.count: 0}\n") == (
        f"{path}:2:35: overrides['agents.flipper.count']: in cell 'base': agents[1].count: Input should be "
        "greater than or equal to 1 (got 0)")
    assert _error(tmp_path, "base: base.yaml\noverrides: {agents.5.count: 1}\n") == (
        f"{path}:2:13: overrides['agents.5.count']: in cell 'base': agents has 2 entries, no [5]")
    assert _error(tmp_path, "base: missing.yaml\n").startswith(f"{path}:1:1: base: file not found")
    assert _error(tmp_path, "base: base.yaml\ncases:\n  - {name: a, seed: 4}\n") == (
        f"{path}:3:15: cases[0]['seed']: 'seed' is set by 'seeds:' (every cell runs with every seed)")
    # An error in the base scenario itself points into the base file.
    bad_base = BASE.replace("count: 2,", "count: 0,")
    assert _error(tmp_path, "base: base.yaml\n", bad_base) == (
        f"{tmp_path / 'base.yaml'}:8:29: agents[0].count: in cell 'base': Input should be greater than or equal to 1 "
        "(got 0)")
    # The command line prints the error and exits 2.
    assert dcai(["sweep", str(path)]) == 2
    assert "agents[0].count" in capsys.readouterr().err
