"""The sections of report.html built from summary.json and the scenario: header, key figures, the
summary tables, the scenario as resolved and the folder's files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from . import plots
from .report_folder import REPORT_NAME, TABLES, Folder
from .report_format import (_card, _ether_or, _kv, _nodata, _status_badge, _table, esc, fmt_ether, fmt_gwei, fmt_number,
                            fmt_pct, fmt_seconds)


def header(f: Folder) -> str:
    s = f.summary or {}
    sc = f.scenario or {}
    name = s.get("scenario") or sc.get("name") or f.path.name
    run_id = s.get("run_id") or f.path.name
    seed = s.get("seed", sc.get("seed"))
    duration = (s.get("duration") or {}).get("wall_s")
    chain = s.get("chain") or {}
    meta = [f"run <code>{esc(run_id)}</code>", f"seed <b>{esc(seed if seed is not None else '–')}</b>"]
    mining = (s.get("node") or {}).get("mining") or (sc.get("chain") or {}).get("mining")
    if mining:
        meta.append(f"{esc(mining)} mining")
    if duration is not None:
        meta.append(f"{esc(fmt_seconds(duration))} wall time")
    if chain.get("blocks") is not None and (chain.get("start_block") or 0) >= 0:
        meta.append(f"{esc(fmt_number(chain['blocks']))} blocks ({esc(chain.get('start_block'))}–"
                    f"{esc(chain.get('end_block'))})")
    if chain.get("chain_time_s"):
        meta.append(f"{esc(plots.human_seconds(chain['chain_time_s']))} of chain time")
    if s.get("ended_because"):
        meta.append(f"ended: {esc(s['ended_because'])}")
    desc = sc.get("description")
    out = [f'<header><h1>{esc(name)} {_status_badge(s.get("status") if s else "no summary")}</h1>']
    if desc:
        out.append(f'<p class="desc">{esc(desc)}</p>')
    out.append(f'<p class="meta">{" · ".join(meta)}</p>')
    if s.get("error"):
        out.append(f'<p class="error">Error: <code>{esc(s["error"])}</code></p>')
    if not f.summary:
        out.append(f'<p class="error">{esc(f.notes.get("summary", "summary.json is missing"))}: the figures '
                   "below come from the tables alone.</p>")
    out.append("</header>")
    return "".join(out)


def key_figures(f: Folder) -> str:
    s = f.summary or {}
    cards = []
    tx = s.get("transactions") or {}
    if tx:
        by = tx.get("by_status") or {}
        sub = " · ".join(f"{esc(k)} {esc(fmt_number(v))}" for k, v in by.items()) or "none"
        cards.append(_card("transactions", esc(fmt_number(tx.get("total"))), sub))
    elif f.rows("ledger"):
        from collections import Counter

        by = Counter(f.tables["ledger"]["status"])  # type: ignore[index]
        cards.append(_card("transactions", esc(fmt_number(f.rows("ledger"))),
                           " · ".join(f"{esc(k)} {v:,}" for k, v in by.items())))
    acc = s.get("accuracy") or {}
    if acc.get("start") is not None:
        cards.append(_card("accuracy start → end",
                           f"{esc(fmt_pct(acc.get('start')))} → {esc(fmt_pct(acc.get('end')))}",
                           f"min {esc(fmt_pct(acc.get('min')))} · {esc(acc.get('samples'))} samples · "
                           f"{esc(acc.get('spot_check_mismatches', 0))} spot-check mismatches"))
    corr = s.get("corruption")
    if isinstance(corr, Mapping) and corr.get("drop_end") is not None:
        first = corr.get("first_over_threshold")
        over = (f"over {esc(fmt_pct(corr.get('threshold')))} from block {esc(first.get('block'))}"
                if isinstance(first, Mapping) else f"never over {esc(fmt_pct(corr.get('threshold')))}")
        drop = float(corr["drop_end"])
        shown = f"{-100 * drop:+.1f} pp".replace("-", "−")
        cards.append(_card("accuracy vs baseline at the end", shown,
                           f"baseline ends at {esc(fmt_pct(corr.get('baseline_accuracy_end')))} · max drop "
                           f"{esc(fmt_pct(corr.get('drop_max')))} · {over}",
                           "bad" if drop > (corr.get("threshold") or 0) else "good"))
    else:
        cards.append(_card("accuracy vs baseline", "–", "no counterfactual baseline in this run"))
    bf = s.get("base_fee") or {}
    if bf.get("median") is not None:
        cards.append(_card("base fee median", esc(fmt_gwei(bf.get("median"))),
                           f"min {esc(fmt_gwei(bf.get('min')))} · max {esc(fmt_gwei(bf.get('max')))} · "
                           f"{esc(bf.get('eip1559_deviations', 0))} EIP-1559 deviations"))
    gas = s.get("gas") or {}
    if gas:
        cards.append(_card("fees paid", esc(fmt_ether((gas.get("fees_paid") or {}).get("wei"))),
                           f"deposits kept {esc(fmt_ether((gas.get('deposits_kept') or {}).get('wei')))} · refunds "
                           f"{esc(fmt_ether((gas.get('refunds_paid') or {}).get('wei')))}"))
    rec = s.get("reconciliation") or {}
    if rec:
        ok = rec.get("ok")
        shown = "✓ ok" if ok else ("✗ mismatch" if ok is False else "–")
        cards.append(_card("ledger ↔ chain reconciliation", shown,
                           f"{esc(rec.get('reconciled', 0))} of {esc(rec.get('agents', 0))} agents to the wei",
                           "good" if ok else ("bad" if ok is False else "")))
    st = s.get("settlement")
    if isinstance(st, Mapping) and isinstance(st.get("locked"), Mapping):
        ok = st.get("ok")
        check = ("equals the trainer's balance" if ok else "✗ differs from the trainer's balance" if ok is False
                 else "not checked against the trainer's balance")
        cards.append(_card("locked in the trainer", esc(fmt_ether(st["locked"].get("wei"))),
                           f"{esc(fmt_pct(st.get('locked_share_of_deposits')))} of deposits · {esc(check)}",
                           "bad" if ok is False else ""))
    pm = s.get("prediction_market")
    if isinstance(pm, Mapping) and pm.get("outcome"):
        cards.append(_card("prediction market", esc(fmt_ether((pm.get("bounty_paid_to_participants") or {})
                                                              .get("wei")) if pm.get("bounty_paid_to_participants")
                                                    else "–"), esc(pm["outcome"])))
    lat = s.get("latency") or {}
    if lat.get("blocks_p50") is not None:
        cards.append(_card("inclusion latency p50 / p99", f"{esc(fmt_number(lat.get('blocks_p50')))} / "
                           f"{esc(fmt_number(lat.get('blocks_p99')))} blocks",
                           f"wall {esc(fmt_seconds(lat.get('wall_s_p50')))} / "
                           f"{esc(fmt_seconds(lat.get('wall_s_p99')))}"))
    if not cards:
        return _nodata(f.notes.get("summary", "summary.json holds no figures"))
    return '<section class="cards">' + "".join(cards) + "</section>"


def summary_tables(f: Folder) -> str:
    s = f.summary
    if not s:
        return _nodata(f.notes.get("summary", "summary.json is missing"))
    parts = []
    inc = s.get("incentives") or {}
    parts.append("<h3>Incentives per group</h3>")
    if inc:
        parts.append(_table(
            ["group", "policy", "role", "agents", "transactions", "deposits", "refunds", "takes", "fees", "net",
             "net per agent", "points", "reconciled"],
            [[g, v.get("policy", ""), v.get("role", "–"), fmt_number(v.get("agents")), fmt_number(v.get("transactions")),
              _ether_or(v.get("deposits")), _ether_or(v.get("refunds")), _ether_or(v.get("takes")),
              _ether_or(v.get("fees")), _ether_or(v.get("net")),
              fmt_ether(round(float(v["net_per_agent_ether"]) * 1e18)) if v.get("net_per_agent_ether") is not None
              else "–", fmt_number(v.get("points")), f"{v.get('reconciled_agents', '–')}/{v.get('agents', '–')}"]
             for g, v in inc.items() if isinstance(v, Mapping)], num_from=3,
            caption="net = refunds + takes − deposits − fees: what the mechanism and the chain made the group "
                    "gain or lose"))
    else:
        parts.append(_nodata(_absent(s, "incentives", "no per-agent accounts (agents.parquet) were collected")))

    tx = s.get("transactions") or {}
    if tx.get("by_action"):
        statuses = list(dict.fromkeys(k for v in tx["by_action"].values() for k in v))
        parts.append("<h3>Transactions by action and final status</h3>")
        parts.append(_table(["action", *statuses, "total"],
                            [[a, *[fmt_number(c.get(st, 0)) for st in statuses], fmt_number(sum(c.values()))]
                             for a, c in tx["by_action"].items()]))

    corr = s.get("corruption")
    parts.append("<h3>Corruption against the honest-only baseline</h3>")
    if isinstance(corr, Mapping):
        first = corr.get("first_over_threshold")
        pce = corr.get("per_class_end") or {}
        run_pc, base_pc = pce.get("run") or [None, None], pce.get("baseline") or [None, None]
        parts.append(_kv([
            ("accuracy at the end: run / baseline",
             f"{fmt_pct(corr.get('accuracy_end'))} / {fmt_pct(corr.get('baseline_accuracy_end'))}"),
            ("drop at the end / maximum drop", f"{fmt_pct(corr.get('drop_end'))} / {fmt_pct(corr.get('drop_max'))}"),
            ("threshold", fmt_pct(corr.get("threshold"))),
            ("first over the threshold", f"block {first.get('block')} (offset {first.get('block_offset')})"
             if isinstance(first, Mapping) else "never"),
            ("class 0 at the end: run / baseline", f"{fmt_pct(run_pc[0])} / {fmt_pct(base_pc[0])}"),
            ("class 1 at the end: run / baseline", f"{fmt_pct(run_pc[1])} / {fmt_pct(base_pc[1])}"),
            ("attackers' net spend", f"{fmt_number(corr.get('attacker_net_spent_ether'))} ETH"),
            ("attackers' cost per accuracy point",
             f"{fmt_number(corr.get('attacker_cost_per_accuracy_point_ether'))} ETH"
             if corr.get("attacker_cost_per_accuracy_point_ether") is not None else "–"),
        ]))
    else:
        parts.append(_nodata("no counterfactual baseline (evaluation.baseline: counterfactual with a non-honest "
                             "group runs one)"))

    lbg = s.get("latency_by_group") or {}
    parts.append("<h3>Inclusion latency per group</h3>")
    if lbg:
        qs = ("p50", "p90", "p99", "p99_9")
        parts.append(_table(
            ["group", "mined tx", *[f"blocks {q.replace('_', '.')}" for q in qs],
             *[f"wall {q.replace('_', '.')}" for q in qs]],
            [[g, fmt_number(v.get("n")), *[fmt_number(v.get(f"blocks_{q}")) for q in qs],
              *[fmt_seconds(v.get(f"wall_s_{q}")) for q in qs]] for g, v in lbg.items() if isinstance(v, Mapping)]))
    else:
        parts.append(_nodata(_absent(s, "latency_by_group", "no mined transactions")))

    chain = s.get("chain") or {}
    bf = s.get("base_fee") or {}
    gas = s.get("gas") or {}
    parts.append("<h3>Chain and fee market</h3>")
    parts.append(_kv([
        ("blocks (start – end)", f"{fmt_number(chain.get('blocks'))} ({chain.get('start_block', '–')} – "
                                 f"{chain.get('end_block', '–')})" if (chain.get("start_block") or 0) >= 0
         else "none (the run stopped before its first block)"),
        ("chain time", fmt_seconds(chain.get("chain_time_s"))),
        ("gas used / gas limit", fmt_pct(chain.get("gas_used_share"), 2)),
        ("gas used by agents", fmt_number(gas.get("used"))),
        ("base fee min / median / max", f"{fmt_gwei(bf.get('min'))} / {fmt_gwei(bf.get('median'))} / "
                                        f"{fmt_gwei(bf.get('max'))}"),
        ("blocks whose base fee differs from EIP-1559", fmt_number(bf.get("eip1559_deviations"))),
        ("fees paid", fmt_ether((gas.get("fees_paid") or {}).get("wei"))),
        ("deposits kept / refunds paid", f"{fmt_ether((gas.get('deposits_kept') or {}).get('wei'))} / "
                                         f"{fmt_ether((gas.get('refunds_paid') or {}).get('wei'))}"),
        ("agents funded with", fmt_ether(((s.get("agents") or {}).get("funded_total") or {}).get("wei"))),
    ]))

    events = chain.get("chaos_events") or []
    parts.append("<h3>Chaos events</h3>")
    if events:
        parts.append(_table(["block", "offset", "event", "details"],
                            [[ev.get("block"), ev.get("offset", "–"), ev.get("event"),
                              ", ".join(f"{k}={v}" for k, v in ev.items() if k not in ("block", "offset", "event",
                                                                                      "wall"))]
                             for ev in events if isinstance(ev, Mapping)], num_from=4))
    else:
        parts.append('<p class="muted">None in this run.</p>')
    warps = chain.get("time_warps") or []
    parts.append("<h3>Time warps</h3>")
    if warps:
        parts.append(_table(["at block", "chain time skipped"],
                            [[w.get("block"), fmt_seconds((w.get("to") or 0) - (w.get("from") or 0))]
                             for w in warps if isinstance(w, Mapping)], num_from=1,
                            caption="When every agent was idle, the clock moved on to the next moment one "
                                    "wanted to act."))
    else:
        parts.append('<p class="muted">None in this run.</p>')

    rec = s.get("reconciliation") or {}
    if rec.get("mismatches"):
        parts.append("<h3>Reconciliation mismatches</h3>")
        parts.append(_table(["agent", "address", "ledger flow", "balance change"],
                            [[m.get("agent"), m.get("address"), fmt_ether(m.get("ledger_flow")),
                              fmt_ether(m.get("balance_change"))] for m in rec["mismatches"]], num_from=2))
    tp = s.get("throughput") or {}
    dur = s.get("duration") or {}
    parts.append("<h3>Throughput and durations</h3>")
    rows = [(k.replace("_", " "), fmt_number(v)) for k, v in tp.items()]
    rows += [(f"phase {k.removesuffix('_s').replace('_', ' ')}", fmt_seconds(v))
             for k, v in (dur.get("phases") or {}).items()]
    if dur.get("loop_wall_s") is not None:
        rows.append(("run loop", fmt_seconds(dur.get("loop_wall_s"))))
    parts.append(_kv(rows))
    errors = s.get("errors") or []
    if errors:
        parts.append("<h3>Errors during the run</h3><ul class=errors>" +
                     "".join(f"<li><code>{esc(e)}</code></li>" for e in errors[:50]) + "</ul>")
    warnings = s.get("warnings") or []
    if warnings:
        parts.append("<h3>What agents could not do</h3><ul class=errors>" +
                     "".join(f"<li>{esc(w)}</li>" for w in warnings[:50]) + "</ul>")
    parts.append('<details><summary>Every field of summary.json</summary>' +
                 _kv((k, v) for k, v in _flatten(s)) + "</details>")
    return "".join(parts)


def _absent(s: Mapping[str, Any], key: str, empty: str) -> str:
    return empty if key in s else f"summary.json has no {key} (written by an older version)"


def _flatten(obj: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(obj, Mapping):
        if set(obj) == {"wei", "ether"}:
            yield prefix, fmt_ether(obj["wei"])
            return
        if not obj:
            yield prefix, "{}"
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list) and obj and any(isinstance(v, (Mapping, list)) for v in obj):
        for i, v in enumerate(obj):
            yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, json.dumps(obj) if isinstance(obj, list) else ("–" if obj is None else str(obj))


# Scenario fields by the unit of their value once resolved (scenario.json holds wei and seconds).
_ETHER_KEYS = {"balance", "funding", "budget", "value_per_valid", "max_tip_ether"}
_GWEI_KEYS = {"base_fee", "max_tip", "tip"}
_BLOCK_KEYS = {"duration", "every", "at", "blocks"}
_SECONDS_KEYS = {"block_time", "refund_wait", "owner_claim_wait", "any_address_claim_wait", "max_wall_time",
                 "recheck_s", "give_up_s", "jitter", "burst_every"}


def _scenario_value(key: str, v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "–" if v is None else str(v).lower()
    if isinstance(v, (int, float)):
        if key in _ETHER_KEYS:
            return fmt_ether(int(v))
        if key in _GWEI_KEYS:
            return fmt_gwei(v)
        if key in _SECONDS_KEYS:
            return fmt_seconds(v)
        if key in _BLOCK_KEYS and isinstance(v, int):
            return f"{v:,} blocks"
        if key == "cost_weight":
            return f"{v:.4g} wei"
        if key == "rate":
            return f"{v:g}/s"
        return fmt_number(v, 6)
    if isinstance(v, (list, Mapping)):
        if not v:
            return "none"
        if isinstance(v, list) and all(isinstance(x, Mapping) for x in v):
            return "; ".join(", ".join(f"{k}: {_scenario_value(k, x)}" for k, x in item.items()) for item in v)
        if isinstance(v, Mapping):
            return ", ".join(f"{k}: {_scenario_value(k, x)}" for k, x in v.items())
        return ", ".join(str(x) for x in v)
    return str(v)


def scenario_tables(f: Folder) -> str:
    sc = f.scenario
    if not sc:
        return _nodata(f.notes.get("scenario", "no scenario file"))
    parts = []
    agents = sc.get("agents") or []
    if agents:
        parts.append("<h3>Agent groups</h3>")
        parts.append(_table(
            ["group", "policy", "agents", "funding each", "samples each", "rate", "arrival", "parameters"],
            [[g.get("name") or g.get("policy"), g.get("policy"), fmt_number(g.get("count")),
              _scenario_value("funding", g.get("funding")), fmt_number(g.get("samples_per_agent")),
              _scenario_value("rate", g.get("rate")), g.get("arrival", "–"),
              _scenario_value("params", g.get("params") or {})] for g in agents if isinstance(g, Mapping)],
            num_from=2))
    sections = [(k, v) for k, v in sc.items() if isinstance(v, Mapping)]
    top = [(k, _scenario_value(k, v)) for k, v in sc.items() if not isinstance(v, (Mapping, list))]
    if top:
        parts.append(_kv(top))
    grid = []
    for name, sec in sections:
        rows = [(k, _scenario_value(k, v)) for k, v in sec.items()]
        grid.append(f'<div><h4>{esc(name)}</h4>{_kv(rows)}</div>')
    parts.append('<div class="grid">' + "".join(grid) + "</div>")
    if f.scenario_yaml:
        parts.append("<details><summary>scenario.yaml (as resolved: wei and seconds)</summary>"
                     f"<pre>{esc(f.scenario_yaml)}</pre></details>")
    return "".join(parts)


def files_section(f: Folder, baseline: Folder | None) -> str:
    items = []
    for p in sorted(f.path.iterdir()) if f.path.is_dir() else []:
        if p.is_file() and not p.name.startswith(".") and p.name != REPORT_NAME:
            items.append(f'<li><a href="{esc(p.name)}">{esc(p.name)}</a> <span class="muted">'
                         f'{esc(_size(p.stat().st_size))}</span></li>')
    if baseline is not None:
        link = ('<a href="baseline/report.html">baseline/report.html</a>'
                if (baseline.path / REPORT_NAME).exists() else "<code>baseline/</code>")
        items.append(f"<li>{link} <span class=muted>the honest-only counterfactual run</span></li>")
    notes = [f"<li>{esc(v)}</li>" for k, v in f.notes.items() if k in ("summary", *TABLES, "scenario")]
    out = "<ul class=files>" + "".join(items) + "</ul>"
    if notes:
        out += "<h4>Missing or empty</h4><ul class=notes>" + "".join(notes) + "</ul>"
    return out


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


