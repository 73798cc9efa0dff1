"""Soak, the statistics: latency windows, trends, the memory verdict and the ledger reconciliation,
all computed from what the run recorded (so a written result can be re-analysed without a re-run)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any


def quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of y on x (nan with fewer than 3 points)."""
    pts = [(x, y) for x, y in zip(xs, ys) if not (math.isnan(x) or math.isnan(y))]
    if len(pts) < 3:
        return float("nan")
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else float("nan")


def windows(ledgers: list[dict[str, list[Any]]], size: int, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per `size` mined transactions, in order of inclusion: latency p50/p99 and the included rate."""
    rows = []
    for led in ledgers:
        for st, sb, ib, sw, iw in zip(led["status"], led["submitted_block"], led["included_block"],
                                      led["submitted_wall"], led["included_wall"]):
            if st in ("included", "reverted"):
                rows.append((iw, ib - sb, iw - sw))
    rows.sort()
    out = []
    prev_end = rows[0][0] if rows else 0.0
    start_wall = min((min(led["submitted_wall"]) for led in ledgers if led["submitted_wall"]), default=prev_end)
    prev_end = start_wall
    for i in range(0, len(rows), size):
        chunk = rows[i:i + size]
        blocks = sorted(float(r[1]) for r in chunk)
        secs = sorted(float(r[2]) for r in chunk)
        end = chunk[-1][0]
        span = end - prev_end
        mem = _memory_at(samples, end)
        other = _other_cores(samples, prev_end, end)
        out.append({"window": len(out), "from_tx": i, "to_tx": i + len(chunk), "end_s": round(end - start_wall, 2),
                    "tx": len(chunk), "tps": len(chunk) / span if span > 0 else float("nan"),
                    "latency_blocks_p50": quantile(blocks, 0.5), "latency_blocks_p99": quantile(blocks, 0.99),
                    "latency_s_p50": quantile(secs, 0.5), "latency_s_p99": quantile(secs, 0.99),
                    "other_cores": other, "rss_mib": mem})
        prev_end = end
    return out


def _other_cores(samples: list[dict[str, Any]], t0: float, t1: float) -> float:
    """Cores other processes of the machine (not ours, not the node) kept busy between t0 and t1,
    from the samples around that span (the machine is shared: this is the context of a slow window)."""
    inside = [x for x in samples if t0 - 1e-9 <= x["t"] <= t1]
    before = [x for x in samples if x["t"] < t0]
    span = ([before[-1]] if before else []) + inside
    if len(span) < 2 or span[-1]["t"] <= span[0]["t"]:
        return float("nan")
    a, b = span[0], span[-1]
    return max(0.0, (b["busy_s"] - a["busy_s"]) - (b["ours_cpu_s"] - a["ours_cpu_s"])) / (b["t"] - a["t"])


def _memory_at(samples: list[dict[str, Any]], t: float) -> dict[str, float]:
    """RSS per process group at the last sample not after t: driver, shards, ray (Ray's own), anvil."""
    before = [x for x in samples if x["t"] <= t] or samples[:1]
    if not before:
        return {}
    return group_rss(before[-1]["rss_mib"])


def group_rss(rss: dict[str, float]) -> dict[str, float]:
    out = {"driver": 0.0, "shards": 0.0, "ray": 0.0, "anvil": 0.0}
    for name, v in rss.items():
        key = "shards" if name.startswith("shard-") else "ray" if name.startswith("ray:") else name
        out[key] = round(out.get(key, 0.0) + v, 1)
    return out


def warmup_of(settings: dict[str, Any]) -> float:
    """Transactions until a shard's windows are full: the ledger's reorg depth and the refund wait,
    in blocks, times the transactions per block (plus ten blocks' slack)."""
    blocks = int(settings.get("reorg_depth") or 0) + int(settings.get("refund_wait_s") or 0) + 10
    return float(blocks * int(settings.get("per_block") or 0))


def memory_verdict(samples: list[dict[str, Any]], n: int, warmup_tx: float = 0.0) -> dict[str, dict[str, Any]]:
    """Per process: RSS at start, after warm-up, at the end, peak, and the fitted growth per 10k final
    transactions after warm-up: the first 10% (pools, imports and caches fill up then), or longer,
    `warmup_tx`, while the shards' windows fill (settled records are held `reorg_depth` blocks, and
    contributions until their refund)."""
    warm = [x for x in samples if x["final"] >= max(0.1 * n, min(warmup_tx, 0.5 * n))]
    names = sorted({k for x in samples for k in x["rss_mib"]})
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        seen = [x for x in samples if name in x["rss_mib"]]
        fit = [x for x in warm if name in x["rss_mib"]]
        per10k = slope([x["final"] for x in fit], [x["rss_mib"][name] for x in fit]) * 10_000
        out[name] = {
            "start_mib": seen[0]["rss_mib"][name], "after_warmup_mib": fit[0]["rss_mib"][name] if fit else None,
            "end_mib": seen[-1]["rss_mib"][name], "peak_mib": max(x["rss_mib"][name] for x in seen),
            "growth_mib_per_10k_tx": per10k, "samples": len(seen),
        }
    return out


def trend(wins: list[dict[str, Any]]) -> dict[str, float]:
    """Least-squares slopes per 10k transactions over the steady windows (the first fills the
    pipeline, the last drains the Poisson tail of the slowest agents: both left out when there are
    more than four), and the first against the last quarter of them."""
    core = wins[1:-1] if len(wins) > 4 else wins
    idx = [w["from_tx"] + w["tx"] / 2 for w in core]
    out = {
        "latency_s_p50_per_10k_tx": slope(idx, [w["latency_s_p50"] for w in core]) * 10_000,
        "latency_s_p99_per_10k_tx": slope(idx, [w["latency_s_p99"] for w in core]) * 10_000,
        "latency_blocks_p50_per_10k_tx": slope(idx, [w["latency_blocks_p50"] for w in core]) * 10_000,
        "latency_blocks_p99_per_10k_tx": slope(idx, [w["latency_blocks_p99"] for w in core]) * 10_000,
        "tps_per_10k_tx": slope(idx, [w["tps"] for w in core]) * 10_000,
        "windows_fitted": len(core),
    }
    q = max(1, len(core) // 4)

    def mean(ws: list[dict[str, Any]], k: str) -> float:
        return sum(w[k] for w in ws) / len(ws) if ws else float("nan")

    out.update({
        "latency_s_p50_first_quarter": mean(core[:q], "latency_s_p50"),
        "latency_s_p50_last_quarter": mean(core[-q:], "latency_s_p50"),
        "latency_blocks_p50_first_quarter": mean(core[:q], "latency_blocks_p50"),
        "latency_blocks_p50_last_quarter": mean(core[-q:], "latency_blocks_p50"),
        "tps_first_quarter": mean(core[:q], "tps"), "tps_last_quarter": mean(core[-q:], "tps"),
    })
    return out


def reanalyze(path: Path) -> dict[str, Any]:
    """Recompute the trend and the memory verdict of a written result (no re-run)."""
    r = json.loads(path.read_text())
    r["latency_trend"] = trend(r["windows"])
    st = r.get("settings", {})
    r["memory"] = memory_verdict(r["memory_samples"], r["final"], warmup_of(st))
    r["memory_verdict"] = {k: classify(v) for k, v in r["memory"].items()}
    return r


def classify(v: dict[str, Any]) -> str:
    g = v["growth_mib_per_10k_tx"]
    base = v["after_warmup_mib"] or v["start_mib"] or 1.0
    if math.isnan(g):
        return "too few samples"
    # Flat: under 1 MiB or 0.5% of its size per 10k transactions (allocator noise is of that order).
    return "flat" if abs(g) < max(1.0, 0.005 * base) else ("grows" if g > 0 else "shrinks")


def reconcile(ledgers: list[dict[str, list[Any]]], balances: dict[str, int], funding: int) -> dict[str, Any]:
    """Each agent's balance change on chain equals the sum over its ledger rows (included:
    received - value - fee; reverted: -fee; otherwise nothing), to the wei."""
    net: Counter[str] = Counter()
    for led in ledgers:
        for st, snd, val, rec, gu, gp in zip(led["status"], led["sender"], led["value"], led["received"],
                                             led["gas_used"], led["effective_gas_price"]):
            fee = int(gu) * int(gp)
            if st == "included":
                net[snd] += int(rec) - int(val) - fee
            elif st == "reverted":
                net[snd] -= fee
    mismatched = [a for a, b in balances.items() if b - funding != net.get(a, 0)]
    return {"agents": len(balances), "mismatched": len(mismatched), "ok": not mismatched,
            "first_mismatch": mismatched[:3]}


def _machine_busy(samples: list[dict[str, Any]], wall: float) -> float:
    """Average cores the whole machine used meanwhile (ours included): context for shared machines."""
    if len(samples) < 2 or not wall:
        return float("nan")
    return (samples[-1]["busy_s"] - samples[0]["busy_s"]) / wall
