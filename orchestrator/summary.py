"""summary.json: the figures a reader looks at first. Built from the run's tables, so a partial
run gets a partial but consistent summary. Wei amounts are strings of integers (exact), with a
float ether figure beside them for reading."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.policies.base import ATTACKER, HONEST
from contracts.deploy import DeployedSystem

from . import flows as flows_mod
from . import metrics
from .evaluator import ModelRecord
from .incentives import AgentAccount, by_group, versus_baseline
from .monitor import BlockRecord
from .scenario import Scenario

SUMMARY_VERSION = 1


def _wei(v: int) -> dict[str, Any]:
    return {"wei": str(int(v)), "ether": int(v) / 1e18}


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def build_summary(
    *,
    scenario: Scenario,
    run_id: str,
    state: Mapping[str, Any],
    blocks: Sequence[BlockRecord],
    models: Sequence[ModelRecord],
    ledger: Mapping[str, Sequence[Any]],
    system: DeployedSystem | None,
    funding: Mapping[str, int],
    node_url: str | None,
    managed_node: bool,
    accounts: Sequence[AgentAccount] = (),
    baseline: Sequence[Mapping[str, Any]] | None = None,
    market: Mapping[str, Any] | None = None,
    contributions: Mapping[str, Sequence[Any]] | None = None,
    baseline_dir: Path | None = None,
) -> dict[str, Any]:
    """`state["trainer_balance_end"]` (wei), `contributions` (contributions.parquet's columns) and
    `baseline_dir` (the honest-only run's folder) are optional: without them the settlement check,
    the per-contribution flows or the comparison with the baseline are left out, and say so."""
    n = len(ledger.get("tx_hash", []))
    roles = {g.name or g.policy: g.resolved_role() for g in scenario.agents}
    col = {k: list(v) for k, v in ledger.items()}
    statuses = Counter(col.get("status", []))
    by_action: dict[str, dict[str, int]] = {}
    for action, status in zip(col.get("action", []), col.get("status", [])):
        by_action.setdefault(action, Counter())[status] += 1  # type: ignore[index]

    gas_used = sum(col.get("gas_used", []))
    fees = sum(g * p for g, p in zip(col.get("gas_used", []), col.get("effective_gas_price", [])))
    deposits = sum(col.get("deposit", []))
    refunds = sum(r for r, a in zip(col.get("received", []), col.get("action", [])) if a == "refund")

    submitted = col.get("submitted_wall", [])
    included_wall = [w for w, s in zip(col.get("included_wall", []), col.get("status", []))
                     if s in ("included", "reverted")]
    latency_blocks = [ib - sb for ib, sb, s in zip(col.get("included_block", []), col.get("submitted_block", []),
                                                    col.get("status", [])) if s in ("included", "reverted")]
    latency_wall = [iw - sw for iw, sw, s in zip(col.get("included_wall", []), submitted, col.get("status", []))
                    if s in ("included", "reverted")]
    throughput: dict[str, Any] = {}
    if len(submitted) > 1:
        span = max(submitted) - min(submitted)
        throughput["submitted_tx_per_s"] = len(submitted) / span if span > 0 else None
    if included_wall and submitted:
        span = max(included_wall) - min(submitted)
        throughput["included_tx_per_s"] = len(included_wall) / span if span > 0 else None
    # CPU of the client side while the loop ran: the shard processes (whole process, Ray included)
    # and the driver's loop. Set-up (dataset, training, deployment, Ray start) is not counted.
    shard_cpu = sum(s.get("process_cpu_s", 0.0) for s in state.get("shard_stats", []))
    agent_cpu = sum(s.get("cpu_s", 0.0) for s in state.get("shard_stats", []))
    driver_cpu = state.get("loop_driver_cpu_s", 0.0)
    throughput["shard_process_cpu_s"] = shard_cpu
    throughput["agent_step_cpu_s"] = agent_cpu
    throughput["driver_loop_cpu_s"] = driver_cpu
    throughput["agent_cpu_ms_per_tx"] = 1000 * agent_cpu / n if n else None
    throughput["client_cpu_ms_per_tx"] = 1000 * (shard_cpu + driver_cpu) / n if n else None

    run_blocks = [b for b in blocks if b.number > state.get("start_block", -1)]
    base_fees = [b.base_fee for b in run_blocks]
    deviations = [b.number for b in run_blocks if b.expected_base_fee >= 0 and b.expected_base_fee != b.base_fee]

    incentives = {name: {"role": roles.get(name, "unspecified"), **g} for name, g in by_group(accounts).items()}
    flows = flows_mod.compute(col, contributions or {}, {a.address: (a.agent, a.group) for a in accounts})
    settlement = flows_mod.summary_block(flows, trainer_balance_end=state.get("trainer_balance_end"),
                                         groups=list(roles), incentive_type=scenario.incentive.type)
    if contributions is None:
        settlement["note"] = "no contributions table was given: per-contribution flows are not computed"
    by_author = settlement["by_group"]
    for name, g in incentives.items():
        mine = by_author.get(name) or {}
        g["locked"] = mine.get("locked", "0")  # own deposits still in the trainer: part of `net`
        g["taken_by_others"] = mine.get("taken_by_others", "0")
        g["distinct_contributions"] = flows.distinct.get(name)
    base_summary = _read_baseline(baseline_dir)
    if base_summary is not None:
        versus_baseline(incentives, base_summary.get("incentives") or {})

    summary: dict[str, Any] = {
        "summary_version": SUMMARY_VERSION,
        "run_id": run_id,
        "scenario": scenario.name,
        "seed": scenario.seed,
        "status": state.get("status"),
        "error": state.get("error"),
        "ended_because": state.get("ended_because"),
        "node": {"url": node_url, "managed": managed_node, "mining": scenario.chain.mining,
                 "kind": scenario.chain.node if managed_node else "external",
                 "rpc": state.get("rpc", {})},
        "contracts": (system.addresses() | {"deploy_gas": system.gas_used,
                                            "deploy_transactions": system.transactions}) if system else None,
        "agents": {"count": sum(g.count for g in scenario.agents), "groups": {
            (g.name or g.policy): {"policy": g.policy, "role": roles[g.name or g.policy], "count": g.count}
            for g in scenario.agents},
            "funded_total": _wei(sum(funding.values()))},
        "transactions": {
            "total": n,
            "by_status": dict(statuses),
            "by_action": {a: dict(c) for a, c in by_action.items()},
            "all_final": statuses.get("pending", 0) == 0,
        },
        "gas": {"used": gas_used, "fees_paid": _wei(fees), "deposits_kept": _wei(deposits),
                "refunds_paid": _wei(refunds)},
        "latency": {
            "blocks_p50": _pct(latency_blocks, 0.5), "blocks_p90": _pct(latency_blocks, 0.9),
            "blocks_p99": _pct(latency_blocks, 0.99),
            "wall_s_p50": _pct(latency_wall, 0.5), "wall_s_p99": _pct(latency_wall, 0.99),
        },
        "accuracy": {
            "start": models[0].accuracy if models else None,
            "end": models[-1].accuracy if models else None,
            "min": min(m.accuracy for m in models) if models else None,
            "samples": len(models),
            "spot_check_mismatches": sum(m.spot_mismatches for m in models),
        },
        "base_fee": {
            "min": min(base_fees) if base_fees else None,
            "median": statistics.median(base_fees) if base_fees else None,
            "max": max(base_fees) if base_fees else None,
            "eip1559_deviations": len(deviations),
        },
        "chain": {
            "start_block": state.get("start_block"),
            "end_block": state.get("last_block"),
            "blocks": len(run_blocks),
            "chain_time_s": (run_blocks[-1].timestamp - run_blocks[0].timestamp) if len(run_blocks) > 1 else 0,
            "time_warps": state.get("warps", []),
            "chaos_events": state.get("events", []),
            "gas_used_share": (sum(b.gas_used for b in run_blocks) / sum(b.gas_limit for b in run_blocks))
            if run_blocks else None,
            "node_checkpoints": state.get("checkpoints", {}),
            "node_restarts": state.get("restarts", []),
            "shard_restarts": state.get("shard_restarts", []),
        },
        "throughput": throughput,
        "duration": {"wall_s": state.get("phase_times", {}).get("total_s"),
                     "loop_wall_s": state.get("loop_wall_s"), "phases": state.get("phase_times", {})},
        "incentives": incentives,
        "dataset": {"name": scenario.dataset.name, "label_noise": scenario.dataset.noise},
        "deposit_rule": deposit_rule(scenario, col),
        "settlement": settlement,
        "prediction_market": market_outcome(market, models, scenario) if market else None,
        "corruption": corruption(models, baseline, state.get("start_block", 0),
                                 scenario.evaluation.corruption_threshold, accounts, roles, col),
        "reconciliation": {
            "agents": len(accounts),
            "reconciled": sum(a.reconciled for a in accounts),
            "mismatches": [{"agent": a.agent, "address": a.address, "ledger_flow": str(a.ledger_flow),
                            "balance_change": str(a.end_balance - a.start_balance)}
                           for a in accounts if not a.reconciled][:20],
            "ok": all(a.reconciled for a in accounts) if accounts else None,
        },
        "latency_by_group": latency_by_group(col),
        "latency_by_phase": latency_by_phase(col, scenario, state.get("start_block", 0)),
        "revert_reasons": dict(Counter(r for r, st in zip(col.get("reason", []), col.get("status", []))
                                       if st == "reverted").most_common(10)),
        "drop_reasons": dict(Counter(r for r, st in zip(col.get("reason", []), col.get("status", []))
                                     if st == "dropped").most_common(10)),
        "telemetry": state.get("telemetry", {}),
        "paused_s": state.get("paused_s", 0.0),
        "errors": state.get("tick_errors", []),
        "warnings": state.get("warnings", []),
        "shards": state.get("shard_stats", []),
    }
    if settlement.get("message"):  # loud, like a reconciliation mismatch
        summary["errors"] = [*summary["errors"], settlement["message"]]
    summary["metrics"] = metrics.compute(summary)
    return summary


def _read_baseline(baseline_dir: Path | None) -> dict[str, Any] | None:
    if baseline_dir is None:
        return None
    try:
        data = json.loads((Path(baseline_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def deposit_rule(scenario: Scenario, col: Mapping[str, Sequence[Any]]) -> dict[str, Any] | None:
    """Deposit, refund and take prices a contribution at cost_weight * 3600 / floor(sqrt(seconds since
    the last add)), with 0 seconds counted as 1 (Stakeable.getNextAddDataCost): the second and later
    adds of one block all pay the maximum, cost_weight * 3600."""
    if scenario.incentive.type != "stakeable":
        return None
    top = int(scenario.incentive.cost_weight) * 3600
    paid = [int(d) for a, st, d in zip(col.get("action", []), col.get("status", []), col.get("deposit", []))
            if a == "add" and st == "included"]
    return {"formula": "cost_weight * 3600 / floor(sqrt(max(1, seconds since the last add)))",
            "cost_weight_wei": str(int(scenario.incentive.cost_weight)),
            "same_block_max": _wei(top), "adds": len(paid), "adds_at_max": sum(1 for d in paid if d >= top),
            "deposit_min": _wei(min(paid)) if paid else None, "deposit_max": _wei(max(paid)) if paid else None}


def market_outcome(market: Mapping[str, Any], models: Sequence[ModelRecord], scenario: Scenario) -> dict[str, Any]:
    """The market's own record plus what it meant for the participants. Stakes + bounty = what the
    participants and the provider collect, so bounty - providerAmount is the participants' net gain
    from the round: negative when the provider kept stakes, 0 when the bounty went back unpaid (as
    when the final model scores worse than the start)."""
    out = dict(market)
    start = models[0].accuracy if models else None
    end = models[-1].accuracy if models else None
    bounty = int(market.get("bounty") or 0)
    returned = market.get("provider_amount")
    paid = bounty - int(returned) if returned is not None else None
    out["accuracy_start"], out["accuracy_end"] = start, end
    out["bounty_paid_to_participants"] = _wei(max(paid, 0)) if paid is not None else None
    out["participants_net"] = _wei(paid) if paid is not None else None
    worse = start is not None and end is not None and end < start
    said = [f"the final model ends worse than the start ({end:.4f} < {start:.4f})"] if worse else []
    if paid is None:
        said.append("the reward phase did not end: the bounty is not settled")
    elif paid < 0:
        said.append(f"the bounty pays the participants nothing and they lost {-paid / 1e18:.6g} ETH of stakes "
                    "to the provider")
    elif paid == 0:
        said.append("the bounty pays the participants nothing (it all went back to the provider)")
    else:
        said.append(f"the participants earned {paid / 1e18:.6g} ETH of the {bounty / 1e18:.6g} ETH bounty")
    out["model_worse_than_start"] = worse
    out["outcome"] = ": ".join(said) if worse else "; ".join(said)
    return out


def latency_by_group(col: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """Submit-to-inclusion latency percentiles per group, in blocks and in wall seconds."""
    blocks: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}
    for i, status in enumerate(col.get("status", [])):
        if status not in ("included", "reverted"):
            continue
        g = col["group"][i]
        blocks.setdefault(g, []).append(col["included_block"][i] - col["submitted_block"][i])
        wall.setdefault(g, []).append(col["included_wall"][i] - col["submitted_wall"][i])
    out = {}
    for g in blocks:
        out[g] = {"n": len(blocks[g])}
        for q, name in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99_9")):
            out[g][f"blocks_{name}"] = _pct(blocks[g], q)
            out[g][f"wall_s_{name}"] = _pct(wall[g], q)
    return out


def corruption(models: Sequence[ModelRecord], baseline: Sequence[Mapping[str, Any]] | None, start_block: int,
               threshold: float, accounts: Sequence[AgentAccount], roles: Mapping[str, str],
               col: Mapping[str, Sequence[Any]] | None = None) -> dict[str, Any] | None:
    """Accuracy drop of this run below the honest-only counterfactual, matched by block offset from
    the start of each run (the nearest baseline sample at or before each offset). The drop belongs to
    every group whose role is not honest (the baseline differs from the run by exactly those groups),
    shared by the number of contributions each got into the model."""
    if not baseline or not models:
        return None
    base = sorted(baseline, key=lambda r: r["offset"])

    def base_at(offset: int) -> Mapping[str, Any]:
        best = base[0]
        for r in base:
            if r["offset"] <= offset:
                best = r
        return best

    drops = []
    first_over = None
    for m in models:
        off = m.block - start_block
        b = base_at(off)
        d = b["accuracy"] - m.accuracy
        drops.append(d)
        if first_over is None and d > threshold:
            first_over = {"block_offset": off, "block": m.block}
    final = drops[-1]
    attackers = [a for a in accounts if roles.get(a.group) == ATTACKER]
    spent = -sum(a.net for a in attackers)
    return {
        "baseline_accuracy_end": base[-1]["accuracy"],
        "accuracy_end": models[-1].accuracy,
        "drop_end": final,
        "drop_max": max(drops),
        "threshold": threshold,
        "first_over_threshold": first_over,
        "per_class_end": {"run": list(getattr(models[-1], "accuracy_per_class", None)
                                      or [models[-1].accuracy_class0, models[-1].accuracy_class1]),
                          "baseline": list(base[-1].get("accuracy_per_class")
                                           or [base[-1]["accuracy_class0"], base[-1]["accuracy_class1"]])},
        "attacker_net_spent_ether": spent / 1e18,
        "attacker_cost_per_accuracy_point_ether": (spent / 1e18) / (final * 100) if final > 0 else None,
        "attribution": attribution(final, roles, col or {}),
    }


def attribution(drop: float, roles: Mapping[str, str], col: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """The end drop shared by the non-honest groups in proportion to their included contributions
    (each one trained the model as much as any other); by role, the sum of its groups."""
    adds = Counter(g for g, a, st in zip(col.get("group", []), col.get("action", []), col.get("status", []))
                   if a == "add" and st == "included")
    blamed = [g for g, r in roles.items() if r != HONEST]
    total = sum(adds.get(g, 0) for g in blamed)
    groups = {g: {"role": roles[g], "contributions": adds.get(g, 0),
                  "share": adds.get(g, 0) / total if total else (1 / len(blamed) if blamed else 0.0)}
              for g in blamed}
    for g in groups.values():
        g["drop_pts"] = 100 * drop * g["share"]
    by_role: dict[str, dict[str, float]] = {}
    for g in groups.values():
        r = by_role.setdefault(g["role"], {"share": 0.0, "drop_pts": 0.0})
        r["share"] += g["share"]
        r["drop_pts"] += g["drop_pts"]
    return {"rule": "drop shared by non-honest groups in proportion to their included contributions",
            "drop_pts": 100 * drop, "by_role": by_role, "by_group": groups}


def latency_by_phase(col: Mapping[str, Sequence[Any]], scenario: Scenario, start_block: int
                     ) -> dict[str, dict[str, Any]]:
    """Latency percentiles per schedule phase (by the block a transaction was submitted in) and group."""
    phases = sorted(scenario.schedule.phases, key=lambda p: p.at)
    if not phases:
        return {}
    starts = [p.at for p in phases]

    def phase_of(block: int) -> str:
        off = block - start_block
        idx = max((i for i, a in enumerate(starts) if a <= off), default=-1)
        return "before phases" if idx < 0 else f"phase {idx} (from block {starts[idx]}, load x{phases[idx].load:g})"

    rows: dict[str, dict[str, list[float]]] = {}
    for i, status in enumerate(col.get("status", [])):
        if status not in ("included", "reverted"):
            continue
        key = phase_of(col["submitted_block"][i])
        rows.setdefault(key, {}).setdefault(col["group"][i], []).append(
            col["included_block"][i] - col["submitted_block"][i])
    return {ph: {g: {"n": len(v), "blocks_p50": _pct(v, 0.5), "blocks_p90": _pct(v, 0.9),
                     "blocks_p99": _pct(v, 0.99), "blocks_p99_9": _pct(v, 0.999)} for g, v in groups.items()}
            for ph, groups in rows.items()}
