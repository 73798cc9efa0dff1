"""The metrics registry: one definition per metric, used by summary.json, the report and the sweep;
roles (not policy names) decide who is honest and who attacks, plugin policies included."""

from __future__ import annotations

import pytest

from orchestrator import metrics, sweep, sweep_report
from orchestrator.flows import distinct_samples

ETH = 10**18


def _summary(groups: dict[str, tuple[str, str, int, int]], *, start=0.8, end=0.7, baseline_end=0.85):
    """groups: name -> (policy, role, agents, net wei)."""
    return {
        "accuracy": {"start": start, "end": end},
        "corruption": {"baseline_accuracy_end": baseline_end},
        "incentives": {name: {"policy": p, "role": r, "agents": n, "net": str(net)}
                       for name, (p, r, n, net) in groups.items()},
        "transactions": {"total": 10, "by_status": {"included": 8, "reverted": 2}},
        "gas": {"fees_paid": {"wei": str(ETH // 100), "ether": 0.01}},
        "settlement": {"locked": {"wei": str(3 * ETH // 10), "ether": 0.3}},
    }


def test_every_metric_declares_unit_direction_and_description():
    for m in metrics.REGISTRY.values():
        assert m.title and m.description
        assert m.higher_is_better in (True, False, None)
        assert m.unit in ("", "ETH", "pp", "blocks", "s", "ETH/pp")
    assert [m for m, _ in metrics.RANKING] == ["accuracy_kept", "attacker_cost_ether", "honest_profit_ether"]
    # The sweep and its page use the registry itself: no second list of names, units or directions.
    assert set(sweep.METRICS) == set(metrics.REGISTRY) == set(sweep_report.TITLES)
    assert sweep.RANKING is metrics.RANKING


def test_roles_decide_who_attacks_and_who_is_honest():
    s = _summary({
        "honest": ("honest", "honest", 4, ETH // 10),
        "plugin": ("tests.plugin_policies:Sybil", "attacker", 2, -ETH // 2),  # a plugin attacker counts
        "flipper": ("adversarial", "attacker", 1, -ETH // 4),
        "greedy": ("greedy", "opportunist", 1, ETH),  # neither honest nor attacker
    })
    got = metrics.compute(s)
    assert got["attacker_cost_ether"] == pytest.approx(0.75)
    assert got["honest_profit_ether"] == pytest.approx(0.1)
    assert got["honest_profit_per_agent_ether"] == pytest.approx(0.025)
    assert got["attacker_profit_per_agent_ether"] == pytest.approx(-0.25)
    assert got["accuracy_drop_pts"] == pytest.approx(15.0)
    assert got["accuracy_kept"] == pytest.approx(0.7 / 0.85)
    assert got["attacker_cost_per_point_ether"] == pytest.approx(0.75 / 15)
    assert got["locked_ether"] == pytest.approx(0.3)
    assert got["included_share"] == pytest.approx(0.8)
    # A policy named like an attacker but declared honest by the scenario is honest.
    s2 = _summary({"adv": ("adversarial", "honest", 2, ETH)})
    assert metrics.compute(s2)["attacker_cost_ether"] is None
    assert metrics.compute(s2)["honest_profit_ether"] == pytest.approx(1.0)
    # The sweep computes exactly the registry's values.
    assert sweep.run_metrics(s) == got


def test_missing_figures_give_none_not_errors():
    got = metrics.compute({})
    assert set(got) == set(metrics.REGISTRY)
    assert got["transactions"] == 0.0
    assert all(v is None for k, v in got.items() if k != "transactions")
    # Without a baseline the reference is the run's own start.
    assert metrics.compute({"accuracy": {"start": 0.5, "end": 0.6}})["accuracy_kept"] == pytest.approx(1.2)


def test_distinct_samples_merge_near_copies():
    sample = (3, 17, 42, 99)
    near = [(17, 42, 99), (3, 42, 99), (3, 17, 99), (99, 42, 17, 3)]  # one feature dropped, reordered
    assert distinct_samples([sample, *near]) == 1
    assert distinct_samples([sample, (5, 6, 7, 8), (5, 6, 7, 9)]) == 2
    assert distinct_samples([(1, 2), (1, 3)]) == 2  # too small to call one a copy of the other
