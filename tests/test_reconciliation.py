"""Reconciliation fails a run loudly: ether that reaches an agent outside its own transactions (here
a transfer from another account mid-run) makes its balance change differ from its ledger, and the
run ends `failed` with the agent named, while every results file is still written."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path


from contracts.rpc import RpcClient
from contracts.signing import dev_accounts
from contracts.transact import Transactor
from orchestrator.run import Run
from orchestrator.scenario import load_scenario_text

SCENARIO = """
name: books
seed: 3
chain: {mining: driven, block_time: 2s}
dataset: {name: synthetic_sparse, samples: 200, features: 100, avg_length: 6}
incentive: {cost_weight: 1e12, refund_wait: 1h, owner_claim_wait: 2h, any_address_claim_wait: 3h}
agents:
  - {policy: honest, count: 3, funding: 1 ether, samples_per_agent: 6, rate: 0.5/s,
     params: {recheck_s: 1800, give_up_s: 7200}}
schedule: {duration: 80 blocks, max_wall_time: 2m}
outputs: {progress: false}
telemetry: {mqtt: none}
"""

GIFT = 12_345  # wei


def test_ether_from_outside_the_ledger_fails_the_run_loudly(tmp_path: Path, ray_cluster):
    run = Run(load_scenario_text(SCENARIO, "books.yaml"), results_root=tmp_path, run_id="b", progress=False)
    sent: dict[str, str] = {}

    def outsider() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (run.funding and run.state.start_block >= 0 and run.node):
            time.sleep(0.05)
        target = sorted(run.funding)[0]

        async def gift() -> None:
            client = RpcClient(run.node.url)
            try:
                tx = Transactor(client, dev_accounts(2)[1], 31337)
                signed = await tx.sign(target, b"", GIFT, gas=21_000)
                await client.call("eth_sendRawTransaction", signed.raw_hex)
            finally:
                await client.close()

        asyncio.run(gift())
        sent["to"] = target

    t = threading.Thread(target=outsider, daemon=True)
    t.start()
    run_dir = run.execute()
    t.join(timeout=10)
    assert sent, "the outside transfer was never sent"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "reconciliation failed: 1 of 3 agents" in summary["error"] and sent["to"] in summary["error"]
    rec = summary["reconciliation"]
    assert rec["ok"] is False and rec["reconciled"] == 2
    (mismatch,) = rec["mismatches"]
    assert mismatch["address"] == sent["to"]
    assert int(mismatch["balance_change"]) - int(mismatch["ledger_flow"]) == GIFT
    # Nothing else is lost: the ledger and the other tables are there, all transactions final.
    assert summary["transactions"]["all_final"] and (run_dir / "ledger.parquet").exists()
    assert (run_dir / "report.html").exists()

