"""No secret reaches a results folder or a log: a full run against an existing node whose URL
carries credentials, funded from a key in the environment, publishing to a broker with a password.
Every file the run wrote is scanned for the funder's key, every agent's key, the RPC credentials
and the broker password."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from telemetry_helpers import Mosquitto, mosquitto_binary

from contracts.signing import derive_key, dev_accounts
from orchestrator.nodes import AnvilNode, NodeSettings
from orchestrator.run import Run
from orchestrator.scenario import load_scenario_text

RPC_USER, RPC_PASSWORD = "rpcuser", "Rpc-Pa55-word-xyz"
BROKER_PASSWORD = "Br0ker-Pa55-word-abc"


def test_results_and_logs_hold_no_secret(tmp_path, monkeypatch):
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (make test installs it: tests/setup_debian.sh)")
    broker = Mosquitto(binary, tmp_path, users={"dcai": BROKER_PASSWORD})
    broker.start()
    node = AnvilNode(NodeSettings(), tmp_path / "external-anvil.log")
    node.start()
    try:
        import asyncio

        from contracts.rpc import RpcClient

        async def interval() -> None:
            async with RpcClient(node.url) as c:
                await c.call("evm_setIntervalMining", 1)

        asyncio.run(interval())
        funder = dev_accounts(3)[2]
        monkeypatch.setenv("DCAI_FUNDER_KEY", funder.key_hex())
        monkeypatch.setenv("DCAI_MQTT_USER", "dcai")
        monkeypatch.setenv("DCAI_MQTT_PASSWORD", BROKER_PASSWORD)
        url = node.url.replace("http://", f"http://{RPC_USER}:{RPC_PASSWORD}@")
        text = f"""
name: secrets
seed: 31
chain: {{rpc_url: "{url}", mining: interval, block_time: 1s, funder_key_env: DCAI_FUNDER_KEY}}
dataset: {{samples: 300, features: 100, avg_length: 6}}
incentive: {{cost_weight: 1e12, refund_wait: 2s, owner_claim_wait: 3s, any_address_claim_wait: 4s}}
agents:
  - {{policy: honest, count: 3, funding: 0.5 ether, samples_per_agent: 3, rate: 2/s, params: {{recheck_s: 2}}}}
schedule: {{duration: 25 blocks}}
evaluation: {{every: 5 blocks, spot_checks: 1}}
outputs: {{progress: false}}
telemetry: {{mqtt: "{broker.url}", username_env: DCAI_MQTT_USER, password_env: DCAI_MQTT_PASSWORD}}
"""
        run_dir = Run(load_scenario_text(text, "secrets.yaml"), results_root=tmp_path / "results", run_id="s",
                      progress=False).execute()
    finally:
        node.stop()
        broker.stop()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed", summary["error"]
    assert summary["transactions"]["by_action"]["add"]["included"] == 9
    assert summary["telemetry"]["published"] > 0  # it really talked to the password-protected broker
    secrets = {
        "funder key": funder.key_hex()[2:].lower(),
        "RPC password": RPC_PASSWORD.lower(),
        "RPC user:password": f"{RPC_USER}:{RPC_PASSWORD}".lower(),
        "broker password": BROKER_PASSWORD.lower(),
        **{f"agent {i} key": derive_key(31, i).hex() for i in range(3)},
    }
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {"summary.json", "ledger.parquet", "run.log.jsonl", "report.html", "telemetry.json"} <= {p.name for p in files}
    for path in files:
        raw = path.read_bytes()
        text = (raw.decode("utf-8", errors="ignore") + raw.hex()).lower()
        for what, secret in secrets.items():
            assert secret not in text, f"{path.relative_to(run_dir)} contains the {what}"
    assert RPC_PASSWORD not in os.environ.get("DCAI_FUNDER_KEY", "")


def test_console_of_a_failing_run_holds_no_secret(tmp_path):
    """`dcai run` as a user starts it, against an external node whose URL carries a password, with a
    policy that fails on every block with an exception quoting the funder's key and that URL (and prints
    the URL from its Ray worker). Everything the command printed, and every file it wrote, is free of
    them."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    node = AnvilNode(NodeSettings(), tmp_path / "external-anvil.log")
    node.start()
    try:
        import asyncio

        from contracts.rpc import RpcClient

        async def interval() -> None:
            async with RpcClient(node.url) as c:
                await c.call("evm_setIntervalMining", 1)

        asyncio.run(interval())
        funder = dev_accounts(3)[2]
        url = node.url.replace("http://", f"http://{RPC_USER}:{RPC_PASSWORD}@")
        scenario = tmp_path / "leaky.yaml"
        # settle: false - a policy failing on every block never finishes, so settlement would wait
        # out its 100-block stall guard (1 s blocks here): this test is about secrets, not settling.
        scenario.write_text(f"""
name: leaky
seed: 5
chain: {{rpc_url: "{url}", mining: interval, block_time: 1s, funder_key_env: DCAI_FUNDER_KEY}}
dataset: {{samples: 300, features: 100, avg_length: 6}}
agents:
  - {{policy: "plugin_leaky:LeakyPolicy", count: 2, funding: 0.5 ether, samples_per_agent: 3, rate: 2/s}}
schedule: {{duration: 8 blocks, max_wall_time: 2m, settle: false}}
outputs: {{progress: true}}
telemetry: {{mqtt: none}}
""")
        env = {**os.environ, "DCAI_FUNDER_KEY": funder.key_hex(), "DCAI_TEST_RPC_URL": url,
               "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")]), "PYTHONUNBUFFERED": "1"}
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(scenario), "--out",
                            str(tmp_path / "results"), "--run-id", "leaky"], cwd=root, env=env, capture_output=True,
                           text=True, timeout=300)
    finally:
        node.stop()
    console = r.stdout + r.stderr
    (tmp_path / "console.txt").write_text(console)  # kept for a look when this fails
    assert r.returncode in (0, 1), console[-3000:]
    # The failures were shown (redacted), each as one line: no traceback on the console.
    assert "leaky policy gives up: key [redacted] url http://127.0.0.1:" in console, console[-3000:]
    assert "Traceback" not in console
    secrets = {"funder key": funder.key_hex()[2:].lower(), "RPC password": RPC_PASSWORD.lower()}
    run_dir = tmp_path / "results" / "leaky"
    texts = {"console": console, **{str(p.relative_to(run_dir)): p.read_bytes().decode("utf-8", errors="ignore")
                                    for p in run_dir.rglob("*") if p.is_file()}}
    assert "summary.json" in texts and "run.log.jsonl" in texts
    for where, text in texts.items():
        for what, secret in secrets.items():
            assert secret not in text.lower(), f"{where} contains the {what}"
