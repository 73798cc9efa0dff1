"""The streamed ledger: shards' running counters and what they forget (LedgerBook), and a run whose
driver is killed with SIGKILL mid-run: its results folder keeps ledger.arrows, holding every
transaction sent up to the last flush (checked against the node's blocks), and the report and the
folder reader accept the partial folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import deploy_small
from test_agents_chain import core_for, fund_batch, head
from test_rpc_faults import agent_addresses, rpc

from agents.ledger import LedgerRecord, TxStatus
from agents.shard import AgentSpec
from agents.shard_ledger import LATENCY_BUCKETS, LedgerBook
from contracts.signing import dev_accounts
from orchestrator.ledger_log import read_log
from orchestrator.nodes import AnvilNode, NodeSettings, mine, set_mining
from orchestrator.report import write_report
from orchestrator.report_folder import read_folder

ROOT = Path(__file__).resolve().parents[1]


def record(i: int, group: str = "g", block: int = 10) -> LedgerRecord:
    return LedgerRecord(agent=i, group=group, policy="honest", action="add", sender=f"0x{i:040x}", nonce=i,
                        tx_hash=f"0x{i:064x}", gas_limit=100_000, max_fee=10, max_priority_fee=1, value=1_000,
                        submitted_wall=0.0, submitted_block=block)


def recount(records: list[LedgerRecord]) -> dict[str, dict[str, int]]:
    """The counters as the shard computed them before (a pass over every record): the reference."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        g = out.setdefault(r.group, {"sent": 0, **{s.value: 0 for s in TxStatus}, "latency_blocks_sum": 0,
                                     **{f"latency_le_{b}": 0 for b in LATENCY_BUCKETS}, "pnl_wei": 0})
        g["sent"] += 1
        g[r.status.value] += 1
        if r.status is TxStatus.INCLUDED:
            latency = max(0, r.included_block - r.submitted_block)
            g["latency_blocks_sum"] += latency
            for b in LATENCY_BUCKETS:
                g[f"latency_le_{b}"] += latency <= b
            g["pnl_wei"] += r.received - r.value - r.fee_paid
        elif r.status is TxStatus.REVERTED:
            g["pnl_wei"] -= r.fee_paid
    return out


def settle(book: LedgerBook, r: LedgerRecord, block: int, status: TxStatus = TxStatus.INCLUDED) -> None:
    r.included_block, r.gas_used, r.effective_gas_price, r.received = block, 50_000, 3, 400
    book.set_status(r, status)


def test_counters_follow_every_change_and_settled_records_are_forgotten():
    book = LedgerBook(stream=True)
    rs = [record(i, "a" if i % 2 else "b") for i in range(8)]
    for r in rs:
        book.add(r)
    cols, forgotten = book.take(safe_block=-1)
    assert cols["tx_hash"] == [r.tx_hash for r in rs] and not forgotten  # all new, none final
    settle(book, rs[0], 11)
    settle(book, rs[1], 14)
    settle(book, rs[2], 30, TxStatus.REVERTED)
    book.set_status(rs[3], TxStatus.DROPPED, "vanished")
    book.set_status(rs[4], TxStatus.REPLACED)
    assert book.group_counts() == recount(rs)
    cols, forgotten = book.take(safe_block=12)
    assert sorted(cols["tx_hash"]) == sorted(r.tx_hash for r in rs[:5])  # only what changed
    assert cols["status"][cols["tx_hash"].index(rs[3].tx_hash)] == "dropped"
    # Dropped and replaced ones at once; mined ones only at or below the safe block.
    assert {r.tx_hash for r in forgotten} == {rs[0].tx_hash, rs[3].tx_hash, rs[4].tx_hash}
    assert set(book.records) == {r.tx_hash for r in rs} - {r.tx_hash for r in forgotten}
    # A reorg reopens a held record: counters follow, and it is held until it settles deep again.
    book.reopen(rs[1])
    assert book.group_counts() == recount(rs)
    cols, forgotten = book.take(safe_block=20)
    assert cols["status"] == ["pending"] and not forgotten
    settle(book, rs[1], 25)
    _, forgotten = book.take(safe_block=24)
    assert not forgotten
    _, forgotten = book.take(safe_block=30)
    assert {r.tx_hash for r in forgotten} == {rs[1].tx_hash, rs[2].tx_hash}
    assert set(book.records) == {r.tx_hash for r in rs[5:]}  # the pending ones, whatever the depth
    assert book.group_counts() == recount(rs)  # counters are cumulative: forgetting changes none
    assert book.retired == 5


def test_unstreamed_book_keeps_everything():
    book = LedgerBook(stream=False)
    rs = [record(i) for i in range(3)]
    for r in rs:
        book.add(r)
        settle(book, r, 11)
    assert not book.dirty and list(book.records) == [r.tx_hash for r in rs]


async def test_streaming_shard_hands_out_every_change_and_forgets_settled_records(anvil, client, tx, compiled, dev,
                                                                                   chain_id):
    system = await deploy_small(client, tx, compiled)
    specs = [AgentSpec(i, "load", "plugin_policies:BurstPolicy", {"burst": 3}, []) for i in range(20)]
    core = core_for(anvil.url, chain_id, compiled, system, specs, stream_ledger=True, reorg_depth=1)
    rows: dict[str, dict[str, object]] = {}  # what the driver's log would read back: last row per hash

    def keep(cols: dict[str, list[object]] | None) -> None:
        for i, h in enumerate((cols or {}).get("tx_hash", [])):
            rows[str(h)] = {k: v[i] for k, v in cols.items()}  # type: ignore[union-attr]

    try:
        addresses = await core.start()
        await fund_batch(client, dev[1], chain_id, addresses, 10**17)
        await set_mining(client, "driven")
        first = await core.tick(await head(client))
        keep(first.ledger)
        assert first.sent == 60 and len(rows) == 60 and {r["status"] for r in rows.values()} == {"pending"}
        # A snapshot taken during settlement carries it, and what pending transactions reserve.
        await core.stop_acting(settle=True)
        twin = core_for(anvil.url, chain_id, compiled, system, specs, stream_ledger=True, reorg_depth=1)
        await twin.start()
        await twin.restore(core.snapshot(first.block), (await head(client)).number)
        assert twin.settling
        assert [a.reserved for a in twin.agents] == [a.reserved for a in core.agents] and core.agents[0].reserved > 0
        assert {h: p.reserved for h, p in twin.pending.items()} == {h: p.reserved for h, p in core.pending.items()}
        await twin.close()
        for _ in range(6):
            h = await head(client)
            await mine(client, h.timestamp + 1)
            report = await core.tick(await head(client))
            keep(report.ledger)
        keep(await core.finalize((await head(client)).number))
    finally:
        await core.close()
        await set_mining(client, "auto")
    assert len(rows) == 60 and {r["status"] for r in rows.values()} == {"included"}
    assert not core.records and not core._meta and core.ledger.retired == 60  # nothing held any more
    assert report.by_group["load"]["included"] == 60 and report.by_group["load"]["sent"] == 60


SCENARIO = """
name: killed
seed: 9
chain: {{rpc_url: "{url}", mining: interval, block_time: 1s, funder_key_env: DCAI_FUNDER_KEY}}
dataset: {{samples: 300, features: 100, avg_length: 6}}
incentive: {{cost_weight: 1e12, refund_wait: 3s, owner_claim_wait: 8s, any_address_claim_wait: 9s}}
agents:
  - {{policy: honest, count: {agents}, funding: 0.5 ether, samples_per_agent: 8, rate: 2/s, params: {{recheck_s: 2}}}}
schedule: {{duration: 500 blocks}}
evaluation: {{every: 50 blocks, spot_checks: 1}}
outputs: {{progress: false}}
telemetry: {{mqtt: none}}
"""
AGENTS = 6
ENOUGH_INCLUDED = 10  # transactions logged as included before the driver is killed


def _log_state(path: Path) -> tuple[int, int]:
    """(rows, included) in the log so far; (0, 0) while it does not exist."""
    if not path.exists():
        return 0, 0
    table, _ = read_log(path)
    return table.num_rows, table.column("status").to_pylist().count("included")


@pytest.mark.timeout(60)
def test_sigkilled_run_keeps_every_transaction_sent(tmp_path: Path, ray_cluster):
    import ray

    node = AnvilNode(NodeSettings(), tmp_path / "anvil.log")
    url = node.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        rpc(url, "evm_setIntervalMining", 1)
        path = tmp_path / "killed.yaml"
        path.write_text(SCENARIO.format(url=url, agents=AGENTS))
        env = {**os.environ, "DCAI_FUNDER_KEY": dev_accounts(3)[2].key_hex(),
               "RAY_ADDRESS": ray.get_runtime_context().gcs_address,  # the test's Ray: nothing left behind
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        out = tmp_path / "out"
        log = open(tmp_path / "driver.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(path), "--out", str(out),
                                 "--run-id", "killed", "--no-progress"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        arrows = out / "killed" / "ledger.arrows"
        deadline = time.monotonic() + 50
        while _log_state(arrows)[1] < ENOUGH_INCLUDED:
            assert proc.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"no {ENOUGH_INCLUDED} included transactions logged in time"
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        log.close()
        time.sleep(1.5)  # a tick in flight when the driver died may still send: mined after the log's end

        run_dir = out / "killed"
        assert not (run_dir / "ledger.parquet").exists() and not (run_dir / "summary.json").exists()
        table, _complete = read_log(arrows)
        rows = table.to_pylist()
        logged = {r["tx_hash"] for r in rows}
        assert len(logged) == len(rows) and rows
        # Every transaction of the agents mined up to the last block the log's ticks had seen was
        # sent before that tick's rows were flushed: each one is in the log.
        last_seen = max(r["submitted_block"] for r in rows)
        addresses = agent_addresses(9, AGENTS)
        on_chain = []
        for n in range(last_seen + 1):
            block = rpc(url, "eth_getBlockByNumber", hex(n), True)
            on_chain += [tx["hash"] for tx in block["transactions"] if tx["from"].lower() in addresses]
        assert on_chain and set(on_chain) <= logged, sorted(set(on_chain) - logged)[:5]
        # And the log's outcomes agree with the chain for what it recorded as mined.
        for r in rows:
            if r["status"] == "included":
                receipt = rpc(url, "eth_getTransactionReceipt", r["tx_hash"])
                assert receipt["status"] == "0x1" and int(receipt["blockNumber"], 16) == r["included_block"]

        # The readers take the partial folder: the ledger from the log, the report written.
        folder = read_folder(run_dir)
        assert folder.rows("ledger") == len(rows) and "ledger" not in folder.notes
        report = write_report(run_dir)
        assert report.exists() and report.stat().st_size > 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        node.stop()
