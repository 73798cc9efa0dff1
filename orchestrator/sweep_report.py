"""sweep.html: the comparison page of a sweep folder, self-contained like report.html (inline SVG from
matplotlib, no script, no external fetch; links only to the runs' own report.html files).

Sections: the ranking (cells ordered by the mean of their ranks on accuracy kept, attacker cost and
honest profit; every figure a mean with its 95% confidence interval), error-bar plots of the ranking
metrics and of the other metrics (each run's value drawn as a dot beside its cell's interval), every
metric per cell, every run, and what each metric means.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import plots
from .metrics import RANKING, REGISTRY
from .report_format import CSS, esc
from .results import atomic_write_bytes

if TYPE_CHECKING:
    from .sweep_plan import RunRecord, SweepPlan

SWEEP_REPORT = "sweep.html"
EXTRA_CSS = """
.rank{font-weight:700;color:var(--accent)}td.params{font:12.5px ui-monospace,"DejaVu Sans Mono",monospace}
td .ci{color:var(--muted);font-size:12px}td.st-bad{color:var(--bad)}td.st-ok{color:var(--ok)}
"""
# Units and titles come from the metrics registry: one definition for summary, report and sweep.
UNITS = {name: (f" {m.unit}" if m.unit else "") for name, m in REGISTRY.items()}
TITLES = {name: m.title + (f" ({m.unit})" if m.unit in ("ETH", "ETH/pp", "s") else "") for name, m in REGISTRY.items()}
METRICS = {name: m.description for name, m in REGISTRY.items()}


def _num(v: float | None, unit: str = "") -> str:
    if v is None:
        return "–"
    a = abs(v)
    text = f"{v:.4g}" if a >= 1e-3 or v == 0 else f"{v:.3e}"
    return text.replace("-", "−") + unit


def _stat(st: Mapping[str, Any], metric: str) -> str:
    """mean, then the interval and n in small print; safe HTML."""
    if st.get("mean") is None:
        return "–"
    unit = UNITS.get(metric, "")
    ci = (f'<br><span class="ci">[{esc(_num(st["ci_low"]))}, {esc(_num(st["ci_high"]))}] n={st["n"]}</span>'
          if st.get("ci_low") is not None else f'<br><span class="ci">n={st["n"]}</span>')
    return esc(_num(st["mean"], unit)) + ci


def _params(p: Mapping[str, Any]) -> str:
    return "<br>".join(f"{esc(k)} = {esc(v)}" for k, v in p.items()) or "–"


def errorbar_plot(key: str, title: str, caption: str, cells: Sequence[Mapping[str, Any]],
                  records: Sequence[RunRecord], metrics: Sequence[str]) -> plots.Plot:
    """One panel per metric: each cell's mean with its 95% CI as a horizontal error bar, each run a dot."""
    p = plots.Plot(key, title, caption)
    have = [m for m in metrics if any(c["metrics"][m]["mean"] is not None for c in cells)]
    if not have:
        p.note = "no completed run has these metrics"
        return p
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = [c["cell"] for c in cells]
    ys = {n: len(names) - 1 - i for i, n in enumerate(names)}  # best at the top
    with matplotlib.rc_context(plots.RC):
        fig = Figure(figsize=(plots.WIDTH_IN, 0.9 + 0.42 * len(names)))
        axes = fig.subplots(1, len(have), sharey=True, squeeze=False)[0]
        for ax, m in zip(axes, have):
            xs, y, lo, hi = [], [], [], []
            for c in cells:
                st = c["metrics"][m]
                if st["mean"] is None:
                    continue
                xs.append(st["mean"])
                y.append(ys[c["cell"]])
                lo.append(st["mean"] - st["ci_low"] if st["ci_low"] is not None else 0.0)
                hi.append(st["ci_high"] - st["mean"] if st["ci_high"] is not None else 0.0)
            bars = ax.errorbar(xs, y, xerr=[lo, hi], fmt="o", color="#1f4e9c", ecolor="#1f4e9c", elinewidth=2,
                               capsize=4, markersize=6, zorder=3, label="mean, 95% CI")
            bars.lines[0].set_gid(f"{key}-data-{p.series}")
            p.series += 1
            p.points += len(xs)
            dots = [(r.metrics[m], ys[r.cell] - 0.18) for r in records
                    if r.status == "completed" and r.metrics.get(m) is not None and r.cell in ys]
            if dots:
                pts = ax.scatter([d[0] for d in dots], [d[1] for d in dots], s=14, color="#888888", zorder=2,
                                 label="one run")
                pts.set_gid(f"{key}-data-{p.series}")
                p.series += 1
                p.points += len(dots)
            ax.set_title(textwrap.fill(TITLES.get(m, m), 24))  # side by side panels: long titles would collide
            ax.margins(x=0.15)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=3))
        axes[0].set_yticks(range(len(names)), list(reversed(names)))
        axes[0].set_ylim(-0.7, len(names) - 0.3)
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        p.svg = plots.render_svg(fig, p)
    return p


def _plot_html(p: plots.Plot) -> str:
    body = p.svg if p.svg else f'<div class="nodata plot-nodata" data-plot="{esc(p.key)}">No data: {esc(p.note)}</div>'
    return (f'<figure class="plot" id="plot-{esc(p.key)}"><h3>{esc(p.title)}</h3>{body}'
            f"<figcaption>{esc(p.caption)}</figcaption></figure>")


def build_sweep_report(plan: SweepPlan, sweep_dir: Path, records: Sequence[RunRecord],
                       cells: Sequence[Mapping[str, Any]]) -> str:
    done = sum(r.status == "completed" for r in records)
    bad = [r for r in records if r.status != "completed"]
    badge = ('<span class="badge ok">complete</span>' if not bad else
             f'<span class="badge {"bad" if done == 0 else "warn"}">{len(bad)} of {len(records)} not completed</span>')
    head = [f"<header><h1>{esc(plan.name)} {badge}</h1>"]
    if plan.description:
        head.append(f'<p class="desc">{esc(plan.description)}</p>')
    meta = [f"{len(plan.cells)} cells × {len(plan.seeds)} seeds ({esc(', '.join(map(str, plan.seeds)))})",
            f"{done}/{len(records)} runs completed", f"from <code>{esc(plan.source)}</code>"]
    if plan.base:
        meta.append(f"base <code>{esc(plan.base)}</code>")
    if plan.axes:
        meta.append("varied: " + ", ".join(f"<code>{esc(a)}</code>" for a in plan.axes))
    head.append(f'<p class="meta">{" · ".join(meta)}</p></header>')

    rank_names = [m for m, _ in RANKING]
    rows = []
    for c in cells:
        ranks = c.get("ranks", {})
        cols = "".join(f'<td class="num">{_stat(c["metrics"][m], m)}'
                       f'<br><span class="ci">rank {esc(ranks.get(m) or "–")}</span></td>' for m in rank_names)
        score = "–" if c.get("score") is None else f"{c['score']:.2f}"
        rows.append(f'<tr data-cell="{esc(c["cell"])}"><td class="rank">{esc(c.get("rank") or "–")}</td>'
                    f'<td><b>{esc(c["cell"])}</b></td><td class="params">{_params(c["params"])}</td>'
                    f'<td class="num">{c["completed"]}/{c["runs"]}</td>{cols}<td class="num">{score}</td></tr>')
    arrows = {m: "higher is better" if h else "lower is better" for m, h in RANKING}
    ranking = ('<table class="ranking"><thead><tr><th>rank</th><th>cell</th><th>fields</th><th class="num">runs</th>'
               + "".join(f'<th class="num">{esc(TITLES[m])}<br><span class="ci">{esc(arrows[m])}</span></th>'
                         for m in rank_names)
               + '<th class="num">mean rank</th></tr></thead><tbody>' + "".join(rows) + "</tbody>"
               "<caption>Each figure: the mean over the cell's completed runs, its 95% confidence interval "
               "(t distribution) and n. Cells are ordered by the mean of their three ranks.</caption></table>")

    fig_rank = errorbar_plot(
        "ranking", "Ranking metrics by cell",
        "Mean and 95% confidence interval per cell (blue), one grey dot per run; best-ranked cell at the top.",
        cells, records, rank_names)
    others = [m for m in METRICS if m not in rank_names and m not in ("transactions", "wall_s")]
    others += ["transactions", "wall_s"]
    # Four panels a figure: more side by side would squeeze each axis below reading size.
    fig_others = [errorbar_plot(
        f"other{i // 4}" if i else "other", "Other metrics by cell" if not i else "More metrics by cell",
        "Mean and 95% confidence interval per cell, one grey dot per run.", cells, records, others[i:i + 4])
        for i in range(0, len(others), 4)]

    all_rows = "".join(
        f'<tr><td><b>{esc(c["cell"])}</b></td>' + "".join(f'<td class="num">{_stat(c["metrics"][m], m)}</td>'
                                                          for m in METRICS) + "</tr>" for c in cells)
    all_table = ('<div style="overflow-x:auto"><table><thead><tr><th>cell</th>'
                 + "".join(f'<th class="num">{esc(TITLES.get(m, m))}</th>' for m in METRICS)
                 + f"</tr></thead><tbody>{all_rows}</tbody></table></div>")

    run_rows = []
    for r in records:
        report = sweep_dir / "runs" / r.run_id / "report.html"
        link = (f'<a href="runs/{html.escape(r.run_id)}/report.html">{esc(r.run_id)}</a>' if report.exists()
                else esc(r.run_id))
        cls = "st-ok" if r.status == "completed" else "st-bad"
        run_rows.append(
            f"<tr><td>{link}</td><td>{esc(r.cell)}</td><td class=num>{r.seed}</td>"
            f'<td class="{cls}">{esc(r.status)}{" (resumed)" if r.skipped else ""}</td>'
            + "".join(f'<td class="num">{esc(_num(r.metrics.get(m)))}</td>' for m in rank_names)
            + f"<td>{esc(r.error or '')}</td></tr>")
    runs_table = ('<table><thead><tr><th>run</th><th>cell</th><th class="num">seed</th><th>status</th>'
                  + "".join(f'<th class="num">{esc(TITLES[m])}</th>' for m in rank_names)
                  + "<th>error</th></tr></thead><tbody>" + "".join(run_rows) + "</tbody></table>")
    defs = "<dl>" + "".join(f"<dt><code>{esc(m.name)}</code> ({esc(m.unit or 'ratio or count')}, "
                            f"{esc(m.direction)})</dt><dd>{esc(m.description)}</dd>" for m in REGISTRY.values()) + "</dl>"
    files = ("<p>In this folder: <code>sweep.json</code> (the resolved cells), <code>runs.parquet</code> (one row "
             "per run), <code>aggregate.parquet</code> / <code>aggregate.json</code> (per cell and metric: n, mean, "
             "std, 95% CI), <code>runs/&lt;cell&gt;-s&lt;seed&gt;/</code> (each run's results folder and report).</p>")
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">',
        f"<title>{esc(plan.name)} · dcai-arena sweep</title><style>{CSS}{EXTRA_CSS}</style></head><body><main>",
        "".join(head),
        '<nav><a href="#ranking">Ranking</a><a href="#plots">Plots</a><a href="#metrics">All metrics</a>'
        '<a href="#runs">Runs</a><a href="#definitions">Definitions</a></nav>',
        '<h2 id="ranking">Ranking</h2>', ranking,
        '<h2 id="plots">Plots</h2>', _plot_html(fig_rank), *[_plot_html(f) for f in fig_others],
        '<h2 id="metrics">All metrics</h2>', all_table,
        '<h2 id="runs">Runs</h2>', runs_table,
        '<h2 id="definitions">Definitions</h2>', defs, files,
        "<footer>Written by <code>dcai sweep</code> (dcai-arena); it needs no network and runs no script."
        "</footer></main></body></html>\n",
    ])


def write_sweep_report(plan: SweepPlan, sweep_dir: Path, records: Sequence[RunRecord],
                       cells: Sequence[Mapping[str, Any]]) -> Path:
    path = sweep_dir / SWEEP_REPORT
    atomic_write_bytes(path, build_sweep_report(plan, sweep_dir, records, cells).encode("utf-8"))
    return path
