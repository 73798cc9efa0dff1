"""`dcai validate` (a scenario or a sweep file, recognised by its keys) and `dcai schema`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from yaml.nodes import MappingNode

from ..scenario import scenario_json_schema
from ..yaml_loader import compose_yaml, key_of, read_yaml_file
from .run import load_checked

# Keys only a sweep file has; a scenario has agents and schedule.
_SWEEP_KEYS = {"base", "overrides", "grid", "cases", "seeds"}
_SCENARIO_KEYS = {"agents", "schedule"}


def is_sweep_file(path: str) -> bool:
    root, _ = compose_yaml(read_yaml_file(path), path)
    if not isinstance(root, MappingNode):
        return False
    keys = {key_of(k) for k, _ in root.value}
    return bool(keys & _SWEEP_KEYS) and not keys & _SCENARIO_KEYS


def cmd_validate(args: argparse.Namespace) -> int:
    if is_sweep_file(args.scenario):
        from ..sweep import load_sweep

        plan = load_sweep(args.scenario)
        runs = len(plan.cells) * len(plan.seeds)
        print(f"{args.scenario}: ok (sweep {plan.name}: {len(plan.cells)} cells x {len(plan.seeds)} seeds = "
              f"{runs} runs)")
        return 0
    scenario = load_checked(args.scenario)
    groups = ", ".join(f"{g.count} {g.name or g.policy}" for g in scenario.agents)
    print(f"{args.scenario}: ok ({scenario.name}: {groups}; {scenario.schedule.duration} blocks)")
    return 0


def cmd_schema(_args: argparse.Namespace) -> int:
    print(json.dumps(scenario_json_schema(), indent=2))
    return 0


def add_validate_parsers(sub: Any) -> None:
    v = sub.add_parser("validate", help="check a scenario or sweep file (and the files it names) without running")
    v.add_argument("scenario", help="a scenario file, or a sweep file (recognised by grid/cases/base/seeds)")
    v.set_defaults(func=cmd_validate)
    s = sub.add_parser("schema", help="print the scenario JSON Schema (for editors)")
    s.set_defaults(func=cmd_schema)
