"""`dcai run`: validate a scenario (schema and pre-checks), run it, print the summary's headline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .. import logs
from ..scenario import Scenario, load_scenario
from .args import port_arg, run_id_arg, seed_arg


def load_checked(path: str, *, seed: int | None = None, results_root: str | None = None) -> Scenario:
    """The scenario at `path`, with the seed override applied, after every check that can be made before
    a run (raises ScenarioError with every problem found)."""
    from ..prechecks import precheck

    scenario = load_scenario(path)
    if seed is not None:
        scenario = scenario.model_copy(update={"seed": seed})
    logs.register_scenario_secrets(scenario)
    precheck(scenario, path, results_root=results_root)
    return scenario


def cmd_run(args: argparse.Namespace) -> int:
    if args.out:
        args.crash_dir = Path(args.out)
    scenario = load_checked(args.scenario, seed=args.seed, results_root=args.out)
    if args.metrics_port is not None:
        telemetry = scenario.telemetry.model_copy(update={"metrics_port": args.metrics_port})
        scenario = scenario.model_copy(update={"telemetry": telemetry})
    args.crash_dir = Path(args.out or scenario.outputs.dir)
    from ..run import Run  # after the checks: importing the run stack (Ray) takes seconds

    run = Run(scenario, results_root=Path(args.out) if args.out else None, run_id=args.run_id,
              progress=False if args.no_progress else None, source=args.scenario, ray_address=args.ray_address)
    run_dir = run.execute()
    args.crash_dir = run_dir
    summary_path = run_dir / "summary.json"
    status = "unknown"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        status = summary.get("status", "unknown")
        _print_headline(summary, status)
    print(f"results: {run_dir}")
    return 0 if status == "completed" else 1


def _print_headline(summary: dict[str, Any], status: str) -> None:
    tx = summary["transactions"]
    acc = summary["accuracy"]
    tp = summary["throughput"]
    print(f"\nrun {summary['run_id']}: {status}")
    if summary.get("error") and status != "completed":
        print(f"  error: {' '.join(str(summary['error']).split())[:300]}")
    print(f"  transactions: {tx['total']} {tx['by_status']}")
    if acc["start"] is not None:
        print(f"  accuracy: start {acc['start']:.3f} end {acc['end']:.3f}")
    if tp.get("submitted_tx_per_s"):
        print(f"  throughput: submitted {tp['submitted_tx_per_s']:.1f} tx/s, "
              f"included {tp.get('included_tx_per_s') or 0:.1f} tx/s, "
              f"client CPU {tp.get('client_cpu_ms_per_tx') or 0:.2f} ms/tx")


def add_run_parser(sub: Any) -> None:
    r = sub.add_parser("run", help="run a scenario file and write a results folder")
    r.add_argument("scenario")
    r.add_argument("--seed", type=seed_arg, default=None, help="override the scenario's seed (0 .. 2**32 - 1)")
    r.add_argument("--out", default=None, help="results root (default: the scenario's outputs.dir)")
    r.add_argument("--run-id", type=run_id_arg, default=None,
                   help="the run's folder name (letters, digits, '_', '.', '-'; default: time and scenario)")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--metrics-port", type=port_arg, default=None,
                   help="serve Prometheus /metrics on this loopback port during the run (telemetry.metrics_port)")
    r.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (host:port; default RAY_ADDRESS, else a private local Ray)")
    r.set_defaults(func=cmd_run)
