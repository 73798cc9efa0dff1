"""Sweeps: one scenario varied over a grid or a list of cases, times N seeds, run in parallel on Ray.

    dcai sweep scenarios/sweep_mechanisms.yaml [--out DIR] [--parallel N] [--fresh] [--dry-run]

A sweep file names a base scenario and the fields to vary, as dotted paths into the scenario
(`incentive.type`, `agents[flipper].params.budget`, `agents[0].count`):

    name: mechanisms
    base: label_flip.yaml                  # relative to this file (optional)
    overrides: {schedule.duration: 300}    # applied to every cell
    grid: {incentive.type: [stakeable, points, prediction_market]}   # cartesian product
    cases:                                 # and/or a list of cells, each a set of fields
      - {name: cheap, incentive.cost_weight: 1e11}
    seeds: 3                               # a count (the scenario's seed, +1, +2) or a list
    parallel: 2                            # concurrent runs (default: the cluster's CPUs)

Cells are the product of `cases` (or one empty case) and the `grid`; every cell runs with every
seed, so cells are compared on the same seeds (paired). Every cell's scenario is validated through
the normal scenario model before anything runs; an error names the sweep (or base) file, line,
field and the cells it breaks.

Each run is a Ray task that starts its own anvil node through `orchestrator.run.Run` and
writes `<sweep_dir>/runs/<cell>-s<seed>/`. A run whose folder holds a completed summary.json for
the same resolved scenario is not run again (resume); any other folder there is moved to
`<sweep_dir>/attempts/` and the run redone. The sweep folder gets `sweep.json` (the resolved
cells), `runs.parquet` (one row per run, key metrics from its summary.json),
`aggregate.parquet` / `aggregate.json` (per cell and metric: n, mean, std, 95% confidence interval
from the t distribution) and `sweep.html` (the comparison report, orchestrator/sweep_report.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import metrics as metrics_registry
from .metrics import RANKING
from .results import write_json, write_table
from .scenario import Scenario
from .sweep_plan import (  # noqa: F401 - the sweep's public names, as before the split
    Cell,
    RunRecord,
    RunSpec,
    SweepConfig,
    SweepError,
    SweepIssue,
    SweepPlan,
    load_sweep,
    parse_path,
)
from .sweep_report import write_sweep_report

RUNS_DIR = "runs"
ATTEMPTS_DIR = "attempts"
CI_LEVEL = 0.95
# Every registered metric, name -> description (aggregate.json, runs.parquet columns).
METRICS: dict[str, str] = {name: m.description for name, m in metrics_registry.REGISTRY.items()}


def run_metrics(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """A run's metrics from its summary.json: the registry's definitions (orchestrator/metrics.py)."""
    return metrics_registry.compute(summary)


# --------------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------------
# Aggregation


def mean_ci(values: Sequence[float], level: float = CI_LEVEL) -> dict[str, float | int | None]:
    """n, mean, sample std and the t-distribution confidence interval of the mean (None for n < 2)."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    mean = sum(xs) / n
    if n < 2:
        return {"n": 1, "mean": mean, "std": None, "ci_low": None, "ci_high": None}
    from scipy.stats import t

    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def aggregate(plan: SweepPlan, records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Per cell: runs, completed runs and, for every metric, n / mean / std / CI over completed runs."""
    out = []
    for cell in plan.cells:
        mine = [r for r in records if r.cell == cell.id]
        done = [r for r in mine if r.status == "completed"]
        metrics = {m: mean_ci([v for r in done if (v := r.metrics.get(m)) is not None]) for m in METRICS}
        out.append({"cell": cell.id, "params": cell.params, "runs": len(mine), "completed": len(done),
                    "seeds": [r.seed for r in done], "metrics": metrics})
    rank(out)
    return out


def rank(cells: list[dict[str, Any]]) -> None:
    """Competition ranks (1 = best) per ranking metric by mean, then the overall rank by the mean of a
    cell's ranks; cells without a value get no rank for that metric. Sorts `cells` best first."""
    for metric, higher in RANKING:
        vals = {c["cell"]: c["metrics"][metric]["mean"] for c in cells}
        for c in cells:
            v = vals[c["cell"]]
            c.setdefault("ranks", {})[metric] = None if v is None else 1 + sum(
                1 for w in vals.values() if w is not None and (w > v if higher else w < v))
    for c in cells:
        got = [r for r in c["ranks"].values() if r is not None]
        c["score"] = sum(got) / len(got) if got else None
    order = sorted(cells, key=lambda c: (c["score"] is None, c["score"] or 0, c["cell"]))
    for i, c in enumerate(order, start=1):
        c["rank"] = i if c["score"] is not None else None
    cells[:] = order


# --------------------------------------------------------------------------------------------------
# Running


def _pythonpath() -> str:
    # As for shards: importable user modules (policies) must import in the workers.
    from .run.shards import user_pythonpath

    return user_pythonpath()


def _execute_run(scenario: Scenario, runs_root: str, run_id: str, shards: int, shard_cpus: float,
                 source: str, report: bool) -> dict[str, Any]:
    """One run in a Ray worker: its own anvil node and shards; the results folder is the outcome."""
    from .run import Run

    t = time.time()
    try:
        run_dir = Run(scenario, results_root=Path(runs_root), run_id=run_id, progress=False, source=source,
                      shards=shards, shard_cpus=shard_cpus, report=report).execute()
    except Exception as e:  # noqa: BLE001 - reported as the run's status; the sweep goes on
        return {"run_id": run_id, "status": "failed", "error": f"{type(e).__name__}: {e}", "wall_s": time.time() - t}
    status, error = _status(run_dir)
    return {"run_id": run_id, "status": status, "error": error, "wall_s": time.time() - t}


def _status(run_dir: Path) -> tuple[str, str | None]:
    try:
        s = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return "missing", "no readable summary.json"
    return str(s.get("status")), s.get("error")


def _expected_scenario(spec: RunSpec) -> dict[str, Any]:
    from contracts.rpc import redact_url

    resolved = spec.scenario.model_dump(mode="json")
    if resolved["chain"].get("rpc_url"):  # the run stores it redacted (it may carry credentials)
        resolved["chain"]["rpc_url"] = redact_url(resolved["chain"]["rpc_url"])
    return json.loads(json.dumps(resolved))


def finished(run_dir: Path, spec: RunSpec) -> bool:
    """A completed run of the same resolved scenario: nothing to redo."""
    try:
        s = json.loads((run_dir / "summary.json").read_text())
        done = json.loads((run_dir / "scenario.json").read_text())
    except (OSError, ValueError):
        return False
    return s.get("status") == "completed" and done == _expected_scenario(spec)


def _move_aside(sweep_dir: Path, run_dir: Path) -> Path:
    """Keep a partial or stale run for inspection rather than deleting it."""
    attempts = sweep_dir / ATTEMPTS_DIR
    attempts.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = attempts / f"{run_dir.name}-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = attempts / f"{run_dir.name}-{stamp}-{n}"
    shutil.move(str(run_dir), str(target))
    return target


@dataclass
class SweepOutcome:
    sweep_dir: Path
    records: list[RunRecord]
    cells: list[dict[str, Any]]  # aggregate, ranked
    ran: list[str]  # run ids started by this invocation
    skipped: list[str]  # run ids already complete
    interrupted: bool = False  # Ctrl-C: the runs in progress were cancelled (a later sweep redoes them)

    @property
    def ok(self) -> bool:
        return all(r.status == "completed" for r in self.records)


def run_sweep(plan: SweepPlan, *, out: str | Path | None = None, parallel: int | None = None, fresh: bool = False,
              echo: Callable[[str], None] = print) -> SweepOutcome:
    """Run every run the sweep folder does not hold complete yet, then aggregate and write the report."""
    import ray

    sweep_dir = (Path(out) if out is not None else Path(plan.out)).resolve() / plan.name
    runs_root = sweep_dir / RUNS_DIR
    runs_root.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "sweep.yaml").write_text(plan.text)
    write_json(sweep_dir / "sweep.json", plan.to_json())

    specs = plan.runs()
    todo: list[RunSpec] = []
    skipped: list[str] = []
    for spec in specs:
        run_dir = runs_root / spec.run_id
        if not fresh and finished(run_dir, spec):
            skipped.append(spec.run_id)
            continue
        if run_dir.exists():
            echo(f"  {spec.run_id}: previous attempt moved to {_move_aside(sweep_dir, run_dir)}")
        todo.append(spec)
    echo(f"sweep {plan.name}: {len(plan.cells)} cells x {len(plan.seeds)} seeds = {len(specs)} runs; "
         f"{len(skipped)} already complete, {len(todo)} to run -> {sweep_dir}")

    results: dict[str, dict[str, Any]] = {}
    started_ray = False
    interrupted = False
    if todo:
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(address="local", num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            started_ray = True
        try:
            results = _dispatch(plan, todo, runs_root, parallel, echo)
        except KeyboardInterrupt:
            interrupted = True  # still aggregate and report what finished
        finally:
            if started_ray:
                ray.shutdown()

    records = []
    for spec in specs:
        run_dir = runs_root / spec.run_id
        status, error = _status(run_dir)
        if spec.run_id in results and status == "missing":
            status, error = results[spec.run_id]["status"], results[spec.run_id]["error"]
        metrics: dict[str, float | None] = {m: None for m in METRICS}
        try:
            metrics = run_metrics(json.loads((run_dir / "summary.json").read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        records.append(RunRecord(spec.cell, spec.seed, spec.run_id, status, error, metrics,
                                 skipped=spec.run_id in skipped))
    cells = aggregate(plan, records)
    write_outputs(plan, sweep_dir, records, cells)
    return SweepOutcome(sweep_dir, records, cells, ran=[s.run_id for s in todo], skipped=skipped,
                        interrupted=interrupted)


def _dispatch(plan: SweepPlan, todo: list[RunSpec], runs_root: Path, parallel: int | None,
              echo: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 1))
    width = max(1, parallel or plan.parallel or int(cpus))
    # The run task itself asks for no CPU (its driver loop mostly waits on the node and the shards);
    # the shards of the runs at once share the cluster's CPUs, so no run waits for another's CPU.
    from .run.shards import shard_cpus_for

    shard_cpus = shard_cpus_for(cpus, width, plan.shards)
    # Workers are reused between runs (a Run leaves no state behind: its node, shards, loop and log
    # files are closed by teardown), which saves the imports of a fresh process per run.
    task = ray.remote(num_cpus=0)(_execute_run).options(
        runtime_env={"env_vars": {"PYTHONPATH": _pythonpath()}})
    queue = list(todo)
    pending: dict[Any, RunSpec] = {}
    results: dict[str, dict[str, Any]] = {}
    t0 = time.time()
    try:
        while queue or pending:
            while queue and len(pending) < width:
                spec = queue.pop(0)
                pending[task.remote(spec.scenario, str(runs_root), spec.run_id, plan.shards, shard_cpus,
                                    plan.source, plan.run_reports)] = spec
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                spec = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a crashed worker fails its run, not the sweep
                    res = {"run_id": spec.run_id, "status": "failed", "error": f"{type(e).__name__}: {e}",
                           "wall_s": None}
                results[spec.run_id] = res
                took = f"{res['wall_s']:.1f} s" if res.get("wall_s") is not None else "?"
                err = f" ({res['error']})" if res.get("error") else ""
                echo(f"  [{len(results)}/{len(todo)}] {spec.run_id}: {res['status']} in {took}{err}")
    except KeyboardInterrupt:
        echo("interrupted: cancelling the runs in progress (a later `dcai sweep` resumes)")
        for ref in pending:
            ray.cancel(ref)
        raise
    echo(f"ran {len(todo)} runs in {time.time() - t0:.1f} s ({width} at once, {shard_cpus:g} CPU per shard)")
    return results


# --------------------------------------------------------------------------------------------------
# Outputs


def write_outputs(plan: SweepPlan, sweep_dir: Path, records: Sequence[RunRecord], cells: list[dict[str, Any]]) -> None:
    axes = plan.axes
    by_id = {c.id: c for c in plan.cells}
    cols: dict[str, list[Any]] = {"cell": [], "seed": [], "run_id": [], "status": [], "error": [], "resumed": []}
    for a in axes:
        cols[f"param:{a}"] = []
    for m in METRICS:
        cols[m] = []
    for r in records:
        cols["cell"].append(r.cell)
        cols["seed"].append(r.seed)
        cols["run_id"].append(r.run_id)
        cols["status"].append(r.status)
        cols["error"].append(r.error)
        cols["resumed"].append(r.skipped)
        for a in axes:
            v = by_id[r.cell].params.get(a)
            cols[f"param:{a}"].append(None if v is None else (v if isinstance(v, str) else json.dumps(v)))
        for m in METRICS:
            cols[m].append(r.metrics.get(m))
    write_table(sweep_dir / "runs.parquet", cols, list(cols))

    agg: dict[str, list[Any]] = {k: [] for k in ("cell", "rank", "metric", "n", "mean", "std", "ci_low",
                                                 "ci_high", "runs", "completed")}
    for c in cells:
        for m, st in c["metrics"].items():
            for k in ("n", "mean", "std", "ci_low", "ci_high"):
                agg[k].append(st[k])
            agg["cell"].append(c["cell"])
            agg["rank"].append(c["rank"])
            agg["metric"].append(m)
            agg["runs"].append(c["runs"])
            agg["completed"].append(c["completed"])
    write_table(sweep_dir / "aggregate.parquet", agg, list(agg))
    write_json(sweep_dir / "aggregate.json", {
        "sweep": plan.name, "confidence_level": CI_LEVEL, "ci_method": "mean +- t(0.975, n-1) * std / sqrt(n)",
        "metrics": METRICS, "metric_definitions": metrics_registry.describe(), "ranking": [{"metric": m, "higher_is_better": h} for m, h in RANKING],
        "cells": cells,
        "runs": [{"cell": r.cell, "seed": r.seed, "run_id": r.run_id, "status": r.status, "error": r.error,
                  "metrics": r.metrics} for r in records],
    })
    write_sweep_report(plan, sweep_dir, records, cells)


def ranking_table(cells: Sequence[Mapping[str, Any]]) -> str:
    """The short plain-text ranking printed at the end of `dcai sweep`."""
    def cell(st: Mapping[str, Any], fmt: str) -> str:
        if st["mean"] is None:
            return "-"
        ci = "" if st["ci_low"] is None else f" ±{(st['ci_high'] - st['ci_low']) / 2:{fmt}}"
        return f"{st['mean']:{fmt}}{ci}"

    rows = [("rank", "cell", "runs", "accuracy kept", "attacker cost ETH", "honest profit ETH")]
    for c in cells:
        m = c["metrics"]
        rows.append((str(c["rank"] or "-"), c["cell"], f"{c['completed']}/{c['runs']}",
                     cell(m["accuracy_kept"], ".3f"), cell(m["attacker_cost_ether"], ".4f"),
                     cell(m["honest_profit_ether"], ".4f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
                     for r in rows)


# --------------------------------------------------------------------------------------------------
# Command line


def build_sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `sweep` to the `dcai` sub-commands: `build_sweep_parser(sub)` in cli.build_parser."""
    p = subparsers.add_parser(
        "sweep", help="run a scenario over a grid of fields x seeds in parallel, compare the cells",
        description="Run a sweep file: every cell x seed as its own run (own node) on Ray, then runs.parquet, "
                    "aggregate.parquet/.json (means, 95%% CIs) and sweep.html in the sweep folder. Finished "
                    "runs are kept: running it again resumes.")
    p.add_argument("sweep_file")
    p.add_argument("--out", default=None, help="results root (default: the file's out:); the folder is OUT/name")
    p.add_argument("--parallel", type=int, default=None, help="runs at once (default: file's parallel:, else CPUs)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", dest="fresh", action="store_false", default=False,
                   help="skip runs already completed (the default)")
    g.add_argument("--fresh", dest="fresh", action="store_true",
                   help="redo every run (earlier folders are moved to attempts/)")
    p.add_argument("--dry-run", action="store_true", help="validate and list the runs, run nothing")
    p.set_defaults(func=cmd_sweep)
    return p


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.parallel is not None and args.parallel < 1:
        print("dcai sweep: --parallel must be at least 1", file=sys.stderr)
        return 2
    plan = load_sweep(args.sweep_file)
    if args.dry_run:
        print(f"{args.sweep_file}: ok ({len(plan.cells)} cells x {len(plan.seeds)} seeds {plan.seeds})")
        for c in plan.cells:
            print(f"  {c.id}: {json.dumps(c.params, default=str)}")
        return 0
    outcome = run_sweep(plan, out=args.out, parallel=args.parallel, fresh=args.fresh)
    print()
    print(ranking_table(outcome.cells))
    failed = [r for r in outcome.records if r.status != "completed"]
    for r in failed:
        print(f"  {r.run_id}: {r.status}{f' ({r.error})' if r.error else ''}")
    print(f"\nsweep {plan.name}: {len(outcome.records) - len(failed)}/{len(outcome.records)} runs completed "
          f"({len(outcome.ran)} run now, {len(outcome.skipped)} resumed)")
    print(f"report: {outcome.sweep_dir / 'sweep.html'}")
    if outcome.interrupted:
        return 130
    return 0 if outcome.ok else 1
