"""The report's plots: matplotlib figures rendered to inline SVG (no JavaScript, no external fetch).

Every plot function takes plain columns (numbers, already converted from wei where needed) and returns
a `Plot`: the SVG text, or a "no data" note when there is nothing to draw. Each plotted data series is
an SVG group with the id `<key>-data-<n>`, and the root `<svg>` carries `data-plot`, `data-series` and
`data-points` (how many values were drawn), so a test (or a reader of the file) can check that each
plot really holds data. Chaos events and time warps are vertical lines on every block axis.

Only the object-oriented API is used (`matplotlib.figure.Figure`, no pyplot): building a report
changes no global backend state of the process that calls it.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_SCATTER = 2500  # points drawn in a scatter at most (each is an SVG element)
WIDTH_IN = 11.0  # figure width; the page scales every SVG to its column width
CHAOS_COLOR = "#c62828"
WARP_COLOR = "#6d6d6d"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f", "#d62728"]
RC = {
    "svg.fonttype": "none",  # text stays text: small files, selectable, crisp
    "font.family": "DejaVu Sans",
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.7,
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "figure.dpi": 72,
}


@dataclass
class Plot:
    key: str
    title: str
    caption: str
    svg: str | None = None
    points: int = 0  # values drawn
    series: int = 0  # data series (SVG groups <key>-data-<n>)
    note: str | None = None  # why there is no plot


@dataclass
class Markers:
    """What is drawn on every block axis."""

    chaos: list[tuple[int, str]] = field(default_factory=list)  # (block, label)
    warps: list[tuple[int, str]] = field(default_factory=list)  # (block, label)
    xlim: tuple[float, float] | None = None  # the run's block range


# ---- formatting helpers --------------------------------------------------------------------------


def chaos_label(ev: Mapping[str, Any]) -> str:
    """A short label for a chaos event record of summary.json chain.chaos_events."""
    name = str(ev.get("event", "event"))
    if name == "drop_pending" and ev.get("share") is not None:
        extra = f"{float(ev['share']):.0%}"
        if ev.get("dropped") is not None:
            extra += f", {ev['dropped']} tx"
        return f"{name} ({extra})"
    if name == "base_fee_shock" and ev.get("factor") is not None:
        return f"{name} ×{float(ev['factor']):g}"
    if name == "gas_limit" and ev.get("gas_limit") is not None:
        return f"{name} {int(ev['gas_limit']) / 1e6:g}M"
    if name == "block_time" and ev.get("block_time") is not None:
        jitter = f" ±{ev['jitter']}s" if ev.get("jitter") else ""
        return f"{name} {ev['block_time']}s{jitter}"
    if name == "pause_mining" and ev.get("blocks") is not None:
        return f"{name} {ev['blocks']} blocks"
    if name == "reorg" and ev.get("depth") is not None:
        return f"{name} depth {ev['depth']}"
    return name


def human_seconds(s: float) -> str:
    s = float(s)
    if abs(s) >= 86400:
        return f"{s / 86400:.3g} d"
    if abs(s) >= 3600:
        return f"{s / 3600:.3g} h"
    if abs(s) >= 60:
        return f"{s / 60:.3g} min"
    return f"{s:.3g} s"


def markers_from_summary(summary: Mapping[str, Any] | None, xlim: tuple[float, float] | None) -> Markers:
    chain = (summary or {}).get("chain") or {}
    by_block: dict[int, list[str]] = {}
    for ev in chain.get("chaos_events") or []:
        if isinstance(ev, Mapping) and ev.get("block") is not None:
            by_block.setdefault(int(ev["block"]), []).append(chaos_label(ev))
    warps = []
    for w in chain.get("time_warps") or []:
        if isinstance(w, Mapping) and w.get("block") is not None:
            skipped = (w.get("to") or 0) - (w.get("from") or 0)
            warps.append((int(w["block"]), f"+{human_seconds(skipped)}"))
    return Markers(chaos=[(b, ", ".join(v)) for b, v in sorted(by_block.items())], warps=warps, xlim=xlim)


# ---- SVG rendering -------------------------------------------------------------------------------

_XML_HEAD = re.compile(r"^.*?(?=<svg)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_ID = re.compile(r'\bid="([^"]+)"')
_URL_REF = re.compile(r"url\(#([^)]+)\)")
_HREF_REF = re.compile(r'href="#([^"]+)"')


def _new_figure(height_in: float, **kwargs: Any) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(WIDTH_IN, height_in), **kwargs)


def render_svg(fig: Any, plot: Plot) -> str:
    """The figure as an inline <svg> element whose ids are unique in the page (prefixed with the key)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(RC | {"svg.hashsalt": plot.key}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.08)
    svg = _METADATA.sub("", _XML_HEAD.sub("", buf.getvalue(), count=1))
    prefix = plot.key + "-"

    def pre(name: str) -> str:
        return name if name.startswith(prefix) else prefix + name

    svg = _ID.sub(lambda m: f'id="{pre(m.group(1))}"', svg)
    svg = _URL_REF.sub(lambda m: f"url(#{pre(m.group(1))})", svg)
    svg = _HREF_REF.sub(lambda m: f'href="#{pre(m.group(1))}"', svg)
    attrs = (f'<svg class="plot-svg" role="img" aria-label="{html.escape(plot.title)}" data-plot="{plot.key}" '
             f'data-series="{plot.series}" data-points="{plot.points}" ')
    return svg.replace("<svg ", attrs, 1).strip()


class _Series:
    """Counts the data series and values drawn, and tags each series with its SVG id."""

    def __init__(self, plot: Plot):
        self.plot = plot

    def tag(self, artist: Any, n_values: int) -> Any:
        from matplotlib.container import BarContainer

        if isinstance(artist, (list, tuple, BarContainer)):  # one id per bar
            parts = list(artist.patches if isinstance(artist, BarContainer) else artist)
            for j, a in enumerate(parts):
                a.set_gid(f"{self.plot.key}-data-{self.plot.series}-{j}")
        else:
            artist.set_gid(f"{self.plot.key}-data-{self.plot.series}")
        self.plot.series += 1
        self.plot.points += int(n_values)
        return artist


def _mark_axis(ax: Any, markers: Markers, *, labels: bool) -> None:
    """Chaos events (red dashed; numbered at the top when `labels`, the key is in the caption) and time
    warps (grey dotted) on a block axis."""
    from matplotlib.transforms import blended_transform_factory

    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for block, _ in markers.warps:
        ax.axvline(block, color=WARP_COLOR, linestyle=":", linewidth=1.0, alpha=0.8, zorder=1)
    lo, hi = markers.xlim if markers.xlim else (None, None)
    span = (hi - lo) if lo is not None and hi is not None and hi > lo else None
    last_x, level = None, 0
    for i, (block, _) in enumerate(markers.chaos, start=1):
        ax.axvline(block, color=CHAOS_COLOR, linestyle="--", linewidth=1.0, alpha=0.85, zorder=1)
        if labels:
            close = span is not None and last_x is not None and (block - last_x) < 0.025 * span
            level = (level + 1) % 3 if close else 0  # stagger numbers of events close together
            ax.text(block, 0.97 - 0.11 * level, str(i), transform=trans, ha="center", va="top", fontsize=7.5,
                    color=CHAOS_COLOR, fontweight="bold", zorder=5,
                    bbox={"boxstyle": "round,pad=0.18", "facecolor": "white", "edgecolor": CHAOS_COLOR,
                          "linewidth": 0.8})
            last_x = block
    if markers.xlim is not None and markers.xlim[1] > markers.xlim[0]:
        ax.set_xlim(*markers.xlim)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def chaos_key(markers: Markers) -> list[tuple[int, int, str]]:
    """The numbered chaos events as drawn: (number, block, label)."""
    return [(i, block, label) for i, (block, label) in enumerate(markers.chaos, start=1)]


def _marker_handles(markers: Markers) -> list[Any]:
    from matplotlib.lines import Line2D

    out = []
    if markers.chaos:
        out.append(Line2D([], [], color=CHAOS_COLOR, linestyle="--", linewidth=1.0, label="chaos event"))
    if markers.warps:
        out.append(Line2D([], [], color=WARP_COLOR, linestyle=":", linewidth=1.0,
                          label="time warp (chain clock moved on)"))
    return out


def _legend(ax: Any, markers: Markers | None = None, **kwargs: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    extra = _marker_handles(markers) if markers is not None else []
    handles += extra
    labels += [h.get_label() for h in extra]
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kwargs)


def _finish(fig: Any, plot: Plot) -> Plot:
    import matplotlib

    with matplotlib.rc_context(RC):
        plot.svg = render_svg(fig, plot)
    return plot


def _empty(plot: Plot, note: str) -> Plot:
    plot.note = note
    return plot


def group_colors(groups: Sequence[str]) -> dict[str, str]:
    return {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}


# ---- the plots -----------------------------------------------------------------------------------


def accuracy_plot(run: Mapping[str, Sequence[float]] | None, baseline: Mapping[str, Sequence[float]] | None,
                  markers: Markers, missing: str = "") -> Plot:
    """run/baseline: columns x (block, baseline already aligned by offset), accuracy, accuracy_class0,
    accuracy_class1, and accuracy_class2... for a multi-class model."""
    p = Plot("accuracy", "Model accuracy over blocks",
             "Accuracy of the on-chain model on the held-out test set at the sampled blocks, overall (top) and "
             "per class (bottom). Dashed: the honest-only counterfactual baseline, aligned by block offset "
             "from each run's start.")
    if not run or not len(run.get("x", [])):
        return _empty(p, missing or "No accuracy samples.")
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _new_figure(5.2)
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"hspace": 0.12})
        s = _Series(p)
        x = np.asarray(run["x"], dtype=float)
        s.tag(top.plot(x, run["accuracy"], color="#1f4e9c", linewidth=2.0, marker="o", markersize=3,
                       label="this run")[0], len(x))
        if baseline and len(baseline.get("x", [])):
            bx = np.asarray(baseline["x"], dtype=float)
            s.tag(top.plot(bx, baseline["accuracy"], color="#222222", linewidth=1.5, linestyle="--",
                           label="baseline (honest only)")[0], len(bx))
        top.set_ylabel("accuracy")
        top.set_title("overall")
        classes = sorted((k for k in run if k.startswith("accuracy_class")), key=lambda k: int(k[14:]))
        cmap = matplotlib.colormaps["tab10"]
        colors = ("#e07b00", "#2a9d3f") if len(classes) <= 2 else tuple(cmap(i % 10) for i in range(len(classes)))
        for c, col in enumerate(classes):
            vals = np.asarray(run.get(col, []), dtype=float)
            if len(vals) and not np.all(np.isnan(vals)):
                s.tag(bottom.plot(x, vals, color=colors[c], linewidth=1.6, marker="o", markersize=2.5,
                                  label=f"class {c}")[0], int(np.sum(~np.isnan(vals))))
            if baseline and len(baseline.get(col, [])):
                bvals = np.asarray(baseline[col], dtype=float)
                if not np.all(np.isnan(bvals)):
                    s.tag(bottom.plot(np.asarray(baseline["x"], dtype=float), bvals, color=colors[c],
                                      linewidth=1.2, linestyle="--", alpha=0.8,
                                      label=f"class {c} baseline")[0], int(np.sum(~np.isnan(bvals))))
        bottom.set_ylabel("accuracy")
        bottom.set_title("per class")
        bottom.set_xlabel("block")
        for i, ax in enumerate((top, bottom)):
            _mark_axis(ax, markers, labels=i == 0)
        _legend(top, markers)
        _legend(bottom)
        return _finish(fig, p)


def fee_plot(blocks: Mapping[str, Sequence[float]] | None, markers: Markers, missing: str = "") -> Plot:
    """blocks: number, base_fee_gwei, fill (gas used / gas limit, 0..1), gas_limit."""
    p = Plot("fees", "Base fee and block fill",
             "The base fee of each block in gwei (log scale when it spans orders of magnitude) and how full "
             "each block was (gas used / gas limit). EIP-1559 raises the fee after blocks over half full.")
    if not blocks or not len(blocks.get("number", [])):
        return _empty(p, missing or "No block records.")
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _new_figure(4.8)
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"hspace": 0.12})
        s = _Series(p)
        x = np.asarray(blocks["number"], dtype=float)
        fee = np.asarray(blocks["base_fee_gwei"], dtype=float)
        s.tag(top.plot(x, fee, color="#1f4e9c", linewidth=1.4, drawstyle="steps-post", label="base fee")[0],
              len(x))
        positive = fee[fee > 0]
        if len(positive) and positive.max() / positive.min() > 50:
            top.set_yscale("log")
        top.set_ylabel("base fee (gwei)")
        top.set_title("base fee")
        fill = 100 * np.asarray(blocks["fill"], dtype=float)
        s.tag(bottom.plot(x, fill, color="#2a9d3f", linewidth=1.2, drawstyle="steps-post",
                          label="gas used / limit")[0], len(x))
        bottom.axhline(50, color="#999999", linewidth=0.8, linestyle="-.", label="EIP-1559 target (50%)")
        bottom.set_ylabel("block fill (%)")
        bottom.set_ylim(0, max(100, float(np.nanmax(fill)) if len(fill) else 100) * 1.04)
        bottom.set_title("block fill")
        bottom.set_xlabel("block")
        for i, ax in enumerate((top, bottom)):
            _mark_axis(ax, markers, labels=i == 0)
        _legend(top, markers)
        _legend(bottom)
        return _finish(fig, p)


def txpool_plot(blocks: Mapping[str, Sequence[float]] | None, markers: Markers, missing: str = "") -> Plot:
    p = Plot("txpool", "Transaction pool depth",
             "Pending (executable) and queued (nonce gap) transactions in the node's pool when each block "
             "was read.")
    if not blocks or not len(blocks.get("number", [])):
        return _empty(p, missing or "No block records.")
    x = np.asarray(blocks["number"], dtype=float)
    pending = np.asarray(blocks["pool_pending"], dtype=float)
    queued = np.asarray(blocks["pool_queued"], dtype=float)
    ok = (pending >= 0) & (queued >= 0)
    if not ok.any():
        return _empty(p, "The node did not answer txpool_status: no pool depth was recorded.")
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _new_figure(2.9)
        ax = fig.subplots()
        s = _Series(p)
        s.tag(ax.plot(x[ok], pending[ok], color="#1f4e9c", linewidth=1.3, drawstyle="steps-post",
                      label="pending")[0], int(ok.sum()))
        s.tag(ax.plot(x[ok], queued[ok], color="#e07b00", linewidth=1.3, drawstyle="steps-post",
                      label="queued")[0], int(ok.sum()))
        ax.set_ylabel("transactions")
        ax.set_xlabel("block")
        top = max(float(pending[ok].max()), float(queued[ok].max()))
        ax.set_ylim(0, max(top * 1.08, 1.0))
        if top == 0:
            p.caption += " The pool was empty at every read."
        _mark_axis(ax, markers, labels=True)
        _legend(ax, markers)
        return _finish(fig, p)


def latency_plot(per_group: Mapping[str, Mapping[str, float]], colors: Mapping[str, str], missing: str = "") -> Plot:
    """per_group: group -> {blocks_p50, blocks_p90, blocks_p99, wall_s_p50, wall_s_p90, wall_s_p99, n}."""
    p = Plot("latency", "Inclusion latency per group",
             "Submit-to-inclusion latency of mined transactions (included or reverted), percentiles per group: "
             "in blocks (left) and in wall-clock seconds (right). From ledger.parquet.")
    groups = [g for g in per_group if per_group[g].get("n")]
    if not groups:
        return _empty(p, missing or "No mined transactions: no latency to show.")
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _new_figure(3.2)
        left, right = fig.subplots(1, 2, gridspec_kw={"wspace": 0.25})
        s = _Series(p)
        qs = ("p50", "p90", "p99")
        shades = (1.0, 0.7, 0.45)
        width = 0.8 / len(qs)
        xs = np.arange(len(groups))
        for ax, unit, label in ((left, "blocks", "blocks"), (right, "wall_s", "seconds (wall)")):
            for k, (q, alpha) in enumerate(zip(qs, shades)):
                vals = [float(per_group[g].get(f"{unit}_{q}") or 0.0) for g in groups]
                bars = ax.bar(xs + (k - 1) * width, vals, width, color=[colors.get(g, "#1f77b4") for g in groups],
                              alpha=alpha, edgecolor="#333333", linewidth=0.4, label=q)
                s.tag(bars, len(vals))
                ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=1.5)
            ax.set_xticks(xs, [f"{g}\n(n={per_group[g]['n']})" for g in groups])
            ax.set_ylabel(label)
            ax.set_title(f"latency in {label}")
            ax.margins(y=0.15)
            ax.grid(axis="x", visible=False)
        from matplotlib.patches import Patch

        right.legend(handles=[Patch(facecolor="#777777", alpha=a, label=q) for q, a in zip(qs, shades)],
                     loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        return _finish(fig, p)


def deposit_plot(adds: Mapping[str, Sequence[Any]] | None, colors: Mapping[str, str], markers: Markers,
                 missing: str = "") -> Plot:
    """adds: block, deposit_ether, group (included add transactions)."""
    p = Plot("deposit", "Deposit price over blocks",
             "The deposit each successful add paid (kept by the trainer; the excess of what was sent comes back "
             "in the same call), by the block that included it. Stakeable prices a deposit by the time since "
             "the previous add: busy periods are expensive.")
    if not adds or not len(adds.get("block", [])):
        return _empty(p, missing or "No included add transactions: no deposit was paid.")
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _new_figure(3.2)
        ax = fig.subplots()
        s = _Series(p)
        block = np.asarray(adds["block"], dtype=float)
        dep = np.asarray(adds["deposit_ether"], dtype=float)
        grp = np.asarray(adds["group"], dtype=object)
        step = -(-len(block) // MAX_SCATTER)  # keep the page light: every step-th add when there are many
        if step > 1:
            block, dep, grp = block[::step], dep[::step], grp[::step]
            p.caption += f" {len(adds['block']):,} adds: every {step}th is drawn."
        for g in dict.fromkeys(adds["group"]):
            m = grp == g
            if not m.any():
                continue
            s.tag(ax.scatter(block[m], dep[m], s=9, color=colors.get(g, "#1f77b4"), alpha=0.75, linewidths=0,
                             label=f"{g} ({int(m.sum())})"), int(m.sum()))
        positive = dep[dep > 0]
        if len(positive) and positive.max() / positive.min() > 100:
            ax.set_yscale("log")
        ax.set_ylabel("deposit (ether)")
        ax.set_xlabel("block")
        _mark_axis(ax, markers, labels=True)
        _legend(ax, markers)
        return _finish(fig, p)


def pnl_plot(flows: Mapping[str, Mapping[str, Sequence[float]]], start_balance: Mapping[str, float],
             agents: Mapping[str, int], colors: Mapping[str, str], markers: Markers, missing: str = "") -> Plot:
    """flows: group -> {block, cum_ether} (cumulative ledger flow by inclusion block); start_balance: group ->
    ether at the start (all its agents); agents: group -> agent count."""
    p = Plot("pnl", "Net P&L and balances per group",
             "Cumulative ether each group gained or lost through its transactions (received − value − fee per "
             "mined transaction, in inclusion order): deposits, refunds, takes and fees. Bottom: the mean "
             "balance of an agent of the group. The end points equal agents.parquet's net and end balances.")
    groups = [g for g in flows if len(flows[g].get("block", []))]
    if not groups:
        return _empty(p, missing or "No mined transactions: no money moved.")
    import matplotlib

    with matplotlib.rc_context(RC):
        with_balance = all(g in start_balance and agents.get(g) for g in groups)
        fig = _new_figure(5.2 if with_balance else 3.0)
        axes = fig.subplots(2, 1, sharex=True, gridspec_kw={"hspace": 0.12}) if with_balance else [fig.subplots()]
        s = _Series(p)
        lo, hi = markers.xlim if markers.xlim else (None, None)
        for g in groups:
            x = np.asarray(flows[g]["block"], dtype=float)
            y = np.asarray(flows[g]["cum_ether"], dtype=float)
            if lo is not None:
                x, y = np.concatenate([[lo], x, [hi]]), np.concatenate([[0.0], y, [y[-1]]])
            s.tag(axes[0].plot(x, y, color=colors.get(g, "#1f77b4"), linewidth=1.6, drawstyle="steps-post",
                               label=g)[0], len(flows[g]["block"]))
            if with_balance:
                bal = (start_balance[g] + y) / agents[g]
                s.tag(axes[1].plot(x, bal, color=colors.get(g, "#1f77b4"), linewidth=1.6, drawstyle="steps-post",
                                   label=f"{g} ({agents[g]} agents)")[0], len(flows[g]["block"]))
        axes[0].axhline(0, color="#555555", linewidth=0.8)
        axes[0].set_ylabel("net P&L (ether)")
        axes[0].set_title("net P&L per group (total)")
        if with_balance:
            axes[1].set_ylabel("balance (ether)")
            axes[1].set_title("mean balance per agent")
        axes[-1].set_xlabel("block")
        for i, ax in enumerate(axes):
            _mark_axis(ax, markers, labels=i == 0)
        _legend(axes[0], markers)
        if with_balance:
            _legend(axes[1])
        return _finish(fig, p)


def points_plot(final: Mapping[str, int], over_time: Mapping[str, Mapping[str, Sequence[float]]],
                colors: Mapping[str, str], markers: Markers, missing: str = "") -> Plot:
    """final: group -> points at the end (agents.parquet); over_time: group -> {block, cum} validated
    contributions (included refunds) by inclusion block."""
    p = Plot("points", "Points per group",
             "Points are verified contributions (numValid on chain). Left: each group's points at the end "
             "(agents.parquet). Right: their growth, one point per included refund (the call that validates a "
             "contribution), by inclusion block.")
    has_final = any(v for v in final.values())
    has_time = any(len(v.get("block", [])) for v in over_time.values())
    if not has_final and not has_time:
        return _empty(p, missing or "No points were earned (no contribution was validated).")
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _new_figure(3.2)
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 3], "wspace": 0.22})
        s = _Series(p)
        if final:
            groups = list(final)
            bars = left.bar(groups, [final[g] for g in groups], color=[colors.get(g, "#1f77b4") for g in groups],
                            edgecolor="#333333", linewidth=0.4)
            s.tag(bars, len(groups))
            left.bar_label(bars, fontsize=7.5, padding=1.5)
            left.margins(y=0.15)
            left.grid(axis="x", visible=False)
        else:
            left.text(0.5, 0.5, "agents.parquet missing", ha="center", va="center", transform=left.transAxes)
        left.set_title("at the end")
        left.set_ylabel("points")
        lo, hi = markers.xlim if markers.xlim else (None, None)
        for g, v in over_time.items():
            if not len(v.get("block", [])):
                continue
            x = np.asarray(v["block"], dtype=float)
            y = np.asarray(v["cum"], dtype=float)
            if lo is not None:
                x, y = np.concatenate([[lo], x, [hi]]), np.concatenate([[0.0], y, [y[-1]]])
            s.tag(right.plot(x, y, color=colors.get(g, "#1f77b4"), linewidth=1.6, drawstyle="steps-post",
                             label=g)[0], len(v["block"]))
        right.set_title("validated contributions over blocks")
        right.set_xlabel("block")
        _mark_axis(right, markers, labels=True)
        _legend(right, markers)
        return _finish(fig, p)
