"""Checks of a valid scenario against the world outside its file, run before anything starts:
policies resolve (plugins import), the dataset file is there and holds enough samples for the agents,
and the results folder can be written. Each problem is reported like a schema error, at the line of
the field to change (`ScenarioError`).

Kept out of the schema because they depend on the working directory and the installed packages: a
scenario validated on one machine is re-validated on Ray workers whose files differ.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from yaml.nodes import Node

from .issues import ScenarioError, ScenarioIssue, quote
from .scenario import Scenario
from .scenario_types import agents_shortfall
from .yaml_loader import Loc, compose_yaml, format_loc, locate, position, read_yaml_file

__all__ = ["check_dataset", "check_outputs", "check_policies", "precheck"]


def precheck(scenario: Scenario, source: str, *, results_root: str | None = None) -> None:
    """Every check below; raises one ScenarioError listing all problems found."""
    root = _root_of(source)
    issues: list[ScenarioIssue] = []
    for check in (check_policies(scenario), check_dataset(scenario), check_outputs(scenario, results_root)):
        issues += [_issue(root, loc, message) for loc, message in check]
    if issues:
        raise ScenarioError(source, issues)


def check_policies(scenario: Scenario) -> list[tuple[Loc, str]]:
    """Each group's policy resolves; a plugin that fails to import is named with its error, in one line."""
    from agents.policies import base
    from agents.policies.base import PolicyError, resolve_policy

    # The policies' parameter check (agents/policies/base.py `params_problems(cls, params)` -> [(dotted
    # key, message)]), where the installed agents package has one.
    params_problems = getattr(base, "params_problems", None)
    out: list[tuple[Loc, str]] = []
    for i, group in enumerate(scenario.agents):
        try:
            cls = resolve_policy(group.policy)
            if callable(params_problems):
                for key, message in params_problems(cls, dict(group.params)):
                    where: Loc = ("agents", i, "params", *(k for k in str(key).split(".") if k))
                    out.append((where, _one_line(message)))
        except PolicyError as e:
            out.append((("agents", i, "policy"), _one_line(str(e))))
        except SyntaxError as e:
            where = f"{e.filename}:{e.lineno}" if e.filename else "its source"
            out.append((("agents", i, "policy"), f"policy {quote(group.policy)}: syntax error in {where}: {e.msg}"))
        except Exception as e:  # noqa: BLE001 - a plugin's import may raise anything; report, do not crash
            out.append((("agents", i, "policy"), f"policy {quote(group.policy)}: importing it raised "
                        f"{type(e).__name__}: {_one_line(str(e))}"))
    return out


def check_dataset(scenario: Scenario) -> list[tuple[Loc, str]]:
    """A user's dataset file loads, suits the model and leaves a sample for every agent."""
    from .datasets import DatasetError, for_model, load_dataset, split

    cfg = scenario.dataset
    if cfg.path is None:
        return []
    # Each step's error lands on the field that would fix it: the file, the model type, the fractions.
    try:
        ds = load_dataset(cfg, scenario.seed)
    except DatasetError as e:
        return [(("dataset", "path"), _one_line(str(e)))]
    try:
        ds = for_model(ds, scenario.model.type)
    except DatasetError as e:
        return [(("model", "type"), _one_line(str(e)))]
    try:
        split(ds, cfg, scenario.seed)
    except DatasetError as e:
        field = "init_train_fraction" if "init_train_fraction" in str(e) else "path"
        return [(("dataset", field), _one_line(str(e)))]
    short = agents_shortfall(scenario, len(ds), f"the file {cfg.path}")
    return [] if short is None else [short]


def check_outputs(scenario: Scenario, results_root: str | None = None) -> list[tuple[Loc, str]]:
    """The results root is a folder, or can be made one (`--out` overrides outputs.dir)."""
    given = results_root if results_root is not None else scenario.outputs.dir
    # `--out` is not in the file: reported without a line.
    loc: Loc = ("outputs", "dir") if results_root is None else ()
    what = "--out" if results_root is not None else "outputs.dir"
    path = Path(given)
    if path.exists():
        if not path.is_dir():
            return [(loc, f"{what} {quote(given)} is a file, not a folder; name a folder for the results")]
        if not os.access(path, os.W_OK | os.X_OK):
            return [(loc, f"{what} {quote(given)}: cannot write in this folder (permission denied)")]
        return []
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return [(loc, f"{what} {quote(given)} cannot be created: {parent} is a file")]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [(loc, f"{what} {quote(given)} cannot be created: no write permission in {parent}")]
    return []


def _root_of(source: str) -> Node | None:
    # Problems found here are located by reading the file again (small, and already known valid).
    try:
        root, _ = compose_yaml(read_yaml_file(source), source)
    except (ScenarioError, OSError):
        return None
    return root


def _issue(root: Node | None, loc: Loc, message: str) -> ScenarioIssue:
    if root is None:
        return ScenarioIssue(format_loc(loc), None, None, message)
    depth, mark, _ = locate(root, loc)
    line, column = position(mark) if depth else (None, None)
    return ScenarioIssue(format_loc(loc), line, column, message)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
