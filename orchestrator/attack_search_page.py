"""frontier.html: an attack search's page, in the style of report.html (inline SVG, no script).

Sections: the ranking of cells by the cost of their cheapest attack that reached the target on every
seed (mean and 95% interval), one cost-vs-damage plot per cell (every trial, the frontier, the
re-run points with their intervals, the target), and each cell's frontier points with links to
their runs' reports.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import plots
from .report import CSS, esc
from .results import atomic_write_bytes

PAGE = "frontier.html"
UNITS = {"accuracy_drop_pts": "accuracy points lost", "honest_loss_ether": "honest ether lost (ETH)",
         "deposits_taken_ether": "deposits taken by the attacker (ETH)"}


def _ci(st: Mapping[str, Any] | None, unit: str = "") -> str:
    if not st or st.get("mean") is None:
        return "–"
    text = f"{st['mean']:.4g}{unit}"
    if st.get("ci_low") is not None:
        text += f' <span class="ci">[{st["ci_low"]:.4g}, {st["ci_high"]:.4g}] n={st["n"]}</span>'
    return text


def frontier_plot(cell: Mapping[str, Any], target: Mapping[str, Any]) -> plots.Plot:
    key = "frontier-" + "".join(ch if ch.isalnum() else "-" for ch in cell["cell"])
    p = plots.Plot(key, f"{cell['cell']}: attacker cost against damage",
                   "Each dot one trial (filled: reached the target); the line joins the frontier (no trial is "
                   "cheaper and at least as damaging); squares: frontier points re-run on every seed, mean and "
                   "95% interval; dashed: the target.")
    trials = [t for t in cell["trials"] if t.get("cost_ether") is not None and t.get("damage") is not None]
    if not trials:
        p.note = "no trial finished with figures"
        return p
    import matplotlib

    with matplotlib.rc_context(plots.RC):
        fig = plots._new_figure(3.6)
        ax = fig.subplots()
        series = plots._Series(p)
        for reached, color, label in ((True, "#c62828", "reached the target"), (False, "#9e9e9e", "missed")):
            pts = [t for t in trials if bool(t["reached"]) == reached]
            if pts:
                series.tag(ax.scatter([t["cost_ether"] for t in pts], [t["damage"] for t in pts], s=22,
                                      color=color, alpha=0.8, label=label, zorder=3), len(pts))
        front = sorted(_front(trials), key=lambda t: t["cost_ether"])
        series.tag(ax.plot([t["cost_ether"] for t in front], [t["damage"] for t in front], color="#1f4e9c",
                           lw=1.2, drawstyle="steps-post", label="frontier")[0], len(front))
        rerun = [f for f in cell["frontier"] if f["cost"]["mean"] is not None and f["damage"]["mean"] is not None]
        if rerun:
            def err(st: Mapping[str, Any]) -> list[float]:
                return [st["mean"] - st["ci_low"], st["ci_high"] - st["mean"]] if st["ci_low"] is not None else [0, 0]

            xe = list(zip(*[err(f["cost"]) for f in rerun]))
            ye = list(zip(*[err(f["damage"]) for f in rerun]))
            bars = ax.errorbar([f["cost"]["mean"] for f in rerun], [f["damage"]["mean"] for f in rerun],
                               xerr=[list(xe[0]), list(xe[1])], yerr=[list(ye[0]), list(ye[1])], fmt="s",
                               color="#1f4e9c", capsize=3, label="re-run on every seed", zorder=4)
            series.tag(bars.lines[0], len(rerun))
        ax.axhline(target["level"], color="#6d6d6d", ls="--", lw=1)
        ax.set_xlabel("attacker cost (ETH; negative: the attack paid)")
        ax.set_ylabel(UNITS.get(target["kind"], target["kind"]))
        plots._legend(ax)
        return plots._finish(fig, p)


def _front(trials: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    out, best = [], float("-inf")
    for t in sorted(trials, key=lambda t: (t["cost_ether"], -t["damage"])):
        if t["damage"] > best:
            out.append(t)
            best = t["damage"]
    return out


def _link(root: Path, run_id: str) -> str:
    if (root / "runs" / run_id / "report.html").exists():
        return f'<a href="runs/{html.escape(run_id)}/report.html">{esc(run_id)}</a>'
    return esc(run_id)


def build_page(root: Path, doc: Mapping[str, Any]) -> str:
    target = doc["target"]
    rows = []
    for r in doc["ranking"]:
        values = json.dumps(r["best_values"], sort_keys=True) if r["best_values"] else "no attack reached it on every seed"
        rows.append(f"<tr><td class=rank>{esc(r['rank'] or '–')}</td><td><b>{esc(r['cell'])}</b></td>"
                    f"<td class=params>{esc(json.dumps(r['params'], sort_keys=True))}</td>"
                    f"<td class=num>{_ci(r['cheapest_cost_ether'], ' ETH')}</td><td class=params>{esc(values)}</td></tr>")
    ranking = ("<table class=ranking><thead><tr><th>rank</th><th>cell</th><th>fields</th>"
               "<th class=num>cheapest successful attack</th><th>its parameters</th></tr></thead><tbody>"
               + "".join(rows) + "</tbody><caption>Cells ranked by the mean cost (95% interval over seeds) of "
               "the cheapest frontier point that reached the target on every seed: higher is more robust."
               "</caption></table>")
    sections = []
    for cell in doc["cells"]:
        fig = frontier_plot(cell, target)
        body = fig.svg or f'<div class="nodata">No data: {esc(fig.note)}</div>'
        pts = "".join(
            f"<tr><td class=num>{f['point']}</td><td class=params>{esc(json.dumps(f['values'], sort_keys=True))}</td>"
            f"<td class=num>{_ci(f['cost'], ' ETH')}</td><td class=num>{_ci(f['damage'])}</td>"
            f"<td class=num>{f['reached_share']:.0%}</td><td>{', '.join(_link(root, r) for r in f['runs'])}</td></tr>"
            for f in cell["frontier"])
        base = "; ".join(f"seed {s}: accuracy {b.get('accuracy_end') or 0:.3f}" for s, b in cell["baselines"].items())
        sections.append(
            f'<h2 id="cell-{esc(cell["cell"])}">{esc(cell["cell"])}</h2><p class=meta>{len(cell["trials"])} trials; '
            f"honest-only baselines: {esc(base)}</p>"
            f'<figure class="plot"><h3>{esc(fig.title)}</h3>{body}<figcaption>{esc(fig.caption)}</figcaption></figure>'
            "<table><thead><tr><th class=num>point</th><th>parameters</th><th class=num>cost</th>"
            f"<th class=num>{esc(UNITS.get(target['kind'], target['kind']))}</th><th class=num>reached</th>"
            f"<th>runs</th></tr></thead><tbody>{pts}</tbody></table>")
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">',
        f"<title>{esc(doc['name'])} · dcai-arena attack search</title><style>{CSS}</style></head><body><main>",
        f"<header><h1>{esc(doc['name'])}</h1><p class=desc>{esc(doc.get('description') or '')}</p>",
        f"<p class=meta>target: {esc(UNITS.get(target['kind'], target['kind']))} ≥ {target['level']:g} · "
        f"attacker group <code>{esc(doc['attacker'])}</code> · seeds {esc(', '.join(map(str, doc['seeds'])))}"
        "</p></header>",
        '<h2 id="ranking">Ranking</h2>', ranking, "".join(sections),
        "<footer>Written by <code>dcai attack-search</code> (dcai-arena); it needs no network and runs no script."
        "</footer></main></body></html>\n"])


def write_page(root: Path, doc: Mapping[str, Any]) -> Path:
    path = root / PAGE
    atomic_write_bytes(path, build_page(root, doc).encode())
    return path
