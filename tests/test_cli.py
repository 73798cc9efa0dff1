"""The `dcai` command as a user runs it: validate, schema, and a run stopped with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]


def dcai(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, **kw)


def test_validate_ok():
    r = dcai("validate", "scenarios/quickstart.yaml")
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout and "24 honest" in r.stdout


def test_validate_reports_file_line_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nagents:\n  - policy: honest\n    count: 0\nschedule: {duration: 10 blocks}\n")
    r = dcai("validate", str(bad))
    assert r.returncode == 2
    assert f"{bad}:4:" in r.stderr and "agents[0].count" in r.stderr


def test_validate_rejects_unknown_policy(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nagents:\n  - {policy: no_such_policy, count: 1}\nschedule: {duration: 10 blocks}\n")
    r = dcai("validate", str(bad))
    assert r.returncode == 2
    assert "agents[0].policy" in r.stderr and "no_such_policy" in r.stderr


def test_schema_is_json_schema():
    r = dcai("schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    assert "agents" in schema["properties"] and "schedule" in schema["required"]


def test_ctrl_c_stops_the_run_and_writes_results(tmp_path):
    scenario = tmp_path / "long.yaml"
    scenario.write_text(
        "name: interrupted\n"
        "chain: {mining: interval, block_time: 1s}\n"
        "dataset: {samples: 400, features: 200, avg_length: 8}\n"
        "agents:\n  - {policy: honest, count: 4, funding: 1 ether, samples_per_agent: 40, rate: 0.2/s}\n"
        "schedule: {duration: 2000 blocks}\n"
        "outputs: {progress: false}\n"
    )
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(scenario), "--out",
                             str(tmp_path / "results"), "--run-id", "r"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 90
    seen = ""
    assert proc.stdout is not None
    while time.time() < deadline:
        line = proc.stdout.readline()
        seen += line
        if "wallets funded" in line:
            break
    assert "wallets funded" in seen, seen[-2000:]
    time.sleep(4)  # a few blocks of traffic
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=90)
    seen += out
    assert proc.returncode == 1, seen[-2000:]  # not "completed"
    run_dir = tmp_path / "results" / "r"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["transactions"]["total"] > 0
    assert summary["transactions"]["all_final"]
    for name in ("blocks.parquet", "ledger.parquet", "accuracy.parquet"):
        assert (run_dir / name).stat().st_size > 0
    parts = urlsplit(summary["node"]["url"])
    with socket.socket() as s:
        assert s.connect_ex((parts.hostname, parts.port)) != 0, "the node still answers after Ctrl-C"


def test_every_subcommand_keeps_its_help():
    from orchestrator.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) >= {"run", "validate", "schema", "model", "watch", "report", "replay", "sweep"}
    for name, parser in sub.choices.items():
        assert parser.format_help().startswith(f"usage: dcai {name}"), name


def test_help_exits_0_and_usage_errors_are_one_line():
    r = dcai("run", "--help")
    assert r.returncode == 0 and "--run-id" in r.stdout and "--seed" in r.stdout
    r = dcai("run", "scenarios/quickstart.yaml", "--seed", "-1")
    assert r.returncode == 2
    assert r.stderr.strip() == ("dcai run: argument --seed: -1 is outside 0 .. 4294967295 (2**32 - 1, what the "
                                "random generators take) (see 'dcai run -h')")
