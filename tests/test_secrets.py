"""No secret reaches a results folder or a log: a full run against an existing node whose URL
carries credentials, funded from a key in the environment, publishing to a broker with a password.
Every file the run wrote is scanned for the funder's key, every agent's key, the RPC credentials
and the broker password."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_telemetry import Mosquitto, mosquitto_binary

from contracts.signing import derive_key, dev_accounts
from orchestrator.node import AnvilNode, NodeSettings
from orchestrator.run import Run
from orchestrator.scenario import load_scenario_text

RPC_USER, RPC_PASSWORD = "rpcuser", "Rpc-Pa55-word-xyz"
BROKER_PASSWORD = "Br0ker-Pa55-word-abc"


def test_results_and_logs_hold_no_secret(tmp_path, monkeypatch):
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (make test installs it: tests/setup_mosquitto.sh)")
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
