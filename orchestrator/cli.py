"""The `dcai` command: run, validate, schema."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .scenario import ScenarioError, load_scenario, scenario_json_schema


def _load(path: str):  # type: ignore[no-untyped-def]
    from .run import check_policies

    scenario = load_scenario(path)
    check_policies(scenario, path)
    return scenario


def cmd_run(args: argparse.Namespace) -> int:
    from .run import Run

    scenario = _load(args.scenario)
    if args.seed is not None:
        scenario = scenario.model_copy(update={"seed": args.seed})
    run = Run(scenario, results_root=Path(args.out) if args.out else None, run_id=args.run_id,
              progress=False if args.no_progress else None, source=args.scenario, ray_address=args.ray_address)
    run_dir = run.execute()
    summary_path = run_dir / "summary.json"
    status = "unknown"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        status = summary.get("status", "unknown")
        tx = summary["transactions"]
        acc = summary["accuracy"]
        tp = summary["throughput"]
        print(f"\nrun {summary['run_id']}: {status}")
        print(f"  transactions: {tx['total']} {tx['by_status']}")
        if acc["start"] is not None:
            print(f"  accuracy: start {acc['start']:.3f} end {acc['end']:.3f}")
        if tp.get("submitted_tx_per_s"):
            print(f"  throughput: submitted {tp['submitted_tx_per_s']:.1f} tx/s, "
                  f"included {tp.get('included_tx_per_s') or 0:.1f} tx/s, "
                  f"client CPU {tp.get('client_cpu_ms_per_tx') or 0:.2f} ms/tx")
    print(f"results: {run_dir}")
    return 0 if status == "completed" else 1


def cmd_validate(args: argparse.Namespace) -> int:
    scenario = _load(args.scenario)
    groups = ", ".join(f"{g.count} {g.name or g.policy}" for g in scenario.agents)
    print(f"{args.scenario}: ok ({scenario.name}: {groups}; {scenario.schedule.duration} blocks)")
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    from .versions import VersionError, evaluate_at, export_at

    run_dir = Path(args.results_dir)
    try:
        result = evaluate_at(run_dir, args.at_block)
        if args.export:
            export_at(run_dir, args.at_block, Path(args.export))
            result["exported"] = args.export
    except VersionError as e:
        print(f"dcai model: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


def cmd_schema(_args: argparse.Namespace) -> int:
    print(json.dumps(scenario_json_schema(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dcai", description="Stress-test DCAI incentive mechanisms on a real node.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a scenario file and write a results folder")
    r.add_argument("scenario")
    r.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    r.add_argument("--out", default=None, help="results root (default: the scenario's outputs.dir)")
    r.add_argument("--run-id", default=None)
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (host:port; default RAY_ADDRESS, else a private local Ray)")
    r.set_defaults(func=cmd_run)
    v = sub.add_parser("validate", help="check a scenario file")
    v.add_argument("scenario")
    v.set_defaults(func=cmd_validate)
    s = sub.add_parser("schema", help="print the scenario JSON Schema (for editors)")
    s.set_defaults(func=cmd_schema)
    m = sub.add_parser("model", help="the model as it was at a past block of a finished run")
    m.add_argument("results_dir")
    m.add_argument("--at-block", type=int, required=True)
    m.add_argument("--export", default=None, help="write the model at that block to this JSON file")
    m.set_defaults(func=cmd_model)
    from .report import build_report_parser
    from .sweep import build_sweep_parser
    from .watch import build_watch_parser

    build_watch_parser(sub)
    build_report_parser(sub)
    from .replay import build_replay_parser

    build_replay_parser(sub)
    build_sweep_parser(sub)
    from .attack_search_run import build_attack_search_parser

    build_attack_search_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ScenarioError as e:
        print(str(e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
