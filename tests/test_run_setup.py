"""Set-up of a run: the funder is checked before anything is compiled or deployed, and Ctrl-C
during set-up stops at once with a valid partial results folder (a real SIGINT to `dcai run`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq

from orchestrator.run import Run
from orchestrator.scenario import load_scenario_text

ROOT = Path(__file__).resolve().parents[1]

POOR = """
name: poor-funder
chain: {mining: driven, balance: 5 ether}
dataset: {samples: 100, features: 40, avg_length: 4}
agents:
  - {policy: honest, count: 2, funding: 2 ether, samples_per_agent: 3}
  - {policy: honest, name: more, count: 1, funding: 3 ether, samples_per_agent: 3}
schedule: {duration: 10 blocks}
outputs: {progress: false}
telemetry: {mqtt: none}
"""

# A model large enough that its deploy (weights written in chunks) takes seconds.
BIG_MODEL = """
name: big-model
chain: {mining: driven, block_time: 2s, gas_limit: 30M}
dataset: {samples: 400, features: 60000, avg_length: 400}
agents:
  - {policy: honest, count: 2, funding: 1 ether, samples_per_agent: 3}
schedule: {duration: 10 blocks}
outputs: {progress: false}
telemetry: {mqtt: none}
"""


def test_funder_short_of_the_agents_funding_fails_before_compile(tmp_path):
    t = time.monotonic()
    run = Run(load_scenario_text(POOR, "poor.yaml"), results_root=tmp_path, run_id="p", progress=False,
              report=False)
    run_dir = run.execute()
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "failed"
    # 2 x 2 + 1 x 3 = 7 ether needed, 5 held: the field to change and the shortfall are named.
    assert "chain.balance: the funding account holds 5.0000 ether, the agents need 7.0000 ether" in s["error"]
    assert "short by 2.0000 ether" in s["error"]
    assert "compile_s" not in s["duration"]["phases"] and "deploy_s" not in s["duration"]["phases"]
    assert time.monotonic() - t < 30


def test_ctrl_c_during_deploy_stops_at_once_with_a_partial_folder(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(BIG_MODEL)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(path), "--out", str(tmp_path / "out"),
                             "--run-id", "r", "--no-progress"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = tmp_path / "out" / "r" / "run.log.jsonl"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and '"dataset ready"' in log.read_text():
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.5)  # deploy under way
        sent, sent_wall = time.monotonic(), time.time()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.stdout.read() if proc.stdout else ""
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert not any(r["event"] == "contracts deployed" for r in records)  # it really was interrupted during deploy
    finished = next(r for r in records if r["event"] == "run finished")
    # The run stops and has written its folder within two seconds of the signal; the process then
    # exits (interpreter teardown, slower on a loaded machine).
    stopped = datetime.fromisoformat(finished["timestamp"].replace("Z", "+00:00")).timestamp() - sent_wall
    assert stopped < 2.0, f"the run took {stopped:.2f} s to stop\n{out}"
    assert took < 15, f"the process took {took:.2f} s to exit\n{out}"
    run_dir = tmp_path / "out" / "r"
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "interrupted" and s["ended_because"] == "interrupted during set-up"
    for table in ("ledger", "blocks", "agents", "accuracy", "contributions"):
        assert pq.read_table(run_dir / f"{table}.parquet").num_rows == 0
    assert json.loads((run_dir / "scenario.json").read_text())["name"] == "big-model"
    assert "Traceback" not in out
