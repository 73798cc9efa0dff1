"""Agents on the real node at scale and under faults: 1,000 wallets with several transactions in
flight each, a stuck transaction replaced, a plugin policy in a full scenario run."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict

import pytest
from conftest import deploy_small

from agents.ledger import TxStatus
from agents.shard import AgentSpec, BlockInfo, ShardConfig, ShardCore
from agents.wallet import FeeStance
from contracts.rpc import RpcClient
from contracts.transact import Transactor
from orchestrator.nodes import AnvilNode, NodeSettings, mine, set_mining

CONTRACTS = ("CollaborativeTrainer", "DataHandler", "Stakeable", "SparsePerceptron")
GWEI = 10**9


def core_for(url, chain_id, compiled, system, specs, **kw) -> ShardCore:
    return ShardCore(ShardConfig(
        shard_id=0, rpc_url=url, chain_id=chain_id, seed=5, trainer=system.trainer, incentive=system.incentive,
        abis={n: compiled[n].abi for n in CONTRACTS}, cost_weight=10**9, refund_wait=60, block_time=1,
        agents=specs, data_handler=system.data_handler, **kw))


async def head(client: RpcClient) -> BlockInfo:
    b = await client.get_block("latest")
    return BlockInfo(int(b["number"], 16), int(b["timestamp"], 16), int(b["baseFeePerGas"], 16))


async def fund_batch(client, funder, chain_id, addresses, amount) -> None:
    t = Transactor(client, funder, chain_id)
    for i in range(0, len(addresses), 250):
        await t.send_many([await t.sign(a, b"", amount, gas=21_000) for a in addresses[i:i + 250]])


@pytest.fixture(scope="module")
def big_node(tmp_path_factory):
    node = AnvilNode(NodeSettings(gas_limit=200_000_000, accounts=3), tmp_path_factory.mktemp("big") / "anvil.log")
    node.start()
    yield node
    node.stop()


async def test_thousand_wallets_several_in_flight(big_node, compiled, dev, tmp_path):
    async with RpcClient(big_node.url) as client:
        chain_id = await client.chain_id()
        tx = Transactor(client, dev[0], chain_id)
        system = await deploy_small(client, tx, compiled)
        specs = [AgentSpec(i, "load", "plugin_policies:BurstPolicy", {"burst": 3}, []) for i in range(1000)]
        core = core_for(big_node.url, chain_id, compiled, system, specs, max_in_flight=3000)
        try:
            addresses = await core.start()
            assert len(set(addresses)) == 1000
            await fund_batch(client, dev[1], chain_id, addresses, 10**17)
            await set_mining(client, "driven")
            first = await core.tick(await head(client))
            assert first.sent == 3000 and first.in_flight == 3000 and first.errors == []
            assert max(a.in_flight for a in core.agents) == 3
            for _ in range(6):
                h = await head(client)
                await mine(client, h.timestamp + 1)
                report = await core.tick(await head(client))
                if report.finished:
                    break
            cols = await core.finalize((await head(client)).number)
        finally:
            await core.close()
            await set_mining(client, "auto")
        assert Counter(cols["status"]) == {"included": 3000}
        per_sender = defaultdict(list)
        for s, n in zip(cols["sender"], cols["nonce"]):
            per_sender[s].append(n)
        assert all(sorted(v) == [0, 1, 2] for v in per_sender.values())
        counts = await client.batch([("eth_getTransactionCount", [a, "latest"]) for a in addresses[:50]])
        assert all(int(c, 16) == 3 for c in counts)


async def test_shard_cap_on_pending_holds_within_a_tick(big_node, compiled, dev):
    """max_in_flight bounds the shard's pending transactions even when every agent is stepped in the
    same tick: the agents' sends count as they are decided, not only once earlier ones are answered."""
    async with RpcClient(big_node.url) as client:
        chain_id = await client.chain_id()
        system = await deploy_small(client, Transactor(client, dev[0], chain_id), compiled)
        specs = [AgentSpec(i, "load", "plugin_policies:BurstPolicy", {"burst": 3}, []) for i in range(40)]
        core = core_for(big_node.url, chain_id, compiled, system, specs, max_in_flight=50)
        try:
            addresses = await core.start()
            await fund_batch(client, dev[1], chain_id, addresses, 10**17)
            await set_mining(client, "driven")
            first = await core.tick(await head(client))
            assert first.errors == []
            assert first.sent == 50 and first.in_flight == 50
            # The burst policy decides once: what the cap held back is not sent later.
            h = await head(client)
            await mine(client, h.timestamp + 1)
            second = await core.tick(await head(client))
            assert second.sent == 0 and second.included == 50 and second.in_flight == 0
            await core.finalize((await head(client)).number)
        finally:
            await core.close()
            await set_mining(client, "auto")


async def test_stuck_transaction_is_replaced(anvil, client, tx, compiled, dev, chain_id):
    system = await deploy_small(client, tx, compiled)
    low = FeeStance(tip=GWEI, headroom=3)
    specs = [AgentSpec(0, "load", "plugin_policies:BurstPolicy", {"burst": 1}, [], fees=low)]
    core = core_for(anvil.url, chain_id, compiled, system, specs, replace_after_blocks=3)
    flood = Transactor(client, dev[2], chain_id, tip=100 * GWEI)
    try:
        (address,) = await core.start()
        await fund_batch(client, dev[1], chain_id, [address], 10**18)
        await set_mining(client, "driven")
        await client.call("evm_setBlockGasLimit", hex(100_000))
        # Each block, high-tip transfers fill the block before the agent's call fits.
        for _ in range(6):
            h = await head(client)
            await core.tick(h)
            await client.batch([("eth_sendRawTransaction", [(await flood.sign(dev[3].address, b"", 1, gas=21_000)).raw_hex])
                                for _ in range(5)])
            await mine(client, h.timestamp + 1)
        mid = list(core.records.values())
        assert len(mid) == 2, "the stuck call was re-sent once"
        original, replacement = mid
        assert replacement.replaces == original.tx_hash and replacement.nonce == original.nonce
        assert replacement.max_priority_fee > original.max_priority_fee
        assert replacement.max_fee >= original.max_fee * 1.1
        await client.call("evm_setBlockGasLimit", hex(30_000_000))
        for _ in range(8):  # the flood stops: the pool drains
            h = await head(client)
            await mine(client, h.timestamp + 1)
            report = await core.tick(await head(client))
            if report.finished:
                break
        cols = await core.finalize((await head(client)).number)
    finally:
        await core.close()
        await client.call("evm_setBlockGasLimit", hex(30_000_000))
        await set_mining(client, "auto")
    status = dict(zip(cols["tx_hash"], cols["status"]))
    assert sorted(status.values()) == ["included", "replaced"]
    assert status[replacement.tx_hash] == "included"
    assert status[original.tx_hash] == TxStatus.REPLACED.value


def test_plugin_policy_runs_in_a_scenario(tmp_path):
    import ray

    from orchestrator.run import Run
    from orchestrator.scenario import load_scenario_text

    text = """
name: plugin
seed: 3
chain: {mining: driven, block_time: 2s}
dataset: {samples: 200, features: 100, avg_length: 5}
agents:
  - {policy: "plugin_policies:OneShotPolicy", count: 3, funding: 1 ether, samples_per_agent: 4}
schedule: {duration: 60 blocks}
outputs: {progress: false}
"""
    started = not ray.is_initialized()
    run_dir = Run(load_scenario_text(text, "plugin.yaml"), results_root=tmp_path, run_id="p", progress=False).execute()
    if started and ray.is_initialized():
        ray.shutdown()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed", summary["error"]
    assert summary["transactions"]["by_action"] == {"add": {"included": 12}}
    assert summary["ended_because"] == "all agents finished"
