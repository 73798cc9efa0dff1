"""Prometheus: `dcai run --metrics-port N` serves /metrics during the run; a real Prometheus server
(Debian's, installed by tests/setup_debian.sh) scrapes it, and its HTTP API returns the run's
series afterwards. The Grafana dashboard shipped in docs/ only queries series the run exports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest


ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

SCENARIO = """
name: prom-test
seed: 4
chain: {mining: driven, block_time: 12s}
dataset: {samples: 400, features: 100, avg_length: 6}
incentive: {type: stakeable, cost_weight: 1e12, refund_wait: 5m, owner_claim_wait: 20m, any_address_claim_wait: 30m}
agents:
  - {policy: honest, count: 3, funding: 1 ether, samples_per_agent: 6, rate: 0.1/s,
     params: {recheck_s: 5m, give_up_s: 1h}}
  - {policy: adversarial, name: flipper, count: 2, funding: 1 ether, samples_per_agent: 6, rate: 0.1/s,
     params: {attack: label_flip}}
schedule: {duration: 120 blocks}
evaluation: {every: 10 blocks, spot_checks: 1}
outputs: {progress: false}
telemetry: {mqtt: none}
"""

SERIES = [
    'dcai_blocks_total{run="prom"}',
    'dcai_transactions_total{run="prom",group="honest",role="honest",status="included"}',
    'dcai_transactions_sent_total{run="prom",group="flipper",role="attacker"}',
    'dcai_inclusion_latency_blocks_bucket{run="prom",group="honest",le="+Inf"}',
    'dcai_inclusion_latency_blocks_count{run="prom",group="honest"}',
    'dcai_base_fee_wei{run="prom"}',
    'dcai_pool_pending{run="prom"}',
    'dcai_block_fill_ratio{run="prom"}',
    'dcai_accuracy{run="prom"}',
    'dcai_pnl_wei{run="prom",role="honest"}',
    'dcai_pnl_wei{run="prom",role="attacker"}',
    'dcai_run_state{run="prom",state="running"}',
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(api: str, expr: str) -> list[dict[str, Any]]:
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


@pytest.fixture
def prometheus(tmp_path):
    if not Path(PROMETHEUS).exists():
        pytest.skip("prometheus is not installed (tests/setup_debian.sh)")
    metrics_port, web_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global: {{scrape_interval: 1s, scrape_timeout: 900ms}}
scrape_configs:
  - job_name: dcai
    static_configs: [{{targets: ["127.0.0.1:{metrics_port}"]}}]
""")
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{web_port}"], stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{web_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{api}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.2)
        yield metrics_port, api
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_prometheus_scrapes_a_run(tmp_path, prometheus, ray_cluster):
    metrics_port, api = prometheus
    path = tmp_path / "prom.yaml"
    path.write_text(SCENARIO)
    # In its own process, as a user runs it: nothing another test left in this process (Ray, loggers,
    # the console wrapper) stands between the run and its /metrics server.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    code = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(path), "--metrics-port",
                           str(metrics_port), "--out", str(tmp_path / "out"), "--run-id", "prom", "--no-progress"],
                          cwd=ROOT, env=env, timeout=600).returncode
    summary = json.loads((tmp_path / "out" / "prom" / "summary.json").read_text())
    assert code == 0, summary["error"]
    time.sleep(1.5)  # the last scrape in flight lands
    # The server stopped with the run: its series are stale now, so ask for their latest sample.
    got = {}
    for s in SERIES:
        deadline = time.monotonic() + 20  # a loaded machine may commit the last scrape late
        while not (result := query(api, f"last_over_time({s}[10m])")) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert result, f"prometheus has no samples for {s}"
        got[s] = float(result[0]["value"][1])
    scraped = query(api, 'count_over_time(up{job="dcai"}[10m])')
    assert scraped and float(scraped[0]["value"][1]) >= 3, "fewer than three scrapes during the run"
    # Values agree with the run's own results.
    tx = summary["transactions"]
    assert got['dcai_blocks_total{run="prom"}'] >= 10
    assert 0 < got['dcai_transactions_total{run="prom",group="honest",role="honest",status="included"}'] \
        <= tx["by_status"]["included"]
    assert got['dcai_inclusion_latency_blocks_count{run="prom",group="honest"}'] == \
        got['dcai_transactions_total{run="prom",group="honest",role="honest",status="included"}']
    assert 0 <= got['dcai_accuracy{run="prom"}'] <= 1
    assert got['dcai_base_fee_wei{run="prom"}'] > 0
    # Live P&L per role ends where the run's books end (ledger flows: received - value - fee).
    assert got['dcai_pnl_wei{run="prom",role="honest"}'] == pytest.approx(int(summary["incentives"]["honest"]["net"]))
    assert got['dcai_pnl_wei{run="prom",role="attacker"}'] == pytest.approx(
        int(summary["incentives"]["flipper"]["net"]))
    # Every query of the shipped Grafana dashboard is valid PromQL for this server.
    board = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    for panel in board["panels"]:
        for target in panel["targets"]:
            query(api, target["expr"].replace("$run", "prom"))  # asserts status success


def test_grafana_dashboard_queries_exported_series():
    board = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert len(board["panels"]) >= 8 and exprs
    text = " ".join(exprs)
    for name in ("dcai_transactions_total", "dcai_inclusion_latency_blocks_bucket", "dcai_base_fee_gwei",
                 "dcai_pool_pending", "dcai_accuracy", "dcai_pnl_ether", "dcai_invariant_violations_total"):
        assert name in text, name
