"""report.html: one self-contained page per results folder (no script, no CDN, no external fetch).

    write_report(run_dir)           # writes run_dir/report.html and returns its path
    dcai report RESULTS_DIR         # the same from the command line (also its baseline/ folder)

The page reads only the folder's own files (summary.json, scenario.json/.yaml and the Parquet tables;
baseline/ when there is one) and works for any folder: a partial or failed run gets every section it has
data for and a clear "no data" note for the rest. Plots are inline SVG from matplotlib (orchestrator/plots.py);
wei amounts are shown in ether, fees and gas prices in gwei. docs/report.md describes the page.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import plots
from .results import atomic_write_bytes

REPORT_NAME = "report.html"
TABLES = ("blocks", "ledger", "agents", "accuracy")
MINED = ("included", "reverted")


# ---- reading a results folder --------------------------------------------------------------------


@dataclass
class Folder:
    """What a results folder holds; tables as columns (wei decimals as Python ints), None when unusable."""

    path: Path
    summary: dict[str, Any] | None = None
    scenario: dict[str, Any] | None = None
    scenario_yaml: str | None = None
    tables: dict[str, dict[str, list[Any]] | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # why a file gave nothing

    def rows(self, name: str) -> int:
        cols = self.tables.get(name)
        return len(next(iter(cols.values()), [])) if cols else 0

    def missing(self, name: str) -> str:
        return self.notes.get(name, f"{name}.parquet has no rows")


def _read_json(path: Path) -> tuple[Any, str | None]:
    if not path.exists():
        return None, f"{path.name} is missing"
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as e:
        return None, f"{path.name} could not be read ({type(e).__name__}: {e})"


def _read_table(path: Path) -> tuple[dict[str, list[Any]] | None, str | None]:
    if not path.exists():
        return None, f"{path.name} is missing"
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - a damaged file must not cost the rest of the report
        return None, f"{path.name} could not be read ({type(e).__name__}: {e})"
    cols: dict[str, list[Any]] = {}
    for name in table.column_names:
        col = table.column(name)
        values = col.to_pylist()
        if pa.types.is_decimal(col.type):
            values = [None if v is None else int(v) for v in values]
        cols[name] = values
    if table.num_rows == 0:
        return cols, f"{path.name} has no rows"
    return cols, None


def read_folder(path: Path) -> Folder:
    f = Folder(Path(path))
    f.summary, note = _read_json(f.path / "summary.json")
    if note:
        f.notes["summary"] = note
    if not isinstance(f.summary, dict):
        f.summary = None
    scenario, note = _read_json(f.path / "scenario.json")
    yaml_path = f.path / "scenario.yaml"
    if yaml_path.exists():
        try:
            f.scenario_yaml = yaml_path.read_text()
        except OSError as e:
            f.notes["scenario.yaml"] = f"scenario.yaml could not be read ({e})"
    if not isinstance(scenario, dict) and f.scenario_yaml:
        try:
            import yaml

            scenario = yaml.safe_load(f.scenario_yaml)
        except Exception as e:  # noqa: BLE001
            f.notes["scenario"] = f"scenario.yaml could not be parsed ({type(e).__name__})"
    f.scenario = scenario if isinstance(scenario, dict) else None
    if f.scenario is None:
        f.notes.setdefault("scenario", "scenario.json and scenario.yaml are missing")
    for name in TABLES:
        cols, note = _read_table(f.path / f"{name}.parquet")
        f.tables[name] = cols
        if note:
            f.notes[name] = note
    return f


def start_block(f: Folder) -> int | None:
    chain = (f.summary or {}).get("chain") or {}
    if isinstance(chain.get("start_block"), int) and chain["start_block"] >= 0:
        return int(chain["start_block"])
    for name, col in (("accuracy", "block"), ("blocks", "number")):
        if f.rows(name):
            return int(min(f.tables[name][col]))  # type: ignore[index]
    return None


def end_block(f: Folder) -> int | None:
    chain = (f.summary or {}).get("chain") or {}
    if isinstance(chain.get("end_block"), int) and chain["end_block"] >= 0:
        return int(chain["end_block"])
    if f.rows("blocks"):
        return int(max(f.tables["blocks"]["number"]))  # type: ignore[index]
    return None


# ---- formatting ----------------------------------------------------------------------------------


class Raw(str):
    """HTML that is already safe."""


def esc(v: Any) -> str:
    return v if isinstance(v, Raw) else html.escape(str(v), quote=True)


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def fmt_number(v: Any, digits: int = 4) -> str:
    x = _num(v)
    if x is None:
        return "–"
    if isinstance(v, int) or (isinstance(v, float) and x.is_integer() and abs(x) < 1e15):
        return f"{int(x):,}"
    if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
        return f"{x:.{digits}g}"
    return f"{x:,.{digits}g}"


def fmt_ether(wei: Any) -> str:
    """Wei (int or integer string) as ether: four decimals from 1 ether up, four significant digits below."""
    try:
        w = int(wei)
    except (TypeError, ValueError):
        return "–"
    e = w / 1e18
    if w == 0:
        return "0 ETH"
    if abs(e) >= 1:
        return f"{e:,.4f} ETH"
    digits = max(4, 3 - math.floor(math.log10(abs(e))))
    return f"{e:.{min(digits, 18)}f} ETH"


def fmt_gwei(wei: Any) -> str:
    x = _num(wei)
    if x is None:
        return "–"
    if x != 0 and abs(x) < 1e6:  # under a thousandth of a gwei the gwei figure says nothing: wei
        return f"{int(x):,} wei"
    return f"{x / 1e9:,.4g} gwei"


def fmt_pct(v: Any, digits: int = 1) -> str:
    x = _num(v)
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def fmt_seconds(v: Any) -> str:
    x = _num(v)
    if x is None:
        return "–"
    return f"{x:,.3g} s" if abs(x) < 60 else f"{x:,.0f} s ({plots.human_seconds(x)})"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "", num_from: int = 1,
           caption: str = "") -> str:
    """A table; columns from `num_from` on are right-aligned (numbers)."""
    rows = list(rows)
    if not rows:
        return '<p class="nodata">No rows.</p>'
    head = "".join(f'<th{" class=num" if i >= num_from else ""}>{esc(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if i >= num_from else ""}>{esc(c)}</td>' for i, c in enumerate(r)) + "</tr>"
        for r in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f'<table class="{cls}">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _kv(rows: Iterable[tuple[str, Any]], cls: str = "kv") -> str:
    rows = [(k, v) for k, v in rows]
    if not rows:
        return '<p class="nodata">No data.</p>'
    return f'<table class="{cls}"><tbody>' + "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows) + "</tbody></table>"


def _nodata(text: str) -> str:
    return f'<p class="nodata">No data: {esc(text)}</p>'


# ---- derived data --------------------------------------------------------------------------------


def group_order(f: Folder) -> list[str]:
    order: list[str] = []
    groups = ((f.summary or {}).get("agents") or {}).get("groups")
    if isinstance(groups, Mapping):
        order.extend(groups)
    for g in (f.scenario or {}).get("agents") or []:
        if isinstance(g, Mapping):
            order.append(str(g.get("name") or g.get("policy")))
    for name in ("agents", "ledger"):
        if f.rows(name):
            order.extend(f.tables[name]["group"])  # type: ignore[index]
    return list(dict.fromkeys(order))


def _percentile(values: Sequence[float], q: float) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.percentile(v, 100 * q)) if v else None


def latency_by_group(ledger: Mapping[str, Sequence[Any]], groups: Sequence[str]) -> dict[str, dict[str, Any]]:
    blocks: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}
    for i, status in enumerate(ledger.get("status", [])):
        if status not in MINED or ledger["included_block"][i] < 0:
            continue
        g = ledger["group"][i]
        blocks.setdefault(g, []).append(ledger["included_block"][i] - ledger["submitted_block"][i])
        iw, sw = ledger["included_wall"][i], ledger["submitted_wall"][i]
        if iw is not None and sw is not None:
            wall.setdefault(g, []).append(iw - sw)
    out = {}
    for g in [g for g in groups if g in blocks] + [g for g in blocks if g not in groups]:
        out[g] = {"n": len(blocks[g])}
        for q, name in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
            out[g][f"blocks_{name}"] = _percentile(blocks[g], q)
            out[g][f"wall_s_{name}"] = _percentile(wall.get(g, []), q)
    return out


def flows_by_group(ledger: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, list[float]]]:
    """Cumulative ether moved per group by inclusion block: received - value - fee for an included
    transaction, -fee for a reverted one (the reconciliation's rule)."""
    per: dict[str, dict[int, int]] = {}
    for i, status in enumerate(ledger.get("status", [])):
        if status not in MINED or ledger["included_block"][i] < 0:
            continue
        fee = int(ledger["gas_used"][i] or 0) * int(ledger["effective_gas_price"][i] or 0)
        flow = -fee if status == "reverted" else int(ledger["received"][i] or 0) - int(ledger["value"][i] or 0) - fee
        d = per.setdefault(ledger["group"][i], {})
        b = int(ledger["included_block"][i])
        d[b] = d.get(b, 0) + flow
    out = {}
    for g, d in per.items():
        blocks = sorted(d)
        total, cum = 0, []
        for b in blocks:
            total += d[b]
            cum.append(total / 1e18)
        out[g] = {"block": blocks, "cum_ether": cum, "total_wei": [total]}
    return out


def validations_by_group(ledger: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, list[float]]]:
    per: dict[str, dict[int, int]] = {}
    for i, status in enumerate(ledger.get("status", [])):
        if status == "included" and ledger["action"][i] == "refund":
            d = per.setdefault(ledger["group"][i], {})
            b = int(ledger["included_block"][i])
            d[b] = d.get(b, 0) + 1
    out = {}
    for g, d in per.items():
        blocks = sorted(d)
        out[g] = {"block": blocks, "cum": list(np.cumsum([d[b] for b in blocks]))}
    return out


def _accuracy_columns(cols: Mapping[str, Sequence[Any]], shift: int = 0) -> dict[str, list[float]]:
    order = np.argsort(np.asarray(cols["block"]), kind="stable")

    def col(name: str) -> list[float]:
        vals = cols.get(name) or [None] * len(order)
        return [float("nan") if vals[i] is None else float(vals[i]) for i in order]

    out = {"x": [int(cols["block"][i]) + shift for i in order], "accuracy": col("accuracy"),
           "accuracy_class0": col("accuracy_class0"), "accuracy_class1": col("accuracy_class1")}
    # Multi-class runs: every class's column from the per-class lists (older results have none).
    lists = cols.get("accuracy_per_class") or []
    n_classes = max((len(v) for v in lists if v is not None), default=0)
    for c in range(2, n_classes):
        out[f"accuracy_class{c}"] = [float("nan") if lists[i] is None or c >= len(lists[i]) or lists[i][c] is None
                                     else float(lists[i][c]) for i in order]
    return out


# ---- the plots -----------------------------------------------------------------------------------


def plot_markers(f: Folder) -> plots.Markers:
    s0, s1 = start_block(f), end_block(f)
    xlim = (s0, s1) if s0 is not None and s1 is not None and s1 > s0 else None
    return plots.markers_from_summary(f.summary, xlim)


def markers_key(markers: plots.Markers) -> str:
    """What the lines on every block axis mean, once above the plots."""
    if not markers.chaos and not markers.warps:
        return ('<p class="markers muted">No chaos event and no time warp in this run: nothing is marked on the '
                "block axes.</p>")
    out = ['<div class="markers">']
    if markers.chaos:
        out.append('<p><span class="swatch chaos"></span><b>Chaos events</b> (numbered red dashed lines on every '
                   "block axis):</p><ol>" + "".join(
                       f'<li value="{i}">{esc(label)} <span class="muted">at block {block}</span></li>'
                       for i, block, label in plots.chaos_key(markers)) + "</ol>")
    if markers.warps:
        out.append('<p><span class="swatch warp"></span><b>Time warps</b> (grey dotted lines: every agent was idle, '
                   "so the chain clock moved on): " + ", ".join(
                       f"block {b} ({esc(label)})" for b, label in markers.warps) + ".</p>")
    out.append("</div>")
    return "".join(out)


def build_plots(f: Folder, baseline: Folder | None) -> list[plots.Plot]:
    groups = group_order(f)
    colors = plots.group_colors(groups)
    s0 = start_block(f)
    markers = plot_markers(f)
    ledger = f.tables.get("ledger") if f.rows("ledger") else None
    out: list[plots.Plot] = []

    def attempt(fn: Callable[[], plots.Plot], key: str, title: str) -> None:
        try:
            out.append(fn())
        except Exception as e:  # noqa: BLE001 - one bad plot must not cost the report
            out.append(plots.Plot(key, title, "", note=f"could not draw this plot ({type(e).__name__}: {e})"))

    # Accuracy against the baseline, aligned by offset from each run's start block.
    def accuracy() -> plots.Plot:
        run = _accuracy_columns(f.tables["accuracy"]) if f.rows("accuracy") else None  # type: ignore[arg-type]
        base = None
        if baseline is not None and baseline.rows("accuracy") and s0 is not None:
            b0 = start_block(baseline)
            base = _accuracy_columns(baseline.tables["accuracy"], shift=s0 - (b0 or 0))  # type: ignore[arg-type]
        return plots.accuracy_plot(run, base, markers, f.missing("accuracy"))

    attempt(accuracy, "accuracy", "Model accuracy over blocks")

    blocks = None
    if f.rows("blocks"):
        b = f.tables["blocks"]
        assert b is not None
        keep = [i for i, n in enumerate(b["number"]) if s0 is None or n >= s0]
        blocks = {
            "number": [b["number"][i] for i in keep],
            "base_fee_gwei": [(b["base_fee"][i] or 0) / 1e9 for i in keep],
            "fill": [b["gas_used"][i] / b["gas_limit"][i] if b["gas_limit"][i] else 0.0 for i in keep],
            "pool_pending": [b["pool_pending"][i] for i in keep],
            "pool_queued": [b["pool_queued"][i] for i in keep],
        }
    attempt(lambda: plots.fee_plot(blocks, markers, f.missing("blocks")), "fees", "Base fee and block fill")
    attempt(lambda: plots.txpool_plot(blocks, markers, f.missing("blocks")), "txpool", "Transaction pool depth")
    attempt(lambda: plots.latency_plot(latency_by_group(ledger, groups) if ledger else {}, colors,
                                       f.missing("ledger")), "latency", "Inclusion latency per group")

    def deposits() -> plots.Plot:
        adds = None
        if ledger:
            idx = [i for i, (a, s) in enumerate(zip(ledger["action"], ledger["status"]))
                   if a == "add" and s == "included"]
            adds = {"block": [ledger["included_block"][i] for i in idx],
                    "deposit_ether": [int(ledger["deposit"][i] or 0) / 1e18 for i in idx],
                    "group": [ledger["group"][i] for i in idx]}
        return plots.deposit_plot(adds, colors, markers, f.missing("ledger"))

    attempt(deposits, "deposit", "Deposit price over blocks")

    def pnl() -> plots.Plot:
        flows = flows_by_group(ledger) if ledger else {}
        start: dict[str, float] = {}
        agents: dict[str, int] = {}
        if f.rows("agents"):
            a = f.tables["agents"]
            assert a is not None
            for g, bal in zip(a["group"], a["start_balance"]):
                start[g] = start.get(g, 0.0) + int(bal or 0) / 1e18
                agents[g] = agents.get(g, 0) + 1
        else:  # the scenario's funding: what each agent started with
            for g in (f.scenario or {}).get("agents") or []:
                name = str(g.get("name") or g.get("policy"))
                if isinstance(g.get("funding"), (int, float)) and isinstance(g.get("count"), int):
                    start[name] = g["funding"] * g["count"] / 1e18
                    agents[name] = g["count"]
        ordered = {g: flows[g] for g in groups if g in flows} | flows
        return plots.pnl_plot(ordered, start, agents, colors, markers, f.missing("ledger"))

    attempt(pnl, "pnl", "Net P&L and balances per group")

    def points() -> plots.Plot:
        final: dict[str, int] = {}
        if f.rows("agents"):
            a = f.tables["agents"]
            assert a is not None
            for g in groups:
                if g in a["group"]:
                    final[g] = sum(int(p or 0) for gg, p in zip(a["group"], a["points"]) if gg == g)
        over = validations_by_group(ledger) if ledger else {}
        over = {g: over[g] for g in groups if g in over} | over
        note = "" if (ledger or f.rows("agents")) else f"{f.missing('agents')}; {f.missing('ledger')}"
        return plots.points_plot(final, over, colors, markers, note)

    attempt(points, "points", "Points per group")
    return out


# ---- the page sections ---------------------------------------------------------------------------


def _status_badge(status: Any) -> str:
    s = str(status or "unknown")
    cls = {"completed": "ok", "interrupted": "warn", "failed": "bad"}.get(s, "warn")
    return f'<span class="badge {cls}">{esc(s)}</span>'


def _card(label: str, value: str, sub: str = "", cls: str = "") -> str:
    return (f'<div class="card {cls}"><div class="label">{esc(label)}</div><div class="value">{value}</div>'
            f'<div class="sub">{sub}</div></div>')


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
    lat = s.get("latency") or {}
    if lat.get("blocks_p50") is not None:
        cards.append(_card("inclusion latency p50 / p99", f"{esc(fmt_number(lat.get('blocks_p50')))} / "
                           f"{esc(fmt_number(lat.get('blocks_p99')))} blocks",
                           f"wall {esc(fmt_seconds(lat.get('wall_s_p50')))} / "
                           f"{esc(fmt_seconds(lat.get('wall_s_p99')))}"))
    if not cards:
        return _nodata(f.notes.get("summary", "summary.json holds no figures"))
    return '<section class="cards">' + "".join(cards) + "</section>"


def plot_section(p: plots.Plot) -> str:
    body = p.svg if p.svg else f'<div class="nodata plot-nodata" data-plot="{esc(p.key)}">No data: {esc(p.note)}</div>'
    return (f'<figure class="plot" id="plot-{esc(p.key)}"><h3>{esc(p.title)}</h3>{body}'
            f"<figcaption>{esc(p.caption)}</figcaption></figure>")


def _ether_or(v: Any) -> str:
    return fmt_ether(v) if v is not None else "–"


def summary_tables(f: Folder) -> str:
    s = f.summary
    if not s:
        return _nodata(f.notes.get("summary", "summary.json is missing"))
    parts = []
    inc = s.get("incentives") or {}
    parts.append("<h3>Incentives per group</h3>")
    if inc:
        parts.append(_table(
            ["group", "policy", "agents", "transactions", "deposits", "refunds", "takes", "fees", "net",
             "net per agent", "points", "reconciled"],
            [[g, v.get("policy", ""), fmt_number(v.get("agents")), fmt_number(v.get("transactions")),
              _ether_or(v.get("deposits")), _ether_or(v.get("refunds")), _ether_or(v.get("takes")),
              _ether_or(v.get("fees")), _ether_or(v.get("net")),
              fmt_ether(round(float(v["net_per_agent_ether"]) * 1e18)) if v.get("net_per_agent_ether") is not None
              else "–", fmt_number(v.get("points")), f"{v.get('reconciled_agents', '–')}/{v.get('agents', '–')}"]
             for g, v in inc.items() if isinstance(v, Mapping)], num_from=2,
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


CSS = """
:root{--fg:#1d232b;--muted:#66707c;--line:#dfe3e8;--bg:#f5f7fa;--card:#fff;--accent:#1f4e9c;
--ok:#1e7b34;--bad:#b3261e;--warn:#9a6700}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",
"DejaVu Sans",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:24px 28px 60px}
header h1{margin:0 0 4px;font-size:28px;display:flex;align-items:center;gap:12px;flex-wrap:wrap}
.desc{margin:0 0 4px;font-size:16px}.meta{margin:0;color:var(--muted)}
.error{color:var(--bad);background:#fdeceb;border:1px solid #f3c5c1;border-radius:6px;padding:8px 12px}
code{font:13px ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;background:#eef1f5;padding:1px 4px;
border-radius:4px}
.badge{font-size:13px;font-weight:600;padding:3px 10px;border-radius:999px;text-transform:uppercase;
letter-spacing:.04em;color:#fff}
.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}.badge.warn{background:var(--warn)}
nav{margin:18px 0 6px;font-size:14px}nav a{color:var(--accent);margin-right:14px;text-decoration:none}
nav a:hover{text-decoration:underline}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:12px;margin:18px 0}
.card{background:var(--card);border:1px solid var(--line);border-left:4px solid var(--accent);border-radius:8px;
padding:10px 14px}.card.good{border-left-color:var(--ok)}.card.bad{border-left-color:var(--bad)}
.card .label{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
.card .value{font-size:22px;font-weight:650;margin:2px 0}.card .sub{font-size:13px;color:var(--muted)}
h2{font-size:21px;margin:34px 0 10px;padding-bottom:6px;border-bottom:2px solid var(--line)}
h3{font-size:16px;margin:20px 0 8px}h4{margin:6px 0;font-size:14px;color:var(--muted)}
figure.plot{background:var(--card);border:1px solid var(--line);border-radius:8px;margin:0 0 16px;padding:12px 16px}
figure.plot h3{margin:0 0 6px}
figure.plot svg{display:block;width:100%;height:auto}
figcaption{font-size:13px;color:var(--muted);margin-top:6px}
.nodata{color:var(--muted);font-style:italic}
.plot-nodata{padding:26px;text-align:center;border:1px dashed var(--line);border-radius:6px;background:#fafbfc}
table{border-collapse:collapse;background:var(--card);font-size:13.5px;margin:4px 0 12px;min-width:40%}
caption{caption-side:bottom;text-align:left;font-size:12px;color:var(--muted);padding-top:4px}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:#eef1f5;font-weight:600;white-space:nowrap}
tbody tr:nth-child(even){background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.kv th{font-weight:500;color:var(--muted);white-space:nowrap}
table.kv td{font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:4px 18px}
.grid table{width:100%}
details{margin:10px 0}summary{cursor:pointer;color:var(--accent)}
pre{background:#fff;border:1px solid var(--line);border-radius:6px;padding:10px;overflow:auto;font-size:12.5px}
.muted{color:var(--muted)}ul.files{columns:3;font-size:14px}ul.files a{color:var(--accent)}
.markers{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:6px 16px;margin:0 0 16px;
font-size:14px}.markers p{margin:6px 0}.markers ol{margin:4px 0 8px;columns:2;padding-left:28px}
.swatch{display:inline-block;width:22px;height:0;vertical-align:middle;margin-right:8px}
.swatch.chaos{border-top:2px dashed #c62828}.swatch.warp{border-top:2px dotted #6d6d6d}
p.markers{padding:8px 16px}
footer{margin-top:40px;color:var(--muted);font-size:12px}
"""


def build_report(run_dir: Path) -> str:
    """The report page of a results folder, as HTML text."""
    run_dir = Path(run_dir)
    f = read_folder(run_dir)
    baseline = read_folder(run_dir / "baseline") if (run_dir / "baseline").is_dir() else None
    figures = build_plots(f, baseline)
    name = (f.summary or {}).get("scenario") or (f.scenario or {}).get("name") or run_dir.name
    title = f"{name} · dcai-arena report"
    nav = ('<nav><a href="#plots">Plots</a>' + "".join(f'<a href="#plot-{p.key}">{esc(p.title)}</a>' for p in figures)
           + '<a href="#summary">Summary tables</a><a href="#scenario">Scenario</a><a href="#files">Files</a></nav>')
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>",
        header(f), key_figures(f), nav,
        '<h2 id="plots">Plots</h2>', markers_key(plot_markers(f)),
        "".join(plot_section(p) for p in figures),
        '<h2 id="summary">Summary</h2>', summary_tables(f),
        '<h2 id="scenario">Scenario</h2>', scenario_tables(f),
        '<h2 id="files">Files in this folder</h2>', files_section(f, baseline),
        "<footer>Written by <code>dcai report</code> (dcai-arena) from the files of this folder; "
        "it needs no network and runs no script.</footer>",
        "</main></body></html>\n",
    ])


def write_report(run_dir: Path) -> Path:
    """Write run_dir/report.html (atomically) and return its path."""
    run_dir = Path(run_dir)
    path = run_dir / REPORT_NAME
    atomic_write_bytes(path, build_report(run_dir).encode("utf-8"))
    return path


# ---- command line --------------------------------------------------------------------------------


def build_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `report` to the `dcai` sub-commands: `build_report_parser(sub)` in cli.build_parser."""
    r = subparsers.add_parser(
        "report", help="write report.html for a results folder (and its baseline/)",
        description="Write RESULTS_DIR/report.html: one self-contained page (plots and tables) that opens "
                    "offline. A baseline/ folder inside gets its own report, linked from the main one.")
    r.add_argument("results_dir", nargs="+", help="one or more results folders")
    r.set_defaults(func=cmd_report)
    return r


def cmd_report(args: argparse.Namespace) -> int:
    status = 0
    for d in args.results_dir:
        run_dir = Path(d)
        if not run_dir.is_dir():
            print(f"dcai report: {run_dir} is not a folder", file=sys.stderr)
            status = 2
            continue
        t = time.perf_counter()
        if (run_dir / "baseline").is_dir():
            write_report(run_dir / "baseline")
        path = write_report(run_dir)
        print(f"{path} ({time.perf_counter() - t:.1f} s)")
    return status
