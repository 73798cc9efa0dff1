"""The managed anvil node: start, answer, log, stop (also after an external kill), mining modes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from contracts.rpc import RpcClient, RpcTransportError
from contracts.transact import Transactor
from orchestrator.nodes import AnvilNode, NodeError, NodeSettings, mine, process_alive, set_mining


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def _wait_for_log(path: Path, needle: str, timeout_s: float = 3.0) -> str:
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if needle in text:
            return text
        time.sleep(0.05)
    return text


async def _chain_id(url: str) -> int:
    async with RpcClient(url, retries=0) as c:
        return await c.chain_id()


async def test_start_answers_and_logs(tmp_path):
    log = tmp_path / "logs" / "anvil.log"  # the folder is created on start
    node = AnvilNode(NodeSettings(chain_id=31337), log)
    try:
        url = node.start()
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1" and parts.port == node.port and node.port > 0
        assert node.running
        assert await _chain_id(url) == 31337
        text = _wait_for_log(log, f"Listening on 127.0.0.1:{node.port}")
        assert f"Listening on 127.0.0.1:{node.port}" in text
        async with RpcClient(url) as c:
            block = await c.get_block("latest")
        assert int(block["gasLimit"], 16) == NodeSettings().gas_limit
        assert int(block["baseFeePerGas"], 16) == NodeSettings().base_fee
        with pytest.raises(NodeError):
            node.start()  # one process per node object
    finally:
        node.stop()


async def test_settings_reach_the_node(tmp_path):
    s = NodeSettings(chain_id=4242, gas_limit=12_345_678, accounts=3, balance_ether=7)
    with AnvilNode(s, tmp_path / "anvil.log") as node:
        async with RpcClient(node.url) as c:
            assert await c.chain_id() == 4242
            block = await c.get_block("latest")
            assert int(block["gasLimit"], 16) == 12_345_678
            accounts = await c.call("eth_accounts")
            assert len(accounts) == 3
            assert await c.balance(accounts[0]) == 7 * 10**18
    assert not node.running


def test_stop_terminates_and_is_idempotent(tmp_path):
    node = AnvilNode(NodeSettings(), tmp_path / "anvil.log")
    node.start()
    pid, port = node.proc.pid, node.port
    assert process_alive(pid) and _accepts(port)
    node.stop()
    assert not process_alive(pid)
    assert not os.path.exists(f"/proc/{pid}")
    assert not node.running and node.proc is None
    assert not _accepts(port)
    node.stop()  # again: no error
    node.stop()


async def test_two_nodes_at_once(tmp_path):
    a = AnvilNode(NodeSettings(), tmp_path / "a.log")
    b = AnvilNode(NodeSettings(chain_id=999), tmp_path / "b.log")
    try:
        a.start()
        b.start()
        assert a.port != b.port
        assert a.proc.pid != b.proc.pid
        assert await _chain_id(a.url) == 31337
        assert await _chain_id(b.url) == 999
        async with RpcClient(a.url) as ca, RpcClient(b.url) as cb:
            await mine(ca)
            await mine(ca)
            assert await ca.block_number() == 2
            assert await cb.block_number() == 0  # separate chains
    finally:
        a.stop()
        b.stop()
    assert not a.running and not b.running


async def test_stop_after_external_kill(tmp_path):
    node = AnvilNode(NodeSettings(), tmp_path / "anvil.log")
    node.start()
    pid = node.proc.pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while node.running and time.monotonic() < deadline:  # `running` polls, which also reaps
        time.sleep(0.02)
    assert not node.running
    node.stop()  # must not raise
    node.stop()
    assert not process_alive(pid)
    with pytest.raises(RpcTransportError):
        await _chain_id(node.url)


def test_port_in_use_fails_cleanly(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        taken = s.getsockname()[1]
        node = AnvilNode(NodeSettings(), tmp_path / "anvil.log", port=taken)
        try:
            with pytest.raises(NodeError):
                node.start(timeout_s=5)
            assert node.proc is None
        finally:
            node.stop()


async def test_driven_mining_waits_for_mine(client, dev, chain_id):
    t = Transactor(client, dev[7], chain_id)
    await set_mining(client, "driven")
    try:
        signed = await t.sign(dev[8].address, b"", value=12345, gas=21_000)
        await client.call("eth_sendRawTransaction", signed.raw_hex)
        n0 = await client.block_number()
        await asyncio.sleep(1.5)
        assert await client.block_number() == n0
        pooled = await client.call("eth_getTransactionByHash", signed.hash_hex)
        assert pooled is not None and pooled["blockNumber"] is None
        assert await client.call("eth_getTransactionReceipt", signed.hash_hex) is None

        ts = int((await client.get_block("latest"))["timestamp"], 16) + 1000
        await mine(client, ts)
        assert await client.block_number() == n0 + 1
        block = await client.get_block(n0 + 1)
        assert int(block["timestamp"], 16) == ts
        assert signed.hash_hex in block["transactions"]
        receipt = await client.call("eth_getTransactionReceipt", signed.hash_hex)
        assert receipt["status"] == "0x1"

        await mine(client)  # without a timestamp: one more block, time does not go back
        assert await client.block_number() == n0 + 2
        assert int((await client.get_block(n0 + 2))["timestamp"], 16) >= ts
    finally:
        await set_mining(client, "auto")


async def test_interval_mining_produces_blocks(client):
    await set_mining(client, "interval", 1)
    try:
        n0 = await client.block_number()
        deadline = time.monotonic() + 5
        while await client.block_number() < n0 + 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await client.block_number() >= n0 + 2
    finally:
        await set_mining(client, "auto")
    # back in automine: blocks only come with transactions
    n1 = await client.block_number()
    await asyncio.sleep(1.2)
    assert await client.block_number() == n1


async def test_prune_history_keeps_only_recent_states(tmp_path):
    from contracts.rpc import RpcError
    from contracts.signing import dev_accounts

    address = dev_accounts(1)[0].address
    for prune, old_state_kept in ((None, True), (8, False)):
        node = AnvilNode(NodeSettings(no_mining=True, prune_history=prune), tmp_path / f"anvil-{prune}.log")
        client = RpcClient(node.start())
        try:
            for _ in range(20):
                await mine(client)
            assert await client.balance(address) > 0  # the latest state is always there
            recent = await client.call("eth_getBalance", address, hex(18))
            assert int(recent, 16) > 0
            if old_state_kept:
                assert int(await client.call("eth_getBalance", address, "0x1"), 16) > 0
            else:
                with pytest.raises(RpcError):
                    await client.call("eth_getBalance", address, "0x1")
        finally:
            await client.close()
            node.stop()
