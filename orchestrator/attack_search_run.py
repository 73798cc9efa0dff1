"""Running an attack search: baselines, the Tune search per cell, frontier re-runs, the outputs.

Folder `<out>/<name>/`: `runs/` (every run's results folder: `<cell>-baseline-s<seed>`,
`<cell>-<trial id>`, `<cell>-p<point>-s<seed>`), `trials.jsonl` (one line per finished trial, the
resume log), `frontier.json` / `frontier.parquet` and `frontier.html`. A search started again over
the same folder skips completed baselines and re-runs, and tells the sampler the finished trials'
results instead of running them again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .attack_search import MISSED, Outcome, SearchPlan, measure, pareto, read_summary, summary_figures, \
    trial_scenario
from .attack_search_stop import STOPPED, BestCost, Checkpoint, hopeless, run_watched
from .results import write_json, write_table
from .scenario import Scenario
from .sweep import _pythonpath, mean_ci

RUNS = "runs"
TRIAL_CPU = 0.01
TRIALS_LOG = "trials.jsonl"
FRONTIER_COLUMNS = ["cell", "kind", "point", "seed", "run_id", "params", "status", "cost_ether", "damage",
                    "reached", "score"]


def execute(scenario: Scenario, runs_root: str, run_id: str, honest_only: bool, shard_cpus: float) -> str:
    """One run, in whatever process calls it; returns its status from its summary."""
    from .run import Run

    run_dir = Path(runs_root) / run_id
    status, _ = read_summary(run_dir)
    if status == "completed":
        return status  # resume: a finished run is not run again
    try:
        Run(scenario, results_root=Path(runs_root), run_id=run_id, progress=False, honest_only=honest_only,
            shards=1, shard_cpus=shard_cpus, report=not honest_only).execute()
    except Exception:  # noqa: BLE001 - the run's own summary (or its absence) says what happened
        pass
    return read_summary(run_dir)[0]


@dataclass
class CellResult:
    cell: str
    params: dict[str, Any]
    baselines: dict[int, dict[str, float | None]]
    trials: list[dict[str, Any]]
    frontier: list[dict[str, Any]]

    @property
    def best(self) -> dict[str, Any] | None:
        reached = [p for p in self.frontier if p["reached_share"] == 1.0 and p["cost"]["mean"] is not None]
        return min(reached, key=lambda p: p["cost"]["mean"]) if reached else None


def run_search(plan: SearchPlan, *, out: str | Path | None = None, trials: int | None = None,
               parallel: int | None = None, fresh: bool = False, echo: Callable[[str], None] = print) -> Path:
    import ray

    root = (Path(out) if out is not None else Path(plan.sweep.out)).resolve() / plan.name
    runs_root = root / RUNS
    runs_root.mkdir(parents=True, exist_ok=True)
    (root / "search.yaml").write_text(plan.text)
    log_path = root / TRIALS_LOG
    if fresh and log_path.exists():
        log_path.unlink()
    started = False
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, log_to_driver=False,
                 configure_logging=False, **({} if os.environ.get("RAY_ADDRESS") else
                                             {"num_cpus": max(2, os.cpu_count() or 2)}))
        started = True
    try:
        width = max(1, parallel or plan.parallel or int(ray.cluster_resources().get("CPU", 1)))
        # A Tune trial must hold some resource: a hundredth of a CPU each, the rest shared by the shards of
        # the runs at once, so no run waits on another's CPU (as in sweeps).
        shard_cpus = min(1.0, (float(ray.cluster_resources().get("CPU", 1)) - TRIAL_CPU * width) / width)
        task = ray.remote(num_cpus=0)(execute).options(runtime_env={"env_vars": {"PYTHONPATH": _pythonpath()}})
        seeds = plan.sweep.seeds
        echo(f"attack search {plan.name}: {len(plan.sweep.cells)} cells, {trials or plan.trials} trials each on "
             f"seed {seeds[0]}, frontier re-run on {len(seeds)} seeds -> {root}")
        baselines = _baselines(plan, task, runs_root, shard_cpus, width, echo)
        results = []
        for cell in plan.sweep.cells:
            done = _logged_trials(log_path, cell.id)
            outcomes = done + _search_cell(plan, cell, baselines[cell.id][seeds[0]], done, trials or plan.trials,
                                           width, shard_cpus, runs_root, root, log_path, echo)
            frontier = _rerun_frontier(plan, cell, outcomes, baselines[cell.id], task, runs_root, shard_cpus,
                                       width, echo)
            results.append(CellResult(cell.id, cell.params, baselines[cell.id], outcomes, frontier))
    finally:
        if started:
            ray.shutdown()
    _write_outputs(plan, root, results)
    return root


def _run_many(task: Any, jobs: Sequence[tuple[Scenario, str, bool]], runs_root: Path, shard_cpus: float,
              width: int, echo: Callable[[str], None]) -> dict[str, str]:
    import ray

    queue, pending, out = list(jobs), {}, {}
    while queue or pending:
        while queue and len(pending) < width:
            sc, run_id, honest = queue.pop(0)
            pending[task.remote(sc, str(runs_root), run_id, honest, shard_cpus)] = run_id
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            run_id = pending.pop(ref)
            try:
                out[run_id] = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - a crashed worker fails its run, not the search
                out[run_id] = f"failed ({type(e).__name__})"
            echo(f"  {run_id}: {out[run_id]}")
    return out


def _baselines(plan: SearchPlan, task: Any, runs_root: Path, shard_cpus: float, width: int,
               echo: Callable[[str], None]) -> dict[str, dict[int, dict[str, float | None]]]:
    jobs = [(cell.scenario.model_copy(update={"seed": seed}), f"{cell.id}-baseline-s{seed}", True)
            for cell in plan.sweep.cells for seed in plan.sweep.seeds]
    _run_many(task, jobs, runs_root, shard_cpus, width, echo)
    out: dict[str, dict[int, dict[str, float | None]]] = {}
    for cell in plan.sweep.cells:
        for seed in plan.sweep.seeds:
            status, summary = read_summary(runs_root / f"{cell.id}-baseline-s{seed}")
            if status != "completed" or summary is None:
                raise RuntimeError(f"the honest-only baseline of cell {cell.id!r}, seed {seed} did not complete "
                                   f"({status}): see {runs_root / f'{cell.id}-baseline-s{seed}'}")
            out.setdefault(cell.id, {})[seed] = summary_figures(summary)
    return out


def _logged_trials(log_path: Path, cell: str) -> list[dict[str, Any]]:
    if not log_path.exists():
        return []
    rows = []
    for line in log_path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash
        if row.get("cell") == cell:
            rows.append(row)
    return rows


def _trial(config: dict[str, Any], *, plan: SearchPlan, base: Scenario, baseline: dict[str, float | None],
           cell: str, runs_root: str, shard_cpus: float, best_path: str) -> None:
    """A Tune trial: one real run with the sampled attacker, scored against the cell's baseline; with
    early stopping, watched at checkpoints and stopped once it cannot beat the cell's best."""
    from ray import tune

    values = {path: plan.search[path].value(v) for path, v in config.items()}
    run_id = f"{cell}-{tune.get_context().get_trial_id()}"
    scenario = trial_scenario(base, values, base.seed)
    if plan.early_stop is None:
        status = execute(scenario, runs_root, run_id, False, shard_cpus)
        stopped = None
    else:
        best, margin = BestCost(Path(best_path)), plan.early_stop.margin_ether

        def checkpoint(point: Checkpoint) -> bool:
            ref = baseline.get("accuracy_end")
            damage = (100 * (ref - point.accuracy) if plan.target.kind == "accuracy_drop_pts"
                      and ref is not None and point.accuracy is not None else None)
            tune.report({"checkpoint_block": point.block, "cost_so_far_ether": point.cost_so_far_ether,
                         "damage_so_far": damage, "score": MISSED + 1})
            return hopeless(point.cost_so_far_ether, best.get(), margin)

        status, stopped = run_watched(scenario, runs_root, run_id, shard_cpus, plan.early_stop.every_blocks,
                                      checkpoint)
    _, summary = read_summary(Path(runs_root) / run_id)
    outcome = measure(summary_figures(summary or {}), baseline, plan.target, status, run_id)
    extra: dict[str, Any] = {}
    if stopped is not None:
        # Cut short: its figures are partial, so it is neither a hit nor a frontier point.
        outcome = Outcome(None, None, False, MISSED + 1.5, STOPPED, run_id, outcome.accuracy_end)
        extra = {"stopped_at_block": stopped.block, "cost_at_stop_ether": stopped.cost_so_far_ether}
    elif outcome.reached and outcome.cost_ether is not None and plan.early_stop is not None:
        BestCost(Path(best_path)).offer(outcome.cost_ether)
    tune.report({**outcome.to_json(), **extra, "score": outcome.score})


def _search_cell(plan: SearchPlan, cell: Any, baseline: dict[str, float | None], done: list[dict[str, Any]],
                 trials: int, width: int, shard_cpus: float, runs_root: Path, root: Path, log_path: Path,
                 echo: Callable[[str], None]) -> list[dict[str, Any]]:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    left = trials - len(done)
    if left <= 0:
        echo(f"  {cell.id}: {len(done)} trials already done")
        return []
    searcher = OptunaSearch(metric="score", mode="min", seed=plan.seed,
                            points_to_evaluate=[d["config"] for d in done] or None,
                            evaluated_rewards=[d["score"] for d in done] or None)
    best_path = root / "best" / f"{cell.id}.json"
    for d in done:  # resumed trials count: a new trial must beat them too
        if d.get("reached") and d.get("cost_ether") is not None:
            BestCost(best_path).offer(float(d["cost_ether"]))
    trainable = tune.with_resources(
        tune.with_parameters(_trial, plan=plan, base=cell.scenario.model_copy(update={"seed": plan.sweep.seeds[0]}),
                             baseline=baseline, cell=cell.id, runs_root=str(runs_root), shard_cpus=shard_cpus,
                             best_path=str(best_path)),
        {"cpu": TRIAL_CPU})
    t0 = time.time()
    tuner = tune.Tuner(trainable, param_space={p: r.tune_domain() for p, r in plan.search.items()},
                       tune_config=tune.TuneConfig(search_alg=searcher, num_samples=left, max_concurrent_trials=width),
                       run_config=tune.RunConfig(name=cell.id, storage_path=str(root / "tune"), verbose=0))
    grid = tuner.fit()
    rows = []
    with open(log_path, "a") as log:
        for result in grid:
            m = result.metrics or {}
            if "score" not in m:
                continue
            row = {"cell": cell.id, "config": {p: result.config[p] for p in plan.search},
                   **{k: m.get(k) for k in ("cost_ether", "damage", "reached", "score", "status", "run_id",
                                            "accuracy_end", "stopped_at_block", "cost_at_stop_ether")}}
            log.write(json.dumps(row) + "\n")
            rows.append(row)
    reached = [r for r in rows if r["reached"]]
    stopped = sum(r["status"] == STOPPED for r in rows)
    echo(f"  {cell.id}: {len(rows)} trials in {time.time() - t0:.0f} s, {len(reached)} reached the target"
         + (f", {stopped} stopped early" if stopped else "")
         + (f"; cheapest {min(r['cost_ether'] for r in reached):.4f} ETH" if reached else ""))
    return rows


def _as_outcome(row: Mapping[str, Any]) -> Outcome:
    return Outcome(row.get("cost_ether"), row.get("damage"), bool(row.get("reached")), float(row["score"]),
                   str(row.get("status")), str(row.get("run_id")), row.get("accuracy_end"))


def _rerun_frontier(plan: SearchPlan, cell: Any, rows: list[dict[str, Any]],
                    baselines: Mapping[int, dict[str, float | None]], task: Any, runs_root: Path, shard_cpus: float,
                    width: int, echo: Callable[[str], None]) -> list[dict[str, Any]]:
    """The frontier's points (the cheapest that reached the target first) on every seed, with 95% CIs."""
    by_run = {r["run_id"]: r for r in rows}
    front = [by_run[o.run_id] for o in pareto([_as_outcome(r) for r in rows])]
    cheapest = min((r for r in rows if r["reached"]), key=lambda r: r["cost_ether"], default=None)
    chosen = ([cheapest] if cheapest else []) + [r for r in reversed(front) if r is not cheapest]
    chosen = chosen[: plan.frontier_points]
    first, others = plan.sweep.seeds[0], plan.sweep.seeds[1:]
    jobs, points = [], []
    for i, row in enumerate(chosen):
        values = {p: plan.search[p].value(v) for p, v in row["config"].items()}
        runs = {first: row["run_id"]} | {seed: f"{cell.id}-p{i}-s{seed}" for seed in others}
        jobs += [(trial_scenario(cell.scenario, values, seed), runs[seed], False) for seed in others]
        points.append((i, row, values, runs))
    _run_many(task, jobs, runs_root, shard_cpus, width, echo)
    out = []
    for i, row, values, runs in points:
        per_seed = []
        for seed, run_id in runs.items():
            status, summary = read_summary(runs_root / run_id)
            per_seed.append(measure(summary_figures(summary or {}), baselines[seed], plan.target, status, run_id))
        costs = [o.cost_ether for o in per_seed if o.cost_ether is not None]
        damages = [o.damage for o in per_seed if o.damage is not None]
        out.append({"point": i, "config": row["config"], "values": values, "runs": list(runs.values()),
                    "seeds": list(runs), "cost": mean_ci(costs), "damage": mean_ci(damages),
                    "reached_share": sum(o.reached for o in per_seed) / len(per_seed),
                    "per_seed": [o.to_json() for o in per_seed]})
    return out


def _write_outputs(plan: SearchPlan, root: Path, results: Sequence[CellResult]) -> None:
    ranking = sorted(results, key=lambda r: (r.best is None, r.best["cost"]["mean"] if r.best else 0.0, r.cell))
    doc = {"name": plan.name, "description": plan.description, "target": {"kind": plan.target.kind,
                                                                          "level": plan.target.level},
           "attacker": plan.attacker, "search": {p: r.model_dump(by_alias=True, exclude_none=True)
                                                 for p, r in plan.search.items()},
           "seeds": plan.sweep.seeds,
           "cells": [{"cell": r.cell, "params": r.params, "baselines": {str(s): b for s, b in r.baselines.items()},
                      "trials": r.trials, "frontier": r.frontier, "best": r.best} for r in results],
           "ranking": [{"rank": i + 1 if r.best else None, "cell": r.cell, "params": r.params,
                        "cheapest_cost_ether": r.best["cost"] if r.best else None,
                        "best_values": r.best["values"] if r.best else None} for i, r in enumerate(ranking)]}
    write_json(root / "frontier.json", doc)
    cols: dict[str, list[Any]] = {c: [] for c in FRONTIER_COLUMNS}

    def add(cell: str, kind: str, point: int | None, seed: int, row: Mapping[str, Any], params: Any) -> None:
        for k, v in (("cell", cell), ("kind", kind), ("point", point), ("seed", seed), ("run_id", row["run_id"]),
                     ("params", json.dumps(params, sort_keys=True)), ("status", row["status"]),
                     ("cost_ether", row["cost_ether"]), ("damage", row["damage"]), ("reached", bool(row["reached"])),
                     ("score", row["score"])):
            cols[k].append(v)

    for r in results:
        for t in r.trials:
            add(r.cell, "trial", None, plan.sweep.seeds[0], t, t["config"])
        for p in r.frontier:
            for seed, o in zip(p["seeds"], p["per_seed"]):
                add(r.cell, "frontier", p["point"], seed, o, p["config"])
    write_table(root / "frontier.parquet", cols, FRONTIER_COLUMNS)
    from .attack_search_page import write_page

    write_page(root, doc)


def build_attack_search_parser(subparsers: Any) -> Any:
    p = subparsers.add_parser("attack-search", help="search for the cheapest attack reaching a damage target, "
                                                    "per mechanism x model cell (Ray Tune + Optuna TPE)")
    p.add_argument("file", help="attack-search file (see orchestrator/attack_search.py)")
    p.add_argument("--out", default=None, help="output root (default: the sweep file's `out`)")
    p.add_argument("--trials", type=int, default=None, help="trials per cell (default: the file's)")
    p.add_argument("--parallel", type=int, default=None, help="runs at once (default: the file's, else CPUs)")
    p.add_argument("--fresh", action="store_true", help="forget earlier trials in the output folder")
    p.set_defaults(func=cmd_attack_search)
    return p


def cmd_attack_search(args: Any) -> int:
    from .attack_search import load_search

    if args.trials is not None and args.trials < 1:
        raise SystemExit("dcai attack-search: --trials must be at least 1")
    plan = load_search(args.file)
    root = run_search(plan, out=args.out, trials=args.trials, parallel=args.parallel, fresh=args.fresh)
    doc = json.loads((root / "frontier.json").read_text())
    for r in doc["ranking"]:
        cost = r["cheapest_cost_ether"]
        print(f"  {r['rank'] or '-'}. {r['cell']}: " + (f"cheapest attack {cost['mean']:.4f} ETH"
                                                       if cost else "no attack reached the target on every seed"))
    print(f"frontier: {root / 'frontier.html'}")
    return 0
