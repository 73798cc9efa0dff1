"""A sweep file read, validated and expanded into cells x seeds (the plan), with errors that name the
sweep (or base) file, line, field and the cells they break. `orchestrator.sweep` runs a plan;
the file format is described there."""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .scenario import Scenario, ScenarioError, ScenarioIssue, StrictModel as _Strict, check_name as _check_name
from .scenario import error_loc, scenario_issue
from .scenario_locate import short_repr as _short_repr
from .yaml_loader import compose_yaml, format_loc as _format_loc, locate as _locate, position as _position
from .yaml_loader import read_yaml_file


def _pydantic_issue(err: Any, root: Node, data: Any) -> ScenarioIssue:
    return scenario_issue(err, root, data)

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
        return read_yaml_file(path, "sweep or scenario file")
    except ScenarioError as e:
        raise SweepError(shown, [SweepIssue(i.location, i.line, i.column, i.message, source=shown)
                                 for i in e.issues]) from None


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
    # A field the error names (a cross-field check may name one) first, else the section it was raised on.
    a = _blame(error_loc(err, data), applied) or _blame(error_loc({**err, "type": ""}, data), applied)
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


@dataclass
class RunRecord:
    cell: str
    seed: int
    run_id: str
    status: str  # completed, interrupted, failed, missing, not run
    error: str | None
    metrics: dict[str, float | None]
    skipped: bool = False  # finished before this invocation (resume)
