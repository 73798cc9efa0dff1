"""Attack search: the cheapest attack that reaches a damage target, per mechanism x model (x load) cell.

    dcai attack-search scenarios/attack_search_mechanisms.yaml [--out DIR] [--trials N] [--fresh]

A search file points at a sweep file for its cells and seeds, names the attacker group, the fields
of that group to search and the damage to reach:

    name: flip-frontier
    sweep: sweep_attack_cells.yaml        # cells (grid / cases) and seeds, relative to this file
    attacker: flipper                     # the group searched; its role must be `attacker`
    search:                               # dotted fields under agents.<attacker>, and their ranges
      agents.flipper.count: {int: [1, 5]}
      agents.flipper.rate: {loguniform: [0.005, 0.2]}          # contributions per second
      agents.flipper.funding: {uniform: [1, 10], unit: ether}
      agents.flipper.params.attack: {choice: [label_flip, targeted]}
    target: {accuracy_drop_pts: 3}        # or honest_loss_ether, or deposits_taken_ether
    trials: 16                            # per cell
    frontier_points: 3                    # frontier points re-run on every seed, for 95% intervals
    early_stop: {every_blocks: 25, margin_ether: 0}   # the default; null turns it off

Each trial is a real run on its own node (Ray Tune with Optuna's TPE sampler, which copes with few,
noisy, expensive evaluations). Damage is measured against an honest-only run of the same cell and
seed, run once up front: the search moves only the attacker's fields, so that baseline holds for
every trial. The attacker's cost is what its group lost (deposits forfeited and fees, less refunds
and takes); a profitable attack has a negative cost. Trials that miss the target score above every
trial that reaches it, nearer misses better, so the sampler still learns from them. A trial whose
spending already exceeds the cheapest successful attack of its cell is stopped at a checkpoint
(orchestrator/attack_search_stop.py) and scores between the misses and the failed runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agents.policies.base import ATTACKER, HONEST, validate_params

from .attack_search_stop import EarlyStop
from .metrics import REGISTRY
from .scenario import Scenario, ScenarioError, ScenarioIssue
from .scenario_locate import pydantic_issue
from .yaml_loader import compose_yaml, read_yaml_file
from .sweep import SweepPlan, load_sweep, parse_path

TargetKind = Literal["accuracy_drop_pts", "honest_loss_ether", "deposits_taken_ether"]
MISSED = 1e6  # score floor of a trial that misses the target: above any attacker's real cost in ether


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Range(_Strict):
    """One searched field: exactly one of int / uniform / loguniform / choice; `unit` is appended to
    sampled numbers (e.g. ether) so the scenario parses them as it parses the file."""

    int_: tuple[int, int] | None = Field(None, alias="int")
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    choice: list[Any] | None = None
    unit: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_kind(self) -> Range:
        kinds = [k for k in ("int_", "uniform", "loguniform", "choice") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of int, uniform, loguniform, choice")
        bounds = self.int_ or self.uniform or self.loguniform
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"the low bound must be below the high one (got {list(bounds)})")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform bounds must be above 0")
        if self.choice is not None and not self.choice:
            raise ValueError("choice needs at least one value")
        if self.unit is not None and (self.choice is not None):
            raise ValueError("unit goes with numeric ranges, not choice")
        return self

    def tune_domain(self) -> Any:
        from ray import tune

        if self.int_ is not None:
            return tune.randint(self.int_[0], self.int_[1] + 1)  # both bounds included, as written
        if self.uniform is not None:
            return tune.uniform(*self.uniform)
        if self.loguniform is not None:
            return tune.loguniform(*self.loguniform)
        return tune.choice(list(self.choice or []))

    def value(self, sampled: Any) -> Any:
        if isinstance(sampled, float):
            sampled = float(f"{sampled:.4g}")  # what the trial runs, and what a reader can copy back
        return f"{sampled} {self.unit}" if self.unit else sampled


class Target(_Strict):
    accuracy_drop_pts: float | None = Field(None, gt=0, description="accuracy points below the honest baseline")
    honest_loss_ether: float | None = Field(None, gt=0, description="honest groups' net below the baseline's")
    deposits_taken_ether: float | None = Field(None, gt=0, description="ether the attackers took from others")

    @model_validator(mode="after")
    def _one(self) -> Target:
        if sum(v is not None for v in (self.accuracy_drop_pts, self.honest_loss_ether,
                                       self.deposits_taken_ether)) != 1:
            raise ValueError("give exactly one of accuracy_drop_pts, honest_loss_ether, deposits_taken_ether")
        return self

    @property
    def kind(self) -> TargetKind:
        return next(k for k in ("accuracy_drop_pts", "honest_loss_ether", "deposits_taken_ether")
                    if getattr(self, k) is not None)  # type: ignore[return-value]

    @property
    def level(self) -> float:
        return float(getattr(self, self.kind))


class SearchFile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    sweep: str = Field(description="the sweep file giving the cells and seeds, relative to this file")
    attacker: str = Field(description="the group whose fields are searched")
    search: dict[str, Range] = Field(min_length=1)
    target: Target
    trials: int = Field(16, ge=1, le=10_000)
    frontier_points: int = Field(3, ge=1, le=50)
    parallel: int | None = Field(None, ge=1, le=64)
    seed: int = Field(0, ge=0, lt=2**32, description="the sampler's seed")
    early_stop: EarlyStop | None = Field(default_factory=EarlyStop,
                                         description="stop trials whose spending already exceeds the best "
                                                     "successful attack (null: never)")

    @field_validator("search")
    @classmethod
    def _paths(cls, v: dict[str, Range]) -> dict[str, Range]:
        for path in v:
            parse_path(path)  # raises with the expected shape
        return v


@dataclass
class SearchPlan:
    name: str
    source: str
    text: str
    attacker: str
    search: dict[str, Range]
    target: Target
    trials: int
    frontier_points: int
    parallel: int | None
    seed: int
    sweep: SweepPlan
    description: str = ""
    attacker_funding_cap_ether: float = field(default=0.0)
    early_stop: EarlyStop | None = None


def load_search(path: str | Path) -> SearchPlan:
    """Read and check a search file and the sweep it names; errors name file, line and field."""
    shown = str(path)
    p = Path(path)
    text = read_yaml_file(p, "attack-search file")
    root, data = compose_yaml(text, shown)
    if not isinstance(data, dict) or root is None:
        raise ScenarioError(shown, [ScenarioIssue("", 1, 1, "an attack-search file is a mapping "
                                                  "(name, sweep, attacker, search, target)")])
    try:
        cfg = SearchFile.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(shown, [pydantic_issue(err, root, data, SearchFile) for err in exc.errors()]) from None
    sweep = load_sweep(p.parent / cfg.sweep)
    issues = []
    for path in cfg.search:
        tokens = parse_path(path)
        if tokens[:2] != ["agents", cfg.attacker]:
            issues.append(ScenarioIssue(f"search.{path}", *_key_line(root, "search", path),
                                        f"only the attacker group's fields can be searched: start with "
                                        f"agents.{cfg.attacker} (the honest baseline must hold for every trial)"))
    cap = 0.0
    for cell in sweep.cells:
        group = next((g for g in cell.scenario.agents if g.name == cfg.attacker), None)
        if group is None:
            issues.append(ScenarioIssue("attacker", *_key_line(root, "attacker"), f"cell {cell.id!r} has no group named "
                                        f"{cfg.attacker!r} (groups: {[g.name for g in cell.scenario.agents]})"))
            continue
        if group.resolved_role() != ATTACKER:
            issues.append(ScenarioIssue("attacker", *_key_line(root, "attacker"), f"group {cfg.attacker!r} has role "
                                        f"{group.resolved_role()!r} in cell {cell.id!r}: set `role: attacker`"))
        if not any(g.resolved_role() == HONEST for g in cell.scenario.agents):
            issues.append(ScenarioIssue("sweep", None, None, f"cell {cell.id!r} has no honest group: "
                                        "damage is measured against an honest-only run"))
    if issues:
        raise ScenarioError(shown, issues)
    for path, rng in cfg.search.items():  # every sampled corner must make a valid scenario
        for corner in _corners(rng):
            for cell in sweep.cells:
                try:
                    trial_scenario(cell.scenario, {path: corner}, cell.scenario.seed)
                except (ValueError, ScenarioError) as e:
                    raise ScenarioError(shown, [ScenarioIssue(f"search.{path}", *_key_line(root, "search", path),
                                                              f"value {corner!r} breaks cell {cell.id!r}: {e}")]
                                        ) from None
    for cell in sweep.cells:
        group = next(g for g in cell.scenario.agents if g.name == cfg.attacker)
        counts = [group.count] + [_hi(r) for p, r in cfg.search.items()
                                    if p.endswith(".count") or p.endswith(".params.identities")]
        cap = max(cap, max(counts) * group.funding / 1e18)
    return SearchPlan(cfg.name, shown, text, cfg.attacker, cfg.search, cfg.target, cfg.trials, cfg.frontier_points,
                      cfg.parallel, cfg.seed, sweep, cfg.description, cap, cfg.early_stop)


def _key_line(root: Any, *keys: str) -> tuple[int | None, int | None]:
    """Line and column of a key in the file (nested keys in order), for messages."""
    node, mark = root, None
    for key in keys:
        found = next(((k, v) for k, v in getattr(node, "value", []) if getattr(k, "value", None) == key), None)
        if found is None or not isinstance(node.value, list):
            break
        mark, node = found[0].start_mark, found[1]
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


def _corners(rng: Range) -> list[Any]:
    if rng.choice is not None:
        return list(rng.choice)
    lo, hi = rng.int_ or rng.uniform or rng.loguniform  # type: ignore[misc]
    return [rng.value(lo), rng.value(hi)]


def _hi(rng: Range) -> float:
    return float((rng.int_ or rng.uniform or rng.loguniform or (0, 0))[1])


def trial_scenario(base: Scenario, values: Mapping[str, Any], seed: int) -> Scenario:
    """The base cell's scenario with the sampled fields set, no counterfactual run of its own (the
    search measures damage against its shared baseline), validated as a scenario file would be."""
    data = base.model_dump(mode="json")
    for path, value in values.items():
        tokens = parse_path(path)
        _set(data, tokens, value)
        if tokens[-2:] == ["params", "identities"]:
            # A Sybil attacker's identities are its group's wallets: one agent per identity.
            _set(data, [*tokens[:-2], "count"], value)
    data["seed"] = seed
    data.setdefault("evaluation", {})["baseline"] = "none"
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ValueError(f"{where}: {first['msg']}") from None
    for g in sc.agents:  # a sampled policy parameter (an attack kind, a fraction) must be one the policy takes
        problems = validate_params(g.policy, dict(g.params))
        if problems:
            key, message = problems[0]
            raise ValueError(f"agents.{g.name}.params{'.' + key if key else ''}: {message}")
    return sc


def _set(data: dict[str, Any], tokens: Sequence[str | int], value: Any) -> None:
    node: Any = data
    for i, tok in enumerate(tokens):
        if isinstance(node, list) and isinstance(tok, str):  # a group by name
            names = [g.get("name") for g in node]
            if tok not in names:
                raise ValueError(f"no group named {tok!r} (groups: {names})")
            tok = names.index(tok)
        if i == len(tokens) - 1:
            node[tok] = value
        else:
            if isinstance(node, dict) and node.get(tok) is None:
                node[tok] = {}
            node = node[tok]


# ---- measuring a trial ---------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one run did: the attacker's cost, the damage against the baseline, and the score."""

    cost_ether: float | None
    damage: float | None
    reached: bool
    score: float
    status: str
    run_id: str
    accuracy_end: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


# What a search reads from a summary, each figure the registry's metric of the same meaning, so the search,
# the report and sweeps never compute them differently.
FIGURES = {"accuracy_end": "accuracy_end", "attacker_cost_ether": "attacker_cost_ether",
           "attacker_takes_ether": "attacker_takes_ether", "honest_net_ether": "honest_profit_ether"}


def summary_figures(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """The figures a search needs from one summary.json (orchestrator/metrics.py's registry)."""
    return {figure: REGISTRY[metric].value(summary) for figure, metric in FIGURES.items()}


def measure(run: Mapping[str, float | None], baseline: Mapping[str, float | None], target: Target, status: str,
            run_id: str) -> Outcome:
    cost = run.get("attacker_cost_ether")
    if target.kind == "accuracy_drop_pts":
        a, b = run.get("accuracy_end"), baseline.get("accuracy_end")
        damage = 100 * (b - a) if a is not None and b is not None else None
    elif target.kind == "honest_loss_ether":
        a, b = run.get("honest_net_ether"), baseline.get("honest_net_ether")
        damage = b - a if a is not None and b is not None else None
    else:
        damage = run.get("attacker_takes_ether")
    usable = status == "completed" and cost is not None and damage is not None
    reached = usable and damage >= target.level  # type: ignore[operator]
    if reached:
        score = float(cost)  # type: ignore[arg-type]
    elif usable:
        score = MISSED + max(0.0, 1 - damage / target.level)  # type: ignore[operator]
    else:
        score = MISSED + 2  # a run that failed tells the sampler only that this corner is bad
    return Outcome(cost, damage, bool(reached), score, status, run_id, run.get("accuracy_end"))


def pareto(points: Sequence[Outcome]) -> list[Outcome]:
    """Trials no other trial beats on both counts (cheaper and at least as damaging), cheapest first."""
    usable = sorted((p for p in points if p.cost_ether is not None and p.damage is not None),
                    key=lambda p: (p.cost_ether, -p.damage))  # type: ignore[operator]
    front: list[Outcome] = []
    best = -math.inf
    for p in usable:
        if p.damage > best:  # type: ignore[operator]
            front.append(p)
            best = p.damage  # type: ignore[assignment]
    return front


def read_summary(run_dir: Path) -> tuple[str, dict[str, Any] | None]:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return "missing", None
    return str(summary.get("status") or "missing"), summary
