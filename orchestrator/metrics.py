"""One registry of run metrics: each declared once by name, unit, direction and how it is computed
from a run's summary.json (the idea of Mesa's data collection: reporters declared by name and
function). `summary.json` carries their values (`metrics`), the report shows them with units and
direction, and a sweep aggregates and ranks cells by them, so the three never disagree.

A metric's function reads only the summary (never the tables), so it works for any results folder
with a summary, including ones written before the metric existed (missing figures give None).
Roles, not policy names, decide who is honest and who attacks (`incentives[group].role`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agents.policies.base import ATTACKER, HONEST

Summary = Mapping[str, Any]


@dataclass(frozen=True)
class Metric:
    name: str
    title: str  # short, for table headers and plot panels
    unit: str  # "" (a ratio or a count), "ETH", "pp", "blocks", "s", "ETH/pp"
    higher_is_better: bool | None  # None: a load figure, neither better nor worse
    description: str
    compute: Callable[[Summary], float | None]
    rank: bool = False  # one of the figures a sweep ranks its cells by

    @property
    def direction(self) -> str:
        return {True: "higher is better", False: "lower is better", None: "neither"}[self.higher_is_better]

    def value(self, summary: Summary) -> float | None:
        """The metric for one summary; None when the summary lacks what it needs."""
        try:
            return _finite(self.compute(summary))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None


def _finite(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) or math.isinf(x) else x


def _groups(s: Summary, role: str | None = None, *, exclude: str | None = None) -> list[Mapping[str, Any]]:
    inc = s.get("incentives") or {}
    return [g for g in inc.values() if isinstance(g, Mapping)
            and (role is None or g.get("role") == role) and (exclude is None or g.get("role") != exclude)]


def _net_ether(groups: Iterable[Mapping[str, Any]]) -> float | None:
    groups = list(groups)
    return sum(int(g["net"]) for g in groups) / 1e18 if groups else None


def _takes_ether(groups: Iterable[Mapping[str, Any]]) -> float | None:
    groups = list(groups)
    return sum(int(g.get("takes") or 0) for g in groups) / 1e18 if groups else None


def _agents(groups: Iterable[Mapping[str, Any]]) -> int:
    return sum(int(g.get("agents") or 0) for g in groups)


def reference_accuracy(s: Summary) -> float | None:
    """The honest-only baseline's end accuracy when the run has one, else the run's own start."""
    ref = _finite((s.get("corruption") or {}).get("baseline_accuracy_end"))
    return ref if ref is not None else _finite((s.get("accuracy") or {}).get("start"))


def _end(s: Summary) -> float | None:
    return _finite((s.get("accuracy") or {}).get("end"))


def _drop(s: Summary) -> float | None:
    ref, end = reference_accuracy(s), _end(s)
    return None if ref is None or end is None else ref - end


def _kept(s: Summary) -> float | None:
    ref, end = reference_accuracy(s), _end(s)
    return end / ref if end is not None and ref else None


def _attacker_cost(s: Summary) -> float | None:
    net = _net_ether(_groups(s, ATTACKER))
    return None if net is None else -net


def _per_point(s: Summary) -> float | None:
    cost, drop = _attacker_cost(s), _drop(s)
    return cost / (100 * drop) if cost is not None and drop is not None and drop > 0 else None


def _per_agent(role: str) -> Callable[[Summary], float | None]:
    def f(s: Summary) -> float | None:
        groups = _groups(s, role)
        net, n = _net_ether(groups), _agents(groups)
        return net / n if net is not None and n else None
    return f


def _included_share(s: Summary) -> float | None:
    tx = s.get("transactions") or {}
    total = int(tx.get("total") or 0)
    return (tx.get("by_status") or {}).get("included", 0) / total if total else None


def _locked(s: Summary) -> float | None:
    settle = s.get("settlement") or {}
    return int(settle["locked"]["wei"]) / 1e18 if isinstance(settle.get("locked"), Mapping) else None


def _vs_baseline(role: str) -> Callable[[Summary], float | None]:
    """Net per agent of the role's groups minus the same groups' figure in the honest-only baseline."""
    def f(s: Summary) -> float | None:
        deltas = [(g.get("vs_baseline") or {}).get("net_per_agent_ether") for g in _groups(s, role)]
        got = [float(d) for d in deltas if d is not None]
        return sum(got) / len(got) if got else None
    return f


REGISTRY: dict[str, Metric] = {m.name: m for m in [
    Metric("accuracy_kept", "accuracy kept", "", True,
           "end accuracy / reference accuracy (the honest-only baseline's end when the run has one, else the "
           "run's own start): 1 = nothing lost", _kept, rank=True),
    Metric("accuracy_end", "accuracy at the end", "", True, "accuracy of the on-chain model at the end", _end),
    Metric("accuracy_drop_pts", "accuracy lost", "pp", False,
           "reference accuracy - end accuracy, in percentage points", lambda s: _scale(_drop(s), 100)),
    Metric("attacker_cost_ether", "attacker cost", "ETH", True,
           "ether the attacker-role groups lost net (deposits and fees, minus refunds and takes); plugin "
           "policies count by their role", _attacker_cost, rank=True),
    Metric("attacker_takes_ether", "attacker takes", "ETH", False,
           "ether the attacker-role groups took from others' deposits (reports and take-alls)",
           lambda s: _takes_ether(_groups(s, ATTACKER))),
    Metric("attacker_cost_per_point_ether", "attacker cost per point lost", "ETH/pp", True,
           "attacker cost per percentage point of accuracy lost (only runs that lost accuracy)", _per_point),
    Metric("honest_profit_ether", "honest profit", "ETH", True,
           "net gain of the honest-role groups (refunds + takes - deposits - fees)",
           lambda s: _net_ether(_groups(s, HONEST)), rank=True),
    Metric("honest_profit_per_agent_ether", "honest profit per agent", "ETH", True,
           "honest profit per honest-role agent", _per_agent(HONEST)),
    Metric("attacker_profit_per_agent_ether", "attacker profit per agent", "ETH", False,
           "net gain per attacker-role agent", _per_agent(ATTACKER)),
    Metric("honest_vs_baseline_per_agent_ether", "honest vs baseline per agent", "ETH", True,
           "honest groups' net per agent minus the same groups' net per agent in the honest-only baseline",
           _vs_baseline(HONEST)),
    Metric("locked_ether", "locked in the trainer", "ETH", False,
           "deposits still in the trainer at the end: claimed by nobody", _locked),
    Metric("fees_ether", "fees paid", "ETH", False, "transaction fees paid by every agent",
           lambda s: _finite(((s.get("gas") or {}).get("fees_paid") or {}).get("ether"))),
    Metric("transactions", "transactions", "", None, "transactions sent",
           lambda s: float(int((s.get("transactions") or {}).get("total") or 0))),
    Metric("included_share", "included share", "", True, "share of transactions included (mined without revert)",
           _included_share),
    Metric("latency_p50_blocks", "latency p50", "blocks", False, "median blocks from submission to inclusion",
           lambda s: _finite((s.get("latency") or {}).get("blocks_p50"))),
    Metric("wall_s", "wall time", "s", False, "wall time of the run (set-up included)",
           lambda s: _finite((s.get("duration") or {}).get("wall_s"))),
]}

# The sweep ranking: (metric, higher is better), in the order the comparison page shows them.
RANKING: list[tuple[str, bool]] = [(m.name, bool(m.higher_is_better)) for m in REGISTRY.values() if m.rank]


def _scale(v: float | None, k: float) -> float | None:
    return None if v is None else v * k


def compute(summary: Summary) -> dict[str, float | None]:
    """Every registered metric of one run."""
    return {name: m.value(summary) for name, m in REGISTRY.items()}


def describe() -> dict[str, dict[str, Any]]:
    """The registry as data (for aggregate.json and the pages): unit, direction, description."""
    return {m.name: {"title": m.title, "unit": m.unit, "higher_is_better": m.higher_is_better,
                     "description": m.description, "rank": m.rank} for m in REGISTRY.values()}
