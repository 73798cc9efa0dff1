"""How report.html and sweep.html write things: numbers, ether, gwei, percentages, durations, tables,
cards and the page's style sheet (no script, no external fetch)."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

from . import plots


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
           caption: str = "", num_to: int | None = None) -> str:
    """A table; columns from `num_from` up to `num_to` (default: the last) are right-aligned (numbers)."""
    rows = list(rows)
    if not rows:
        return '<p class="nodata">No rows.</p>'
    end = len(headers) if num_to is None else num_to

    def num(i: int) -> str:
        return " class=num" if num_from <= i < end else ""

    head = "".join(f"<th{num(i)}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{num(i)}>{esc(c)}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
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


def _status_badge(status: Any) -> str:
    s = str(status or "unknown")
    cls = {"completed": "ok", "interrupted": "warn", "failed": "bad"}.get(s, "warn")
    return f'<span class="badge {cls}">{esc(s)}</span>'


def _card(label: str, value: str, sub: str = "", cls: str = "") -> str:
    return (f'<div class="card {cls}"><div class="label">{esc(label)}</div><div class="value">{value}</div>'
            f'<div class="sub">{sub}</div></div>')



def plot_section(p: plots.Plot) -> str:
    body = p.svg if p.svg else f'<div class="nodata plot-nodata" data-plot="{esc(p.key)}">No data: {esc(p.note)}</div>'
    return (f'<figure class="plot" id="plot-{esc(p.key)}"><h3>{esc(p.title)}</h3>{body}'
            f"<figcaption>{esc(p.caption)}</figcaption></figure>")


def _ether_or(v: Any) -> str:
    return fmt_ether(v) if v is not None else "–"



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
.wide{overflow-x:auto}
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

