"""summary.json: the figures a reader looks at first. Built from the run's tables, so a partial
run gets a partial but consistent summary. Wei amounts are strings of integers (exact), with a
float ether figure beside them for reading."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from agents.policies.base import ATTACKER
from contracts.deploy import DeployedSystem

from .evaluator import ModelRecord
from .incentives import AgentAccount, by_group
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
) -> dict[str, Any]:
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
        "incentives": {name: {"role": roles.get(name, "unspecified"), **g} for name, g in by_group(accounts).items()},
        "prediction_market": dict(market) if market else None,
        "corruption": corruption(models, baseline, state.get("start_block", 0),
                                 scenario.evaluation.corruption_threshold, accounts, roles),
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
        "shards": state.get("shard_stats", []),
    }
    return summary


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
               threshold: float, accounts: Sequence[AgentAccount], roles: Mapping[str, str]
               ) -> dict[str, Any] | None:
    """Accuracy drop of this run below the honest-only counterfactual, matched by block offset from
    the start of each run (the nearest baseline sample at or before each offset)."""
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
    }


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
