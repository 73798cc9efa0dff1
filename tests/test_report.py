"""report.html: written for real results folders (a short driven run with attackers, chaos events and its
honest-only baseline; a run that really failed; damaged and empty folders), self-contained, every plot
holding data, and rendered by headless Chromium without a console message."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from orchestrator.report import (build_report_parser, flows_by_group, fmt_ether, fmt_gwei, read_folder,
                                 validations_by_group, write_report)
from orchestrator.run import Run
from orchestrator.scenario import load_scenario_text

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
PLOTS = {"accuracy", "fees", "txpool", "latency", "deposit", "pnl", "points"}
BLOCK_AXIS_PLOTS = PLOTS - {"latency"}

# Honest contributors, label flippers and a greedy taker on driven blocks, two chaos events, one-hour
# refund wait (reached by time warps) and the honest-only counterfactual baseline: every plot has data.
SCENARIO = """
name: report-test
seed: 5
chain: {mining: driven, block_time: 2s, gas_limit: 30_000_000, base_fee: 1 gwei}
dataset: {name: synthetic_sparse, samples: 300, features: 200, avg_length: 8}
incentive: {cost_weight: 1e12, refund_wait: 1h, owner_claim_wait: 2h, any_address_claim_wait: 3h}
agents:
  - {policy: honest, count: 4, funding: 1 ether, samples_per_agent: 6, rate: 1/s,
     params: {recheck_s: 1800, give_up_s: 7200}}
  - {policy: adversarial, name: flipper, count: 2, funding: 1 ether, samples_per_agent: 6, rate: 1/s,
     params: {attack: label_flip, budget: 0.5 ether}}
  - {policy: greedy, count: 1, funding: 1 ether, samples_per_agent: 3, rate: 0.2/s,
     params: {value_per_valid: 0.01 ether}}
schedule:
  duration: 150 blocks
  max_wall_time: 3m
  chaos:
    - {at: 3 blocks, event: base_fee_shock, factor: 5}
    - {at: 6 blocks, event: gas_limit, gas_limit: 20M}
evaluation: {every: 5 blocks, spot_checks: 3, baseline: counterfactual}
outputs: {progress: false}
"""

# A run that really fails during set-up: an external node URL where nothing listens, and no funding key.
FAILING = """
name: report-failed
seed: 3
chain: {{mining: interval, rpc_url: "http://127.0.0.1:{port}"}}
dataset: {{name: synthetic_sparse, samples: 200, features: 100, avg_length: 8}}
agents:
  - {{policy: honest, count: 2, funding: 1 ether, samples_per_agent: 2, rate: 1/s}}
schedule: {{duration: 20 blocks, max_wall_time: 1m}}
telemetry: {{mqtt: none}}
outputs: {{progress: false}}
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, ray_cluster) -> Path:
    root = tmp_path_factory.mktemp("report-runs")
    d = Run(load_scenario_text(SCENARIO, "report-test.yaml"), results_root=root, run_id="full",
            progress=False).execute()
    summary = json.loads((d / "summary.json").read_text())
    assert summary["status"] == "completed", summary["error"]
    return d


@pytest.fixture(scope="module")
def report(run_dir) -> tuple[Path, float]:
    t = time.perf_counter()
    path = write_report(run_dir)
    return path, time.perf_counter() - t


@pytest.fixture(scope="module")
def failed_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report-failed")
    # The socket stays bound (never listening) through the run: connections are refused, and no
    # process started meanwhile (another xdist worker's node) can take the port.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        d = Run(load_scenario_text(FAILING.format(port=port), "failing.yaml"), results_root=root,
                run_id="failed", progress=False).execute()
    assert json.loads((d / "summary.json").read_text())["status"] == "failed"
    return d


# ---- checks on the page --------------------------------------------------------------------------


class _Refs(HTMLParser):
    """Every URL-bearing attribute and every element name of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for k, v in attrs:
            if k in ("src", "href", "xlink:href", "srcset", "action", "data", "poster", "background") and v:
                self.refs.append((tag, k, v))


def assert_self_contained(text: str) -> None:
    assert text.startswith("<!DOCTYPE html>")
    parser = _Refs()
    parser.feed(text)
    assert not parser.tags & {"script", "iframe", "object", "embed", "img", "video", "audio", "base"}, parser.tags
    for tag, attr, value in parser.refs:
        v = value.strip().lower()
        assert not v.startswith(("http:", "https:", "//", "ftp:", "ws:", "wss:")), (tag, attr, value)
        if attr != "href" or tag != "a":  # nothing is loaded but data: URIs and in-page references
            assert v.startswith(("#", "data:")), (tag, attr, value)
    # No stylesheet or font fetched from anywhere.
    assert not re.search(r"@import|url\(\s*['\"]?(?!#|data:)", text, re.I)


def plot_svgs(text: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r'<svg class="plot-svg"[^>]*data-plot="(\w+)".*?</svg>',
                                                        text, re.S)}


def series_marks(svg: str, key: str) -> tuple[int, int, dict[int, int]]:
    """(data-series, data-points, marks per series): a mark is a vertex of a drawn path or a placed
    marker (<use>) inside a group whose id is <key>-data-<series>[-<bar>]."""
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    marks: dict[int, int] = {}
    pattern = re.compile(rf"{key}-data-(\d+)(?:-\d+)?$")
    for g in root.iter(f"{ns}g"):
        m = pattern.match(g.get("id", ""))
        if not m:
            continue
        n = sum(len(re.findall(r"[ML]", p.get("d", ""))) for p in g.iter(f"{ns}path")
                if not p.get("id"))  # a marker's shape in <defs> is not a mark
        n += sum(1 for _ in g.iter(f"{ns}use"))
        marks[int(m.group(1))] = marks.get(int(m.group(1)), 0) + n
    return int(root.get("data-series")), int(root.get("data-points")), marks


# ---- the full run --------------------------------------------------------------------------------


def test_report_is_written_self_contained(report):
    path, _ = report
    assert path.name == "report.html" and path.exists()
    text = path.read_text()
    assert_self_contained(text)
    assert "report-test" in text and "completed" in text


def test_each_plot_has_data(report):
    text = report[0].read_text()
    svgs = plot_svgs(text)
    assert set(svgs) == PLOTS, f"plots drawn: {sorted(svgs)}"
    assert "No data:" not in text
    for key, svg in svgs.items():
        n_series, n_points, marks = series_marks(svg, key)
        assert n_points > 0 and n_series > 0, key
        assert sorted(marks) == list(range(n_series)), f"{key}: series in the SVG {sorted(marks)} of {n_series}"
        assert all(m > 0 for m in marks.values()), f"{key}: an empty series {marks}"
    # Accuracy: this run and the baseline, overall and per class.
    assert series_marks(svgs["accuracy"], "accuracy")[0] == 6
    # The ids are unique in the page (several inline SVGs share one document).
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))


def test_chaos_events_and_time_warps_are_marked_on_every_block_axis(run_dir, report):
    summary = json.loads((run_dir / "summary.json").read_text())
    events, warps = summary["chain"]["chaos_events"], summary["chain"]["time_warps"]
    assert len(events) == 2 and warps
    text = report[0].read_text()
    svgs = plot_svgs(text)
    for key in BLOCK_AXIS_PLOTS:
        svg = svgs[key]
        n_chaos = len({e["block"] for e in events})
        assert svg.count("stroke: #c62828") >= n_chaos, key  # the red dashed lines
        assert svg.count("stroke: #6d6d6d") >= len({w["block"] for w in warps}), key  # the grey dotted ones
    for e in events:
        assert f"at block {e['block']}" in text


def test_report_figures_match_the_run(run_dir):
    """The P&L curves end at each group's net (to the wei) and the points curves at its points."""
    summary = json.loads((run_dir / "summary.json").read_text())
    ledger = pq.read_table(run_dir / "ledger.parquet").to_pydict()
    ledger = {k: [int(v) if hasattr(v, "as_tuple") else v for v in vals] for k, vals in ledger.items()}
    flows = flows_by_group(ledger)
    points = validations_by_group(ledger)
    for group, inc in summary["incentives"].items():
        if inc["transactions"]:
            assert flows[group]["total_wei"][-1] == int(inc["net"]), group
        if inc["points"]:
            assert points[group]["cum"][-1] == inc["points"], group
    f = read_folder(run_dir)
    assert not {"summary", "blocks", "ledger", "agents", "accuracy"} & set(f.notes)


def test_cli_writes_the_report_and_the_baseline_one(run_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="dcai")
    build_report_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", str(run_dir)])
    assert args.func(args) == 0
    assert (run_dir / "baseline" / "report.html").exists()
    assert str(run_dir / "report.html") in capsys.readouterr().out
    assert 'href="baseline/report.html"' in (run_dir / "report.html").read_text()
    assert_self_contained((run_dir / "baseline" / "report.html").read_text())
    args = parser.parse_args(["report", str(tmp_path / "nothing-here")])
    assert args.func(args) == 2


# ---- partial folders -----------------------------------------------------------------------------


def test_failed_run_gets_a_report(failed_dir):
    text = write_report(failed_dir).read_text()
    assert_self_contained(text)
    assert "failed" in text and "RunError" in text
    assert plot_svgs(text) == {}
    for key in PLOTS:
        assert f'class="nodata plot-nodata" data-plot="{key}"' in text, key
    assert "has no rows" in text


def test_damaged_folder_gets_a_report_with_what_is_left(run_dir, tmp_path):
    d = tmp_path / "damaged"
    shutil.copytree(run_dir, d)
    shutil.rmtree(d / "baseline")
    (d / "summary.json").unlink()
    (d / "ledger.parquet").unlink()
    (d / "accuracy.parquet").write_bytes(b"not parquet")
    text = write_report(d).read_text()
    assert_self_contained(text)
    assert "summary.json is missing" in text
    assert "accuracy.parquet could not be read" in text
    assert "ledger.parquet is missing" in text
    svgs = plot_svgs(text)
    assert {"fees", "txpool", "points"} <= set(svgs)  # blocks.parquet and agents.parquet are intact
    for key in ("accuracy", "latency", "deposit", "pnl"):
        assert key not in svgs and f'data-plot="{key}"' in text


def test_empty_folder_gets_a_report(tmp_path):
    text = write_report(tmp_path).read_text()
    assert_self_contained(text)
    assert "summary.json is missing" in text and "scenario.json and scenario.yaml are missing" in text


def test_wei_formatting():
    assert fmt_ether(10**18) == "1.0000 ETH"
    assert fmt_ether("-1637848603086569936") == "-1.6378 ETH"
    assert fmt_ether(35_178_899_036_121_058) == "0.03518 ETH"
    assert fmt_ether(0) == "0 ETH"
    assert fmt_gwei(1_000_000_000) == "1 gwei"
    assert fmt_gwei(333_224_334) == "0.3332 gwei"
    assert fmt_gwei(7) == "7 wei"


# ---- headless Chromium -----------------------------------------------------------------------------

# With --enable-logging=stderr every message of the page's console (console.* calls, uncaught errors)
# is a line "[pid:tid:date:INFO:CONSOLE:line] "text", source: url (line)".
CONSOLE_LINE = re.compile(r"^\[[^\]]*:CONSOLE[:(\]]", re.M)


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        subprocess.run(["sh", str(ROOT / "tests" / "setup_debian.sh"), "chromium"], check=False, timeout=900)
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed and tests/setup_debian.sh could not install Debian's "
                    "chromium (it needs root or password-less sudo and the Debian archive)")
    return CHROMIUM


def render(chromium: Path, page: Path, tmp: Path, height: int = 4000) -> tuple[subprocess.CompletedProcess, Path]:
    shot = tmp / (page.parent.name + "-" + page.stem + ".png")
    profile = tmp / ("profile-" + page.parent.name)
    cmd = [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
           f"--window-size=1400,{height}", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    return proc, shot


def test_console_detection_works(chromium, tmp_path):
    """The check below would see a console message: a page that logs and throws is caught."""
    bad = tmp_path / "bad" / "page.html"
    bad.parent.mkdir()
    bad.write_text('<!DOCTYPE html><html><body><p>x</p><script>console.error("deliberate-error");'
                   "undefinedFunction();</script></body></html>")
    proc, _ = render(chromium, bad, tmp_path, height=300)
    lines = CONSOLE_LINE.findall(proc.stderr)
    assert len(lines) >= 2 and "deliberate-error" in proc.stderr and "ReferenceError" in proc.stderr, proc.stderr


def test_report_renders_in_headless_chromium_without_console_errors(chromium, report, failed_dir, tmp_path):
    from PIL import Image

    write_report(failed_dir)
    for page in (report[0], failed_dir / "report.html"):
        proc, shot = render(chromium, page, tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        console = [line for line in proc.stderr.splitlines() if CONSOLE_LINE.match(line)]
        assert not console, f"console messages from {page}:\n" + "\n".join(console)
        assert shot.exists(), proc.stderr[-3000:]
        with Image.open(shot) as im:
            assert im.size == (1400, 4000)
            colors = im.convert("RGB").getcolors(maxcolors=1_000_000)
            assert colors is not None and len(colors) > 50, "the screenshot is blank"


def test_policy_warnings_get_their_own_list(tmp_path):
    """summary.json `warnings` (what agents could not do) are listed, escaped, apart from errors."""
    from orchestrator.report_folder import Folder
    from orchestrator.report_sections import summary_tables

    said = "arrival rate cannot be met: poisson arrivals at 5/s (load 1) on 12 s blocks <come faster>"
    html = summary_tables(Folder(path=tmp_path, summary={"status": "completed", "warnings": [said]}))
    assert "What agents could not do" in html and "&lt;come faster&gt;" in html
    assert "Errors during the run" not in html
    quiet = summary_tables(Folder(path=tmp_path, summary={"status": "completed", "warnings": []}))
    assert "What agents could not do" not in quiet
