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
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import plots
from .report_folder import MINED, REPORT_NAME, TABLES, Folder, end_block, group_order, read_folder, start_block  # noqa: F401
from .report_format import (CSS, Raw, esc, fmt_ether, fmt_gwei, fmt_number, fmt_pct,  # noqa: F401
                            fmt_seconds, plot_section)
from .report_money import diversity_section, page_sections, table_flows
from .report_sections import files_section, header, key_figures, scenario_tables, summary_tables
from .results import atomic_write_bytes


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



def build_report(run_dir: Path) -> str:
    """The report page of a results folder, as HTML text."""
    run_dir = Path(run_dir)
    f = read_folder(run_dir)
    baseline = read_folder(run_dir / "baseline") if (run_dir / "baseline").is_dir() else None
    figures = build_plots(f, baseline)
    name = (f.summary or {}).get("scenario") or (f.scenario or {}).get("name") or run_dir.name
    title = f"{name} · dcai-arena report"
    flows = table_flows(f)
    extra = page_sections(f, flows)
    # Points and distinct samples side by side: an echoing karma seeker has many of one, few of the other.
    after = {"points": diversity_section(f, flows)}
    nav = ('<nav><a href="#plots">Plots</a>' + "".join(f'<a href="#plot-{p.key}">{esc(p.title)}</a>' for p in figures)
           + "".join(f'<a href="#{key}">{esc(title)}</a>' for key, title, _ in extra)
           + '<a href="#summary">Summary tables</a><a href="#scenario">Scenario</a><a href="#files">Files</a></nav>')
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>",
        header(f), key_figures(f), nav,
        '<h2 id="plots">Plots</h2>', markers_key(plot_markers(f)),
        "".join(plot_section(p) + after.get(p.key, "") for p in figures),
        "".join(f'<h2 id="{key}">{esc(title)}</h2>{body}' for key, title, body in extra),
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
