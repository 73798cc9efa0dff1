"""Write benchmarks/RESULTS.md from the benchmark result files in benchmarks/results/*.json.

Regenerates the page without re-running anything: the machine section is read from the result files
(each benchmark records the machine it ran on) and completed with what only this machine can tell
(solc version from node_modules). Every file present is reported; a missing one is named.

    python benchmarks/report_results.py [--results DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KNOWN = ("throughput", "scale", "gas", "soak", "accuracy", "fidelity", "fidelity_averaged")


_MTIME: dict[str, str] = {}  # file times: the date of results that do not record theirs (gas.json is a list)


def load(results: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in sorted(results.glob("*.json")):
        _MTIME[f.stem] = time.strftime("%Y-%m-%dT%H:%M:%S%z (file time)", time.localtime(f.stat().st_mtime))
        try:
            out[f.stem] = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            out[f.stem] = {"_error": f"unreadable: {e}"}
    return out


def n(x: Any, digits: int = 0) -> str:
    """A number for a table: thousands separators, nan as n/a."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        if isinstance(x, float) and math.isnan(x):
            return "n/a"
        return f"{x:,.{digits}f}"
    return str(x)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


# ---- the machine --------------------------------------------------------------------------------

def _solc_version() -> str:
    try:
        return json.loads((ROOT / "node_modules" / "solc" / "package.json").read_text())["version"]
    except (OSError, KeyError, json.JSONDecodeError):
        return "unknown"


def _anvil_version_here() -> str:
    try:
        import subprocess

        sys.path.insert(0, str(ROOT))
        from contracts.toolchain import anvil_binary

        out = subprocess.run([str(anvil_binary()), "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0]
    except Exception:  # noqa: BLE001 - the page is still written without it
        return "unknown"


def machine_section(data: dict[str, Any]) -> list[str]:
    recorded = [(name, d["machine"]) for name, d in data.items() if isinstance(d, dict) and "machine" in d]
    # The fullest record (the throughput benchmark's also lists client library versions) describes the machine.
    m = max(recorded, key=lambda r: len(r[1].get("versions", {})))[1] if recorded else {}
    v = dict(m.get("versions", {}))
    lines = ["## Machine", ""]
    if not recorded:
        lines.append("(no result file records its machine; this machine's facts below)")
        lines.append("")
    cpu = m.get("cpu") or platform.processor() or "?"
    mem = m.get("memory_gib")
    rows = [
        ["CPU", f"{cpu}, {m.get('cores', os.cpu_count())} cores"],
        ["RAM", f"{mem} GiB" if mem is not None else "?"],
        ["OS", m.get("os", platform.platform())],
        ["Python", v.pop("python", platform.python_version())],
        ["anvil", v.pop("anvil", None) or _anvil_version_here()],
        ["solc (solc-js)", _solc_version()],
    ]
    rows += [[k, str(val)] for k, val in sorted(v.items())]
    lines += table(["", ""], rows)
    others = {name: mm for name, mm in recorded if (mm.get("cpu"), mm.get("cores"), mm.get("memory_gib"))
              != (m.get("cpu"), m.get("cores"), m.get("memory_gib"))}
    if others:
        lines += ["", "Some results were taken on another machine: " + ", ".join(
            f"{k} ({mm.get('cpu')}, {mm.get('cores')} cores)" for k, mm in others.items())]
    lines += ["", "Each benchmark records the machine's other load meanwhile (`foreign_cores`): "
              "the machine is shared, and other processes change throughput figures by up to ±30%."]
    return lines


def when(d: Any, name: str = "") -> str:
    if isinstance(d, dict) and "when" in d:
        return str(d["when"])
    return _MTIME.get(name, "?")


# ---- one section per benchmark ------------------------------------------------------------------

def throughput_section(d: dict[str, Any]) -> list[str]:
    names = {"a_raw": "(a) raw, pre-signed", "b_shards_ray": "(b) framework, Ray shards (headline)",
             "b_shards_inprocess": "(b) framework, 1 shard in-process", "c_web3": "(c) web3.py ordinary",
             "c_web3_fixed_gas": "(c') web3.py, gas given"}
    s = d.get("settings", {})
    lines = ["## Throughput (`throughput.py`)", "",
             f"Taken {when(d)}; {n(s.get('n'))} transactions per run ({n(s.get('n_web3'))} for web3.py), "
             f"medians of {s.get('repeats')} runs per path, blocks every {s.get('block_ms')} ms, "
             f"gas limit {n(s.get('gas_limit'))}"
             + ("; (a) and both (b) paths run round-robin, one run of each per round." if s.get("interleaved") else ".")
             + f" Machine load average before: {s['load_before']:.2f}." * ("load_before" in s), ""]
    rows = []
    for key, title in names.items():
        p = d.get("paths", {}).get(key)
        if not p:
            continue
        m = p["median"]
        rows.append([title, n(m["submitted_tps"]), n(m["included_tps"]), n(m["client_cpu_ms_per_tx"], 3),
                     n(m["node_cpu_ms_per_tx"], 2), n(m.get("foreign_cores"), 2)])
    lines += table(["path", "submitted tx/s", "included tx/s", "client CPU ms/tx", "node CPU ms/tx",
                    "other load (cores)"], rows)
    r = d.get("ratios", {})
    targets = d.get("targets", {})
    lines += [""]
    def verdict(key: str, bound: object) -> str:
        met = targets.get(f"{key}_met")
        return "" if met is None else f"≥ {bound}: " + ("met" if met else "NOT met")

    # Older files have one (b)/(a) bound for both columns.
    sub_min = targets.get("b_over_a_submitted_min", targets.get("b_over_a_min", 0.6))
    inc_min = targets.get("b_over_a_included_min", targets.get("b_over_a_min", 0.6))
    c_min = targets.get("b_over_c_min", 25)
    lines += table(["ratio", "submitted", "included", "target, submitted", "target, included"], [
        ["(b)/(a)", n(r.get("b_over_a_submitted"), 2), n(r.get("b_over_a_included"), 2),
         verdict("b_over_a_submitted", sub_min), verdict("b_over_a_included", inc_min)],
        *([["(b)/(a), median of the rounds' own ratios", n(r.get("b_over_a_submitted_paired"), 2),
             n(r.get("b_over_a_included_paired"), 2), "", ""]] if "b_over_a_included_paired" in r else []),
        ["(b)/(c)", n(r.get("b_over_c_submitted"), 1), n(r.get("b_over_c_included"), 1),
         verdict("b_over_c_submitted", c_min), verdict("b_over_c_included", c_min)],
        ["(b)/(c')", n(r.get("b_over_c_fixed_gas_submitted"), 1), n(r.get("b_over_c_fixed_gas_included"), 1), "", ""],
    ])
    if d.get("path_errors"):
        lines += ["", "Failed paths: " + "; ".join(f"{k}: {v}" for k, v in d["path_errors"].items())]
    return lines


def scale_section(d: dict[str, Any]) -> list[str]:
    s = d.get("settings", {})
    ph = d.get("phase_s", {})
    lines = ["## Scale (`scale.py`)", "",
             f"Taken {when(d)}; {n(s.get('agents'))} agents in {s.get('shards')} Ray shards, "
             f"whole benchmark {n(d.get('wall_s'))} s.", ""]
    lines += table(["phase", "seconds"], [[k.removesuffix("_s").replace("_", " "), n(v, 2)] for k, v in ph.items()])
    t = d.get("ticks", {})
    pk = d.get("peak_rss_mib", {})
    shards = pk.get("shards", {})
    lines += [""]
    lines += table(["figure", "value"], [
        ["idle tick, all agents (median)", f"{n(t.get('idle_tick_ms_median'))} ms"],
        ["active tick (median)", f"{n(t.get('active_tick_ms_median'))} ms"],
        ["first tick (every agent sends)", f"{n(t.get('first_tick_ms'))} ms for {n(t.get('first_tick_sent'))} tx"],
        ["peak RSS driver", f"{n(pk.get('driver'))} MiB"],
        ["peak RSS per shard", ", ".join(f"{n(v)} MiB" for v in shards.values()) or "n/a"],
        ["Ray's own processes at end", f"{n(pk.get('ray_system_at_end'))} MiB"],
        ["anvil at end", f"{n(pk.get('node_at_end'))} MiB"],
        ["funding, the run's way / pre-signed batches",
         f"{n(ph.get('fund_runner_s'), 1)} s / {n(ph.get('fund_batched_s'), 1)} s "
         f"(ratio {n((ph.get('fund_runner_s') or math.nan) / (ph.get('fund_batched_s') or math.nan), 1)})"],
        ["ledger", json.dumps(d.get("ledger", {}))],
    ])
    if d.get("load_before") or d.get("load_after"):
        lines += ["", f"Machine load (1/5/15-min load average, `uptime`) before: {_load(d.get('load_before'))}; "
                      f"after: {_load(d.get('load_after'))}; other processes used {n(d.get('foreign_cores'), 2)} "
                      "cores on average during the run (the machine has "
                      f"{d.get('machine', {}).get('cores', os.cpu_count())} cores). Times are wall times on that shared machine."]
    steps = d.get("steps") or []
    if len(steps) > 1:
        lines += ["", "Growth, one line per step of the population (the step's own costs; ticks with everyone so "
                      "far; idle: every agent asleep until its refund a day later; `agents` = choosing, stepping "
                      "and re-scheduling agents inside the shard's step, the rest of the step is receipts and "
                      "ledger counts):", ""]
        lines += table(["agents", "add agents s", "fund batched s", "fund run's way s", "first tick ms (sent)",
                        "active ticks", "active tick ms (median)", "idle tick ms", "idle shard step ms",
                        "of which agents ms", "agents stepped per idle tick", "shards MiB", "node MiB", "load"],
                       [[n(x.get("agents")), n(x.get("add_agents_s"), 1), n(x.get("fund_batched_s"), 1),
                         n(x.get("fund_runner_s"), 1),
                         f"{n(x.get('first_tick_ms'))} ({n(x.get('first_tick_sent'))})", n(x.get("active_ticks")),
                         n(x.get("active_tick_ms_median")), n(x.get("idle_tick_ms_median")),
                         n(x.get("idle_shard_step_ms_median")), n(x.get("idle_shard_agents_ms_median"), 2),
                         n(max(x.get("idle_stepped") or [0])), n(x.get("rss_mib", {}).get("shards_mib")),
                         n(x.get("rss_mib", {}).get("node_mib")), _load(x.get("load"))[:4]] for x in steps])
    return lines


def _load(x: Any) -> str:
    return "/".join(f"{v:.2f}" for v in x) if isinstance(x, (list, tuple)) else "n/a"


def gas_section(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["## Gas (`gas.py`)", "", f"Taken {_MTIME.get('gas', '?')}.", "",
             "gasUsed per operation against the reference implementation (optimizer on unless noted); "
             "ratio = ours / reference, target = the ratio to stay under.", ""]
    ops = [r for r in rows if r.get("operation") != "full deployment"]
    deps = [r for r in rows if r.get("operation") == "full deployment"]
    met = sum(1 for r in rows if r.get("ratio") is not None and r["ratio"] <= r.get("target", math.inf))
    body = [[r["model"], r["input"], r["operation"], n(r["gas"]), n(r["reference_gas"]), n(r["ratio"], 3),
             n(r.get("target"), 2)] for r in ops]
    lines += table(["model", "input", "operation", "gas", "reference", "ratio", "target"], body)
    lines += [""]
    lines += table(["model", "size", "deployment gas", "reference", "reference setting", "ratio", "target"],
                   [[r["model"], r["input"], n(r["gas"]), n(r["reference_gas"]), r.get("reference_setting", ""),
                     n(r["ratio"], 3), n(r.get("target"), 2)] for r in deps])
    worst = max((r for r in rows if r.get("ratio") is not None), key=lambda r: r["ratio"], default=None)
    lines += ["", f"{met} of {len(rows)} rows within their target"
              + (f"; worst ratio {worst['ratio']:.3f} ({worst['model']}, {worst['input']}, {worst['operation']})"
                 if worst else "") + "."]
    return lines


def soak_section(d: dict[str, Any]) -> list[str]:
    s = d.get("settings", {})
    t = d.get("latency_trend", {})
    rec = d.get("reconciliation", {})
    lines = ["## Soak (`soak.py`)", "",
             f"Taken {when(d)}; {n(d.get('final'))} transactions final of {n(s.get('tx'))} "
             f"({json.dumps(d.get('statuses', {}))}; {json.dumps(d.get('actions', {}))}) from {n(s.get('agents'))} "
             f"honest agents in {s.get('shards')} {'Ray shard actors' if s.get('ray') else 'in-process shards'}, "
             f"~{s.get('per_block')} tx per 1-second driven block, anvil"
             f"{' --prune-history' if s.get('prune_history') is not None else ''}; loop {n(d.get('loop_s'))} s, "
             f"{n(d.get('overall_tps'))} tx/s overall, machine busy {n(d.get('machine_busy_cores', d.get('foreign_cores')), 2)} "
             f"cores meanwhile (other processes: {n(d.get('other_cores'), 2)}). "
             f"Reconciliation ledger vs chain: {'ok' if rec.get('ok') else 'MISMATCH'} "
             f"({n(rec.get('agents'))} agents).", ""]
    rows = []
    for w in d.get("windows", []):
        m = w.get("rss_mib", {})
        rows.append([str(w["window"]), f"{n(w['from_tx'])}-{n(w['to_tx'])}", n(w["tps"]),
                     n(w["latency_blocks_p50"], 1), n(w["latency_blocks_p99"], 1), n(w["latency_s_p50"] * 1e3),
                     n(w["latency_s_p99"] * 1e3), n(m.get("driver")), n(m.get("shards")), n(m.get("ray")),
                     n(m.get("anvil"))])
    lines += table(["window", "tx", "tx/s", "latency blocks p50", "p99", "latency ms p50", "p99",
                    "driver MiB", "shards MiB", "Ray MiB", "anvil MiB"], rows)
    lines += ["", "Trend (least-squares over the windows, per 10,000 transactions): "
              f"latency p50 {n(t.get('latency_s_p50_per_10k_tx', math.nan) * 1e3, 1)} ms, "
              f"p99 {n(t.get('latency_s_p99_per_10k_tx', math.nan) * 1e3, 1)} ms, "
              f"in blocks {n(t.get('latency_blocks_p50_per_10k_tx'), 3)}; first vs last quarter p50 "
              f"{n(t.get('latency_s_p50_first_quarter', math.nan) * 1e3)} → "
              f"{n(t.get('latency_s_p50_last_quarter', math.nan) * 1e3)} ms; tx/s "
              f"{n(t.get('tps_first_quarter'))} → {n(t.get('tps_last_quarter'))}.", ""]
    verdict = d.get("memory_verdict", {})
    mem_rows = [[name, n(v["start_mib"]), n(v.get("after_warmup_mib")), n(v["end_mib"]), n(v["peak_mib"]),
                 n(v["growth_mib_per_10k_tx"], 2), verdict.get(name, "")] for name, v in d.get("memory", {}).items()]
    lines += table(["process", "start MiB", "after warm-up", "end", "peak", "growth MiB / 10k tx", "verdict"],
                   mem_rows)
    held = d.get("shards_hold")
    if held:
        lines += ["", "What each shard still held at the end (the rest was settled and forgotten): "
                  + "; ".join(f"shard {k}: ledger records {n(h.get('records'))} of "
                              f"{n((h.get('records') or 0) + (h.get('records_retired') or 0))}, public contributions "
                              f"{n(h.get('public_kept'))} of {n(h.get('public_contributions'))}, own contributions "
                              f"{n(h.get('contributions_kept'))}" for k, h in enumerate(held)) + "."]
    if d.get("explanation"):
        lines += [""] + [f"* {e}" for e in d["explanation"]]
    prune = d.get("prune_history_comparison")
    if prune:
        lines += ["", "anvil with and without `--prune-history` (same workload):", ""]
        lines += table(["anvil flags", "transactions", "anvil end MiB", "anvil growth MiB / 10k tx", "tx/s"],
                       [[r["flags"], n(r["tx"]), n(r["anvil_end_mib"]), n(r["anvil_growth_mib_per_10k_tx"], 1),
                         n(r["tps"])] for r in prune])
    return lines


def generic_section(d: Any, name: str, title: str) -> list[str]:
    """A result this page has no special layout for (accuracy.py's, gas_limits.py's): its headline
    figures generically (numbers and short strings at the top level, and a table of its rows)."""
    lines = [f"## {title}", "", f"Taken {when(d, name)}.", ""]
    if isinstance(d, list):
        rows = d
        top: dict[str, Any] = {}
    else:
        top = {k: v for k, v in d.items() if k not in ("machine", "when", "benchmark")}
        rows = next((v for v in top.values() if isinstance(v, list) and v and isinstance(v[0], dict)), [])
    scalars = [[k, n(v, 4) if isinstance(v, float) else str(v)] for k, v in top.items()
               if isinstance(v, (int, float, str, bool)) and len(str(v)) < 80]
    if scalars:
        lines += table(["figure", "value"], scalars) + [""]
    if rows:
        keys = [k for k in rows[0] if not isinstance(rows[0][k], (dict, list))][:10]
        lines += table(keys, [[n(r.get(k), 4) if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
                              for r in rows])
    return lines


def fidelity_section(d: dict[str, Any]) -> list[str]:
    """The paper's experiment on chain vs off-chain: fidelity.py writes its own tables and closing note
    from the same figures, so the page and the console say the same thing."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.fidelity import tables

    wall = d.get("chain_run_wall_s") or {}
    code = d.get("code", {})
    title = ("## Fidelity: the paper's experiment on chain vs the reference's assumptions (`fidelity.py`)"
             if not d.get("averaging") else
             f"## Fidelity with the averaged perceptron (`fidelity.py --averaging {d['averaging']}`)")
    lines = [title, "",
             f"Taken {when(d)} on `{d.get('scenario')}`, seeds {d.get('seeds')}; code {code.get('branch')} "
             f"@ {code.get('commit')}{' (uncommitted changes)' if code.get('dirty') else ''}. "
             + (f"One chain run took {wall.get('mean', 0):.0f} ± {wall.get('ci95', 0):.0f} s of wall time "
                f"(driven blocks, idle time skipped, no report); " if wall else "")
             + f"the whole benchmark {d.get('total_wall_s')} s"
             + (f" (load average at the end {d['load_average_at_end']})" if d.get("load_average_at_end") else "")
             + ".", ""]
    lines += tables(d)
    lines += [""] + [x for note in d.get("notes", []) for x in (note, "")]
    return lines[:-1]


SECTIONS = {"throughput": throughput_section, "scale": scale_section, "gas": gas_section, "soak": soak_section,
            "fidelity": fidelity_section, "fidelity_averaged": fidelity_section}


def render(data: dict[str, Any]) -> str:
    lines = ["# Benchmark results", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M %Z')} by `benchmarks/report_results.py` from "
             "`benchmarks/results/*.json` (regenerate without re-running: `python benchmarks/report_results.py`; "
             "`make bench` runs every benchmark, then this). Protocols: `benchmarks/README.md`.", ""]
    lines += machine_section(data)
    lines += ["", "| benchmark | result file | taken |", "|---|---|---|"]
    for name in KNOWN:
        lines.append(f"| {name} | " + (f"`results/{name}.json` | {when(data[name], name)}" if name in data
                                        else "missing (not run) | ") + " |")
    for name in [*KNOWN, *sorted(set(data) - set(KNOWN))]:
        d = data.get(name)
        if d is None:
            continue
        lines += [""]
        if isinstance(d, dict) and "_error" in d:
            lines += [f"## {name}", "", d["_error"]]
            continue
        fn = SECTIONS.get(name)
        try:
            lines += fn(d) if fn else generic_section(d, name, f"{name.replace('_', ' ').capitalize()} (`{name}.py`)")
        except Exception as e:  # noqa: BLE001 - one odd file must not stop the page
            lines += [f"## {name}", "", f"(could not be summarised: {type(e).__name__}: {e})"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    a = p.parse_args(argv)
    data = load(a.results)
    a.out.write_text(render(data))
    print(f"written {a.out} ({', '.join(sorted(data)) or 'no result files'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
