"""The report's sections on money and on what the figures rest on: who made and lost what (per group
with means per agent and the change against the honest-only baseline, per agent, per contribution),
who took from whom, the ether left locked in the trainer, the corruption shared by role, the run's
metrics (orchestrator/metrics.py), the dataset's label noise, the deposit rule, the prediction
market's outcome and how many distinct contributions each group made."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import flows as flows_mod
from . import metrics
from .report_folder import Folder, group_order
from .report_format import _kv, _nodata, _table, esc, fmt_ether, fmt_number, fmt_pct

TOP_CONTRIBUTIONS = 30  # rows of the per-contribution table shown (the Parquet file has them all)


def table_flows(f: Folder) -> flows_mod.Flows | None:
    """The per-contribution flows from the folder's own tables (any folder with ledger, contributions
    and agents), so the report never depends on a file an older run did not write."""
    if not (f.rows("ledger") and f.rows("contributions") and f.rows("agents")):
        return None
    a = f.tables["agents"]
    assert a is not None
    who = {addr: (int(ag), str(g)) for addr, ag, g in zip(a["address"], a["agent"], a["group"])}
    return flows_mod.compute(f.tables["ledger"], f.tables["contributions"], who)  # type: ignore[arg-type]


def _eth(v: Any) -> str:
    return "–" if v is None else fmt_ether(round(float(v) * 1e18))


def _signed(v: Any) -> str:
    return "–" if v is None else ("+" if float(v) > 0 else "") + _eth(v)


def money_sections(f: Folder, flows: flows_mod.Flows | None) -> str:
    s = f.summary or {}
    parts = [settlement_section(s, flows), groups_table(s), taken_section(f, flows), agents_table(f, flows),
             contributions_table(flows)]
    return "".join(parts)


def settlement_section(s: Mapping[str, Any], flows: flows_mod.Flows | None) -> str:
    st = s.get("settlement") if isinstance(s.get("settlement"), Mapping) else None
    if st is None and flows is None:
        return "<h3>Ether left in the trainer</h3>" + _nodata("summary.json has no settlement and the folder has "
                                                              "no contributions table")
    locked = int(st["locked"]["wei"]) if st else flows.locked  # type: ignore[union-attr]
    deposits = int(st["deposits"]["wei"]) if st else flows.deposits  # type: ignore[union-attr]
    balance = ((st or {}).get("trainer_balance_end") or {}).get("wei")
    ok = (st or {}).get("ok")
    check = ("✓ equals the trainer's balance at the end" if ok else
             f"✗ the trainer holds {fmt_ether(balance)}: {(st or {}).get('message', '')}" if ok is False else
             (st or {}).get("note", "not checked: the trainer's balance at the end was not recorded"))
    rows = [("locked in the trainer (claimed by nobody)", fmt_ether(locked)),
            ("of all deposits", f"{fmt_ether(deposits)} ({fmt_pct(locked / deposits if deposits else None)})"),
            ("trainer's balance at the end", fmt_ether(balance) if balance is not None else "not recorded"),
            ("check", check)]
    if st:
        rows.append(("contributions with ether still locked",
                     f"{fmt_number(st.get('contributions_with_locked_ether'))} of {fmt_number(st.get('contributions'))}"))
        if not st.get("attributed", True):
            rows.append(("per contribution", "the ledger has no target_tx column (an older run): totals only"))
    cls = "kv bad" if ok is False else "kv"
    return ("<h3>Ether left in the trainer</h3><p class=muted>Deposits nobody claimed stay in the trainer "
            "contract. They are counted as their authors' losses (in <i>net</i>) and shown here apart.</p>"
            + _kv(rows, cls=cls))


def groups_table(s: Mapping[str, Any]) -> str:
    inc = s.get("incentives") or {}
    if not inc:
        return ""
    base = any(isinstance(v, Mapping) and v.get("vs_baseline") for v in inc.values())
    heads = ["group", "role", "agents", "net total", "net per agent", "deposits / agent", "refunds / agent",
             "takes / agent", "fees / agent", "own deposits locked", "taken by others"]
    if base:
        heads += ["net per agent vs baseline"]
    rows = []
    for g, v in inc.items():
        if not isinstance(v, Mapping):
            continue
        pa = v.get("per_agent") or {}
        row = [g, v.get("role", "–"), fmt_number(v.get("agents")), fmt_ether(v.get("net")),
               _eth(v.get("net_per_agent_ether")), _eth(pa.get("deposits_ether")), _eth(pa.get("refunds_ether")),
               _eth(pa.get("takes_ether")), _eth(pa.get("fees_ether")),
               fmt_ether(v["locked"]) if v.get("locked") is not None else "–",
               fmt_ether(v["taken_by_others"]) if v.get("taken_by_others") is not None else "–"]
        if base:
            vb = v.get("vs_baseline")
            row.append(_signed(vb.get("net_per_agent_ether")) if isinstance(vb, Mapping) else "not in the baseline")
        rows.append(row)
    return ("<h3>Profit and loss per group</h3><div class=wide>" + _table(
        heads, rows, num_from=2,
        caption="Means per agent beside the group total: groups differ in size. net = refunds + takes − "
                "deposits − fees. Own deposits locked: part of the group's loss still in the trainer. vs "
                "baseline: net per agent minus the same group's in the honest-only run (baseline/).") + "</div>")


def taken_section(f: Folder, flows: flows_mod.Flows | None) -> str:
    st = (f.summary or {}).get("settlement")
    if isinstance(st, Mapping) and isinstance(st.get("taken_matrix"), Mapping):
        m = st["taken_matrix"]
        order, wei = list(m.get("groups") or []), [[int(x) for x in r] for r in m.get("wei") or []]
    elif flows is not None:
        order = list(dict.fromkeys([*group_order(f), *flows.taken, *(a for r in flows.taken.values() for a in r)]))
        wei = [[flows.taken.get(t, {}).get(a, 0) for a in order] for t in order]
    else:
        return "<h3>Who took from whom</h3>" + _nodata("no per-contribution flows in this folder")
    if not any(any(r) for r in wei):
        return "<h3>Who took from whom</h3><p class=muted>Nobody took anyone's deposit in this run.</p>"
    keep = [i for i, g in enumerate(order) if any(wei[i]) or any(r[i] for r in wei)]
    head = ("<table class=matrix><thead><tr><th>taker ↓ · author →</th>"
            + "".join(f"<th class=num>{esc(order[j])}</th>" for j in keep) + "<th class=num>total taken</th></tr>"
            "</thead><tbody>")
    body = "".join(
        f"<tr><th>{esc(order[i])}</th>" + "".join(
            f'<td class=num data-taker="{esc(order[i])}" data-author="{esc(order[j])}">'
            f"{esc(fmt_ether(wei[i][j]) if wei[i][j] else '·')}</td>" for j in keep)
        + f"<td class=num>{esc(fmt_ether(sum(wei[i])))}</td></tr>" for i in keep)
    pairs = sorted(((wei[i][j], order[i], order[j]) for i in keep for j in keep if wei[i][j]), reverse=True)
    listing = _table(["taker group", "author group", "ether taken"],
                     [[t, a, fmt_ether(w)] for w, t, a in pairs], num_from=2)
    return ("<h3>Who took from whom</h3>" + head + body + "</tbody><caption>Ether paid by reports (take and "
            "take-all) from the deposits of each author group (columns) to each taker group (rows).</caption>"
            "</table>" + listing)


def agents_table(f: Folder, flows: flows_mod.Flows | None) -> str:
    if not f.rows("agents"):
        return ""
    a = f.tables["agents"]
    assert a is not None
    locked: dict[int, int] = {}
    lost: dict[int, int] = {}
    distinct = flows.distinct_by_agent if flows else {}
    for c in flows.contributions if flows else []:
        locked[c.agent] = locked.get(c.agent, 0) + c.locked
        lost[c.agent] = lost.get(c.agent, 0) + c.taken
    rows = [[a["agent"][i], a["group"][i], fmt_ether(a["deposits"][i]), fmt_ether(a["refunds"][i]),
             fmt_ether(a["takes"][i]), fmt_ether(a["fees"][i]), fmt_ether(a["net"][i]),
             fmt_ether(lost.get(int(a["agent"][i]), 0)) if flows else "–",
             fmt_ether(locked.get(int(a["agent"][i]), 0)) if flows else "–", fmt_number(a["points"][i]),
             fmt_number(distinct.get(int(a["agent"][i]), 0)) if flows else "–"]
            for i in range(f.rows("agents"))]
    return ("<details><summary>Profit and loss per agent</summary>" + _table(
        ["agent", "group", "deposits", "refunded", "took", "fees", "net", "own deposits taken", "own locked",
         "points", "distinct samples"], rows, num_from=2) + "</details>")


def contributions_table(flows: flows_mod.Flows | None) -> str:
    if flows is None or not flows.contributions:
        return ""
    top = sorted(flows.contributions, key=lambda c: (-(c.taken + c.locked), c.block))[:TOP_CONTRIBUTIONS]
    rows = [[c.contribution_tx[:12] + "…", c.group, c.agent, c.block, fmt_ether(c.deposit), fmt_ether(c.refunded),
             fmt_ether(c.taken), _takers(c.taken_by) if c.taken_by else "–", fmt_ether(c.locked)]
            for c in top]
    return (f"<details><summary>Per contribution: where each deposit went ({len(flows.contributions)} "
            f"contributions; the {len(top)} with most taken or locked)</summary>" + _table(
                ["addData tx", "author group", "agent", "block", "deposit", "refunded", "taken", "taken by",
                 "locked"], rows, num_from=2,
                caption="Every contribution: contribution_flows.parquet.") + "</details>")


def _takers(text: str) -> str:
    return ", ".join(f"{g} {fmt_ether(w)}" for g, _, w in (p.partition(": ") for p in text.split("; ")))


# ---- what the figures rest on --------------------------------------------------------------------


def metrics_section(f: Folder) -> str:
    s = f.summary
    if not s:
        return _nodata("summary.json is missing")
    values = s.get("metrics") if isinstance(s.get("metrics"), Mapping) else metrics.compute(s)
    rows = []
    for m in metrics.REGISTRY.values():
        v = values.get(m.name)
        shown = "–" if v is None else (fmt_pct(v, 2) if m.unit == "" and m.name.endswith(("kept", "end", "share"))
                                       else f"{fmt_number(v)} {m.unit}".strip())
        rows.append([m.title, shown, m.direction, m.description])
    return _table(["metric", "value", "direction", "how it is computed"], rows, num_from=1, num_to=2,
                  caption="The same definitions rank the cells of a sweep (orchestrator/metrics.py).")


def attribution_section(s: Mapping[str, Any]) -> str:
    att = (s.get("corruption") or {}).get("attribution")
    if not isinstance(att, Mapping) or not att.get("by_group"):
        return ""
    rows = [[g, v.get("role"), fmt_number(v.get("contributions")), fmt_pct(v.get("share")),
             f"{float(v.get('drop_pts') or 0):.2f} pp"] for g, v in att["by_group"].items()]
    by_role = "; ".join(f"{r}: {float(v['drop_pts']):.2f} pp ({fmt_pct(v['share'])})"
                        for r, v in (att.get("by_role") or {}).items())
    return ("<h4>Who the drop is attributed to</h4>" + _table(
        ["group", "role", "contributions", "share", "accuracy drop"], rows, num_from=2,
        caption=f"{att.get('rule', '')}. By role: {by_role or 'none'}."))


def context_section(f: Folder) -> str:
    """Label noise, the deposit rule and the market's outcome: what readers would otherwise miss."""
    s = f.summary or {}
    sc = f.scenario or {}
    rows: list[tuple[str, Any]] = []
    ds = s.get("dataset") or {}
    noise = ds.get("label_noise", (sc.get("dataset") or {}).get("noise"))
    if noise is not None:
        rows.append(("dataset label noise", f"{fmt_pct(noise)} of the dataset's labels are flipped by the "
                     "generator: honest data carries this much noise too"))
    dr = s.get("deposit_rule")
    if isinstance(dr, Mapping):
        rows.append(("deposit rule", dr.get("formula")))
        rows.append(("same-block maximum deposit",
                     f"{fmt_ether((dr.get('same_block_max') or {}).get('wei'))}: every add after the first in a "
                     f"block pays it ({fmt_number(dr.get('adds_at_max'))} of {fmt_number(dr.get('adds'))} adds did)"))
        if dr.get("deposit_min"):
            rows.append(("deposits paid min / max", f"{fmt_ether(dr['deposit_min']['wei'])} / "
                                                    f"{fmt_ether(dr['deposit_max']['wei'])}"))
    pm = s.get("prediction_market")
    if isinstance(pm, Mapping) and pm.get("outcome"):
        rows.append(("prediction market", pm["outcome"]))
    if not rows:
        return ""
    return "<h3>What the figures rest on</h3>" + _kv(rows)


def diversity_section(f: Folder, flows: flows_mod.Flows | None) -> str:
    """Contributions against distinct ones per group: an echo of the model's own prediction on the
    same sample earns points without adding information."""
    s = f.summary or {}
    distinct: dict[str, Any] = {g: v.get("distinct_contributions") for g, v in (s.get("incentives") or {}).items()
                                if isinstance(v, Mapping) and v.get("distinct_contributions")}
    if not distinct and flows is not None:
        distinct = dict(flows.distinct)
    if not distinct:
        return ""
    points = {g: v.get("points") for g, v in (s.get("incentives") or {}).items() if isinstance(v, Mapping)}
    rows = [[g, fmt_number(d["contributions"]), fmt_number(d["distinct"]),
             fmt_pct(d["distinct"] / d["contributions"] if d["contributions"] else None),
             fmt_number(points.get(g))] for g, d in distinct.items()]
    return ("<h3>Distinct contributions per group</h3>" + _table(
        ["group", "contributions", "distinct samples", "distinct share", "points"], rows, num_from=1,
        caption="Distinct samples: per agent, near-copies merged (the same values reordered, or feature sets "
                "that differ by one feature each way), summed per group. An agent that re-submits one sample "
                "and near-copies of it labelled with the model's own prediction collects points without "
                "adding information: its distinct share is low."))


def page_sections(f: Folder, flows: flows_mod.Flows | None) -> Sequence[tuple[str, str, str]]:
    """(anchor, title, html) of the sections this module adds to the page."""
    s = f.summary or {}
    return [("money", "Who made and lost money", money_sections(f, flows) + attribution_section(s)),
            ("metrics", "Metrics", metrics_section(f) + context_section(f))]
