"""The invariants' part of report.html and of summary events, for the report's owner to call.

`report_section(summary)` returns one HTML fragment (no script, escaped text) from the summary's
`invariants` section; `violation_events(summary)` lists the violations as time-axis events
(block, label) like the chaos events, for marking on the report's plots.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any


def violation_events(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    inv = summary.get("invariants") or {}
    return [{"block": v.get("block"), "event": "invariant_violation", "invariant": v.get("invariant"),
             "message": v.get("message")} for v in inv.get("violations") or [] if isinstance(v, Mapping)]


def report_section(summary: Mapping[str, Any]) -> str:
    inv = summary.get("invariants")
    if not isinstance(inv, Mapping):
        return ""
    esc = html.escape
    checked = ", ".join(esc(str(n)) for n in inv.get("checked") or []) or "none"
    total = int(inv.get("violations_total") or 0)
    parts = ["<h3>Invariants</h3>",
             f"<p>Checked after every block ({int(inv.get('checks') or 0)} checks, "
             f"{float(inv.get('check_s') or 0):.2f} s): {checked}.</p>"]
    if not total:
        parts.append('<p class="ok">No violation.</p>')
    else:
        parts.append(f'<p class="bad"><b>{total} violation(s)</b>, first at block '
                     f'{esc(str(inv.get("first_violation_block")))}.</p>')
        rows = "".join(f"<tr><td>{esc(str(v.get('block')))}</td><td>{esc(str(v.get('invariant')))}</td>"
                       f"<td>{esc(str(v.get('message')))}</td></tr>" for v in (inv.get("violations") or [])[:50])
        parts.append(f"<table><tr><th>block</th><th>invariant</th><th>what</th></tr>{rows}</table>")
    bundles = inv.get("bundles") or []
    if bundles:
        items = "".join(f"<li>block {esc(str(b.get('block')))}: <code>{esc(str(b.get('path')))}</code>"
                        f"{'' if b.get('complete') else ' (incomplete)'}</li>" for b in bundles)
        parts.append(f"<p>Replay bundles up to the violating blocks (<code>dcai replay</code>):</p><ul>{items}</ul>")
    errors = inv.get("errors") or []
    if errors:
        parts.append(f"<p class=\"muted\">Monitor errors: {len(errors)} (first: {esc(str(errors[0]))}).</p>")
    return "\n".join(parts)
