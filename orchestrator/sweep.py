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
import copy
import difflib
import itertools
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from agents.policies.base import ATTACKER, HONEST

from .results import write_json, write_table
from .scenario import (
    Scenario,
    ScenarioError,
    ScenarioIssue,
    compose_yaml,
    _check_name,
    _format_loc,
    _locate,
    _position,
    _pydantic_issue,
    _short_repr,
    _Strict,
)

RUNS_DIR = "runs"
ATTEMPTS_DIR = "attempts"
CI_LEVEL = 0.95

# --------------------------------------------------------------------------------------------------
# The sweep file

_PATH_TOKEN = re.compile(r"\[([^\[\]]+)\]|([^.\[\]]+)")
_PATH_SHAPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+)|\[[A-Za-z0-9_.-]+\])*")


def parse_path(path: str) -> list[str | int]:
    """`agents[flipper].params.budget` -> ['agents', 'flipper', 'params', 'budget']; `[0]` -> 0."""
    if not _PATH_SHAPE.fullmatch(path):
        raise ValueError(f"field path {path!r} must be dotted names with optional [index] or [group name], "
                         "like 'incentive.type' or 'agents[flipper].params.budget'")
    out: list[str | int] = []
    for m in _PATH_TOKEN.finditer(path):
        tok = m.group(1) if m.group(1) is not None else m.group(2)
        out.append(int(tok) if tok.isdigit() else tok)  # a number is a list index, in either form
    return out


def _path_problem(key: str) -> str | None:
    if key == "seed":
        return "'seed' is set by 'seeds:' (every cell runs with every seed)"
    try:
        parse_path(key)
    except ValueError as e:
        return str(e)
    return None


class SweepConfig(_Strict):
    name: str | None = Field(None, description="the sweep folder's name (default: the file's name)")
    description: str = ""
    base: str | None = Field(None, description="the base scenario file, relative to the sweep file")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted fields set in every cell")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted field -> values (cartesian)")
    cases: list[dict[str, Any]] = Field(default_factory=list,
                                        description="cells given one by one: {name?, dotted field: value}")
    seeds: int | list[int] = Field(1, description="a count (the scenario's seed and the next ones) or a list")
    parallel: int | None = Field(None, ge=1, description="runs at once (default: the Ray cluster's CPUs)")
    shards: int = Field(1, ge=1, le=64, description="agent shards per run")
    run_reports: bool = Field(True, description="write each run's report.html (seconds per run; the "
                              "comparison page links to them)")
    out: str = Field("results/sweeps", min_length=1, description="results root; the sweep folder is out/name")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return None if v is None else _check_name(v, "name")

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"grid[{key!r}] has no values")
        return v

    @field_validator("cases")
    @classmethod
    def _cases(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: dict[str, int] = {}
        for i, case in enumerate(v):
            name = case.get("name")
            if name is not None:
                if not isinstance(name, str):
                    raise ValueError(f"cases[{i}].name must be text")
                _check_name(name, f"cases[{i}].name")
                if name in seen:
                    raise ValueError(f"cases[{i}] has the same name {name!r} as cases[{seen[name]}]")
                seen[name] = i
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int):
            if not 1 <= v <= 1000:
                raise ValueError(f"a seed count must be between 1 and 1000 (got {v})")
        else:
            if not v:
                raise ValueError("the seed list is empty")
            if any(s < 0 for s in v):
                raise ValueError("seeds must be >= 0")
            if len(set(v)) != len(v):
                raise ValueError(f"the seed list repeats a seed: {v}")
        return v

    @model_validator(mode="after")
    def _axes_disjoint(self) -> SweepConfig:
        # A field varied by both the grid and the cases would make a cell's value depend on order.
        for i, case in enumerate(self.cases):
            both = sorted(set(case) & set(self.grid))
            if both:
                raise ValueError(f"cases[{i}] sets {both[0]!r}, which the grid also varies")
        return self


# --------------------------------------------------------------------------------------------------
# Errors that point into the sweep file or its base


@dataclass(frozen=True)
class SweepIssue(ScenarioIssue):
    """A ScenarioIssue that carries its own file: sweep errors may be in the sweep or in its base."""

    source: str = ""

    def format(self, path: str) -> str:
        return super().format(self.source or path)


class SweepError(ScenarioError):
    """A sweep file (or a cell of it) is invalid; `issues` lists every problem, each with its file."""

    def __init__(self, path: str, issues: list[ScenarioIssue]) -> None:
        super().__init__(path, issues)
        # ScenarioError sorts by line alone; with two files that would interleave them.
        self.issues = sorted(issues, key=lambda i: (getattr(i, "source", "") != path, getattr(i, "source", ""),
                                                    i.line or 0, i.column or 0))


def _sweep_issue(err: Any, root: Node, data: Any, source: str) -> SweepIssue:
    loc = tuple(err["loc"])
    depth, mark, node = _locate(root, loc)
    kind = err["type"]
    if kind not in ("extra_forbidden", "missing") and depth == len(loc) and isinstance(node, ScalarNode):
        mark = node.start_mark  # a bad value: point at it, not at its key
    line, column = _position(mark)
    if kind == "missing":
        message = "required key is missing"
    elif kind == "extra_forbidden":
        allowed = list(SweepConfig.model_fields) if len(loc) == 1 else []
        message = f"unknown key {loc[-1]!r}"
        if allowed:
            message += f" (allowed: {', '.join(allowed)})"
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
    elif kind == "value_error":
        message = err["msg"].removeprefix("Value error, ")
    else:
        message = err["msg"]
        value: Any = data
        for part in loc:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                value = err.get("input")
                break
        got = _short_repr(value)
        if got is not None:
            message += f" (got {got})"
    return SweepIssue(_format_loc(loc), line, column, message, source=source)


def _read(path: Path, shown: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepError(shown, [SweepIssue("", None, None, f"file not found (looked for {path.absolute()})",
                                            source=shown)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(shown, [SweepIssue("", None, None, f"cannot read the file: {exc}", source=shown)]) from None


# --------------------------------------------------------------------------------------------------
# The plan: cells and runs


@dataclass
class Assignment:
    """One field a cell sets, and where the sweep file says so (for errors)."""

    path: str
    value: Any
    origin: str  # "overrides", "grid" or "cases"
    key_mark: tuple[int | None, int | None]
    value_mark: tuple[int | None, int | None]
    label: str = ""  # where in the sweep file, for messages: grid['incentive.type'], cases[1]['...']
    loc: tuple[str | int, ...] = ()  # the path as pydantic locates it (group names as list indices)


@dataclass
class Cell:
    id: str
    params: dict[str, Any]  # the fields this cell varies (grid axes and case fields), for reading
    scenario: Scenario  # resolved; seed of the first run
    assignments: list[Assignment] = field(default_factory=list)


@dataclass
class RunSpec:
    cell: str
    seed: int
    run_id: str
    scenario: Scenario


@dataclass
class SweepPlan:
    name: str
    description: str
    source: str
    text: str
    base: str | None
    out: str
    parallel: int | None
    shards: int
    run_reports: bool
    seeds: list[int]
    axes: list[str]  # the varied fields, in file order
    cells: list[Cell]

    def runs(self) -> list[RunSpec]:
        out = []
        for seed in self.seeds:  # seed-major: the first results of every cell come early
            for cell in self.cells:
                out.append(RunSpec(cell.id, seed, f"{cell.id}-s{seed}",
                                   cell.scenario.model_copy(update={"seed": seed})))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "source": self.source, "base": self.base,
                "seeds": self.seeds, "axes": self.axes, "shards": self.shards,
                "cells": [{"id": c.id, "params": c.params, "runs": [f"{c.id}-s{s}" for s in self.seeds],
                           "scenario": c.scenario.model_dump(mode="json") | {"seed": None}}
                          for c in self.cells]}


def _slug(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), default=str)
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "x"
    return text[:40]


def _assign(data: dict[str, Any], a: Assignment) -> str | None:
    """Set one dotted field in the scenario data; returns a message when the path cannot be followed."""
    tokens = parse_path(a.path)
    node: Any = data
    loc: list[str | int] = []
    for i, tok in enumerate(tokens):
        last = i == len(tokens) - 1
        if isinstance(node, list):
            if isinstance(tok, int):
                if tok >= len(node):
                    return f"{_format_loc(tuple(loc))} has {len(node)} entries, no [{tok}]"
                idx = tok
            else:
                names = [(g.get("name") or str(g.get("policy", "")).rpartition(":")[2]) if isinstance(g, dict)
                         else None for g in node]
                if tok not in names:
                    known = ", ".join(repr(n) for n in names if n)
                    return f"{_format_loc(tuple(loc))} has no entry named {tok!r} (names: {known or 'none'})"
                idx = names.index(tok)
            loc.append(idx)
            if last:
                node[idx] = copy.deepcopy(a.value)
            else:
                node = node[idx]
            continue
        if not isinstance(node, dict) or isinstance(tok, int):
            return f"{_format_loc(tuple(loc)) or 'the scenario'} is not a mapping: cannot set {a.path!r}"
        loc.append(tok)
        if last:
            node[tok] = copy.deepcopy(a.value)
        else:
            if node.get(tok) is None:
                node[tok] = {}  # a section the base leaves to its defaults
            node = node[tok]
    a.loc = tuple(loc)
    return None


def _mapping_items(node: Node | None, key: str) -> Node | None:
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == key:
                return v
    return None


def _key_value_marks(mapping: Node | None, key: str) -> tuple[tuple[int | None, int | None],
                                                              tuple[int | None, int | None], Node | None]:
    if isinstance(mapping, MappingNode):
        for k, v in mapping.value:
            if isinstance(k, ScalarNode) and k.value == key:
                return _position(k.start_mark), _position(v.start_mark), v
    return (None, None), (None, None), None


def load_sweep(path: str | Path) -> SweepPlan:
    """Read, validate and expand a sweep file; raises SweepError (file, line, field, cells) on any problem."""
    shown = str(path)
    text = _read(Path(path), shown)
    try:
        root, data = compose_yaml(text, shown)
    except SweepError:
        raise
    except ScenarioError as e:
        raise SweepError(shown, [SweepIssue(i.location, i.line, i.column, i.message, source=shown)
                                 for i in e.issues]) from None
    if not isinstance(root, MappingNode) or not isinstance(data, dict):
        raise SweepError(shown, [SweepIssue("", 1, 1, "a sweep file is a mapping with base/overrides, grid or "
                                            "cases, and seeds", source=shown)])
    try:
        cfg = SweepConfig.model_validate(data)
    except ValidationError as exc:
        raise SweepError(shown, [_sweep_issue(err, root, data, shown) for err in exc.errors()]) from None

    # Field paths, checked here rather than in the model so that an error points at the key itself.
    path_issues = []
    cases_seq = _mapping_items(root, "cases")
    where: list[tuple[str, Node | None, Mapping[str, Any]]] = [
        ("overrides", _mapping_items(root, "overrides"), cfg.overrides),
        ("grid", _mapping_items(root, "grid"), cfg.grid)]
    for i, case in enumerate(cfg.cases):
        node = cases_seq.value[i] if isinstance(cases_seq, SequenceNode) and i < len(cases_seq.value) else None
        where.append((f"cases[{i}]", node, {k: v for k, v in case.items() if k != "name"}))
    for label, node, mapping in where:
        for key in mapping:
            problem = _path_problem(key)
            if problem:
                km, _, _ = _key_value_marks(node, key)
                path_issues.append(SweepIssue(f"{label}[{key!r}]", km[0], km[1], problem, source=shown))
    if path_issues:
        raise SweepError(shown, path_issues)

    # The base scenario as data plus its node tree, so errors in it point at its own lines.
    base_shown: str | None = None
    base_root: Node | None = None
    base_data: dict[str, Any] = {}
    if cfg.base is not None:
        base_path = Path(path).parent / cfg.base
        base_shown = str(base_path)
        try:
            base_root, raw = compose_yaml(_read(base_path, base_shown), base_shown)
        except SweepError as e:
            (km, _, _) = _key_value_marks(root, "base")
            raise SweepError(shown, [SweepIssue("base", km[0], km[1], e.issues[0].message, source=shown)]) from None
        except ScenarioError as e:
            raise SweepError(base_shown, [SweepIssue(i.location, i.line, i.column, i.message, source=base_shown)
                                          for i in e.issues]) from None
        if raw is not None and not isinstance(raw, dict):
            raise SweepError(base_shown, [SweepIssue("", 1, 1, "a scenario file is a mapping", source=base_shown)])
        base_data = raw or {}
    if base_root is None:
        base_root = yaml.compose("{}")

    # Every assignment remembers where it was written.
    overrides_node = _mapping_items(root, "overrides")
    shared = []
    for key, value in cfg.overrides.items():
        km, vm, _ = _key_value_marks(overrides_node, key)
        shared.append(Assignment(key, value, "overrides", km, vm, f"overrides[{key!r}]"))
    grid_node = _mapping_items(root, "grid")
    axes: list[list[Assignment]] = []
    for key, values in cfg.grid.items():
        km, _, seq = _key_value_marks(grid_node, key)
        items = seq.value if isinstance(seq, SequenceNode) else []
        axes.append([Assignment(key, v, "grid", km, _position(items[j].start_mark) if j < len(items) else km,
                                f"grid[{key!r}]") for j, v in enumerate(values)])
    cases_node = _mapping_items(root, "cases")
    cases: list[tuple[str | None, list[Assignment]]] = []
    for i, case in enumerate(cfg.cases):
        node = cases_node.value[i] if isinstance(cases_node, SequenceNode) and i < len(cases_node.value) else None
        parts = []
        for key, value in case.items():
            if key == "name":
                continue
            km, vm, _ = _key_value_marks(node, key)
            parts.append(Assignment(key, value, "cases", km, vm, f"cases[{i}][{key!r}]"))
        cases.append((case.get("name"), parts))
    if not cases:
        cases = [(None, [])]

    combos: list[tuple[str, list[Assignment]]] = []
    for ci, (case_name, case_parts) in enumerate(cases):
        for picks in itertools.product(*axes) if axes else [()]:
            label = [case_name] if case_name else ([f"case{ci}"] if cfg.cases else [])
            bits = label + [_slug(a.value) for a in picks]
            combos.append(("-".join(bits) or "base", list(case_parts) + list(picks)))
    # Ids are folder names: make them unique without losing the readable part.
    counts: dict[str, int] = {}
    for cid, _ in combos:
        counts[cid] = counts.get(cid, 0) + 1
    ids = []
    for n, (cid, _) in enumerate(combos):
        ids.append(f"{cid}-{n}" if counts[cid] > 1 else cid)

    seeds_list: list[int] | None = list(cfg.seeds) if isinstance(cfg.seeds, list) else None
    issues: dict[tuple[Any, ...], list[str]] = {}
    cells: list[Cell] = []
    for cid, (_, axis_parts) in zip(ids, combos):
        cell_data = copy.deepcopy(base_data)
        applied = [copy.copy(a) for a in shared] + [copy.copy(a) for a in axis_parts]
        failed = False
        for a in applied:
            problem = _assign(cell_data, a)
            if problem:
                _note(issues, (shown, a.key_mark, a.label, problem), cid)
                failed = True
        if failed:
            continue
        if seeds_list is not None:
            cell_data["seed"] = seeds_list[0]
        try:
            scenario = Scenario.model_validate(cell_data)
        except ValidationError as exc:
            for err in exc.errors():
                _note(issues, _cell_issue(err, applied, base_root, cell_data, shown, base_shown), cid)
            continue
        policy_issue = _policy_issues(scenario, applied, shown, base_root, base_shown)
        if policy_issue:
            for key in policy_issue:
                _note(issues, key, cid)
            continue
        params = {a.path: a.value for a in axis_parts}
        cells.append(Cell(cid, params, scenario, applied))
    if issues:
        raise SweepError(shown, [_format_issue(key, cells_hit, len(ids)) for key, cells_hit in issues.items()])

    if seeds_list is None:
        first = cells[0].scenario.seed
        seeds_list = list(range(first, first + int(cfg.seeds)))  # type: ignore[arg-type]
    name = cfg.name or _check_name(re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem)[:64] or "sweep", "name")
    return SweepPlan(name=name, description=cfg.description, source=shown, text=text, base=cfg.base,
                     out=cfg.out, parallel=cfg.parallel, shards=cfg.shards, run_reports=cfg.run_reports,
                     seeds=seeds_list,
                     axes=[ax[0].path for ax in axes] + sorted({a.path for _, p in cases for a in p}),
                     cells=cells)


def _note(issues: dict[tuple[Any, ...], list[str]], key: tuple[Any, ...], cell: str) -> None:
    issues.setdefault(key, [])
    if cell not in issues[key]:
        issues[key].append(cell)


def _format_issue(key: tuple[Any, ...], cells_hit: list[str], n_cells: int) -> SweepIssue:
    source, (line, column), label, message = key
    if n_cells > 1 and len(cells_hit) == n_cells:
        scope = "in every cell"
    elif len(cells_hit) == 1:
        scope = f"in cell {cells_hit[0]!r}"
    else:
        scope = "in cells " + ", ".join(repr(c) for c in cells_hit)
    return SweepIssue(label, line, column, f"{scope}: {message}", source=source)


def _blame(loc: tuple[Any, ...], applied: Sequence[Assignment]) -> Assignment | None:
    """The assignment that most likely caused an error at `loc`: one at or under it (a model-level
    check on a section the cell changed), or above it (a value set as a whole section); the cell's
    own fields before the shared overrides, the deepest first."""
    best: tuple[int, int, Assignment] | None = None
    for a in applied:
        if not a.loc:
            continue
        n = min(len(a.loc), len(loc))
        if a.loc[:n] != loc[:n]:
            continue
        score = (0 if a.origin == "overrides" else 1, len(a.loc))
        if best is None or score > best[:2]:
            best = (*score, a)
    return best[2] if best else None


def _cell_issue(err: Any, applied: Sequence[Assignment], base_root: Node, data: Any, shown: str,
                base_shown: str | None) -> tuple[Any, ...]:
    scen = _pydantic_issue(err, base_root, data)  # the scenario-side message and location
    loc = tuple(err["loc"])
    a = _blame(loc, applied)
    field_msg = f"{scen.location}: {scen.message}" if scen.location else scen.message
    if a is not None:
        return (shown, a.key_mark if err["type"] == "extra_forbidden" else a.value_mark, a.label, field_msg)
    if base_shown is not None:
        return (base_shown, (scen.line, scen.column), scen.location, scen.message)
    return (shown, (None, None), "", f"the scenario (no base:): {field_msg}")


def _policy_issues(scenario: Scenario, applied: Sequence[Assignment], shown: str, base_root: Node,
                   base_shown: str | None) -> list[tuple[Any, ...]]:
    from agents.policies.base import PolicyError, resolve_policy

    out = []
    for i, g in enumerate(scenario.agents):
        try:
            resolve_policy(g.policy)
        except PolicyError as e:
            loc = ("agents", i, "policy")
            a = _blame(loc, applied)
            if a is not None:
                out.append((shown, a.value_mark, a.label, f"agents[{i}].policy: {e}"))
            else:
                _, mark, _ = _locate(base_root, loc)
                out.append((base_shown or shown, _position(mark), f"agents[{i}].policy", str(e)))
    return out


# --------------------------------------------------------------------------------------------------
# Metrics of one run, from its summary.json


METRICS: dict[str, str] = {
    "accuracy_kept": "end accuracy / reference accuracy (the honest-only baseline's end when the run has "
                     "one, else the run's own start): 1 = nothing lost",
    "accuracy_end": "accuracy of the on-chain model at the end",
    "accuracy_drop_pts": "reference accuracy - end accuracy, in percentage points",
    "attacker_cost_ether": "ether the adversarial groups spent net (deposits and fees lost, minus "
                           "refunds and takes)",
    "attacker_cost_per_point_ether": "attacker cost per percentage point of accuracy lost (only runs that "
                                     "lost accuracy)",
    "honest_profit_ether": "net gain of the honest groups in ether (refunds + takes - deposits - fees)",
    "honest_profit_per_agent_ether": "honest profit per honest agent",
    "fees_ether": "transaction fees paid by every agent",
    "transactions": "transactions sent",
    "included_share": "share of transactions included (mined without revert)",
    "latency_p50_blocks": "median blocks from submission to inclusion",
    "wall_s": "wall time of the run (set-up included)",
}
# The ranking: (metric, higher is better)
RANKING: list[tuple[str, bool]] = [("accuracy_kept", True), ("attacker_cost_ether", True),
                                   ("honest_profit_ether", True)]


def _f(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) or math.isinf(x) else x


def run_metrics(summary: Mapping[str, Any]) -> dict[str, float | None]:
    acc = summary.get("accuracy") or {}
    corr = summary.get("corruption") or {}
    end = _f(acc.get("end"))
    reference = _f(corr.get("baseline_accuracy_end")) if corr else None
    if reference is None:
        reference = _f(acc.get("start"))
    groups = summary.get("incentives") or {}
    attackers = [g for g in groups.values() if g.get("role") == ATTACKER]
    honest = [g for g in groups.values() if g.get("role") == HONEST]
    attacker_cost = -sum(int(g["net"]) for g in attackers) / 1e18 if attackers else None
    honest_net = sum(int(g["net"]) for g in honest) / 1e18 if honest else None
    honest_agents = sum(int(g.get("agents", 0)) for g in honest)
    drop = (reference - end) if reference is not None and end is not None else None
    tx = summary.get("transactions") or {}
    total = int(tx.get("total") or 0)
    by_status = tx.get("by_status") or {}
    return {
        "accuracy_kept": end / reference if end is not None and reference else None,
        "accuracy_end": end,
        "accuracy_drop_pts": 100 * drop if drop is not None else None,
        "attacker_cost_ether": attacker_cost,
        "attacker_cost_per_point_ether": attacker_cost / (100 * drop)
        if attacker_cost is not None and drop is not None and drop > 0 else None,
        "honest_profit_ether": honest_net,
        "honest_profit_per_agent_ether":
            honest_net / honest_agents if honest_net is not None and honest_agents else None,
        "fees_ether": _f(((summary.get("gas") or {}).get("fees_paid") or {}).get("ether")),
        "transactions": float(total),
        "included_share": by_status.get("included", 0) / total if total else None,
        "latency_p50_blocks": _f((summary.get("latency") or {}).get("blocks_p50")),
        "wall_s": _f((summary.get("duration") or {}).get("wall_s")),
    }


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


@dataclass
class RunRecord:
    cell: str
    seed: int
    run_id: str
    status: str  # completed, interrupted, failed, missing, not run
    error: str | None
    metrics: dict[str, float | None]
    skipped: bool = False  # finished before this invocation (resume)


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
    from .sweep_report import write_sweep_report

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
        "metrics": METRICS, "ranking": [{"metric": m, "higher_is_better": h} for m, h in RANKING],
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
