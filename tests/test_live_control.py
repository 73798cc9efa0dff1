"""A live run watched and steered over MQTT: `dcai watch` shows it, pause holds it, stop ends it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dcai(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_watch_pause_resume_stop(tmp_path):
    scenario = tmp_path / "live.yaml"
    scenario.write_text(
        "name: live\n"
        "chain: {mining: driven, block_time: 2s}\n"
        "dataset: {samples: 400, features: 100, avg_length: 6}\n"
        "agents:\n  - {policy: honest, count: 4, funding: 1 ether, samples_per_agent: 80, rate: 0.2/s}\n"
        "schedule: {duration: 100000 blocks}\n"
        "outputs: {progress: false}\n"
        "telemetry: {mqtt: embedded}\n"
    )
    run_dir = tmp_path / "results" / "live"
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(scenario), "--out",
                             str(tmp_path / "results"), "--run-id", "live"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not (run_dir / "telemetry.json").exists():
            time.sleep(0.2)
        assert (run_dir / "telemetry.json").exists(), "the run never published its broker endpoint"
        snap = dcai("watch", "--run-dir", str(run_dir), "--once", "--timeout", "60")
        assert snap.returncode == 0, snap.stdout + snap.stderr
        assert "block" in snap.stdout.lower()

        assert dcai("watch", "--run-dir", str(run_dir), "--send", "pause").returncode == 0
        time.sleep(1.5)  # the command takes effect at the next block
        held = dcai("watch", "--run-dir", str(run_dir), "--once", "--timeout", "20").stdout
        assert "paused" in held, held
        time.sleep(2)
        still = dcai("watch", "--run-dir", str(run_dir), "--once", "--timeout", "20").stdout
        assert "paused" in still, still

        assert dcai("watch", "--run-dir", str(run_dir), "--send", "resume").returncode == 0
        time.sleep(1.5)
        assert "running" in dcai("watch", "--run-dir", str(run_dir), "--once", "--timeout", "20").stdout

        assert dcai("watch", "--run-dir", str(run_dir), "--send", "stop").returncode == 0
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted", out[-2000:]
    assert summary["paused_s"] >= 2
    tel = summary["telemetry"]
    assert tel["published"] > 0 and tel["control_received"] >= 3
    assert summary["transactions"]["all_final"]
