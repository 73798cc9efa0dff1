"""A shard of agents on a real Hardhat node, driven block by block (no Ray): adds and refunds settle
from receipts, nonces stay in order under concurrency, and every wei is accounted for, as on anvil
(tests/test_wallet_shard.py)."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import COST_WEIGHT, MAX_DEPOSIT, deploy_small, read_add_data_events

from agents.shard import AgentSpec, BlockInfo, ShardConfig, ShardCore
from contracts.rpc import RpcClient
from contracts.signing import dev_accounts
from contracts.transact import Transactor
from orchestrator.nodes import HardhatNode, NodeSettings

FUNDING = 10**18
CONTRACT_NAMES = ("CollaborativeTrainer", "DataHandler", "Stakeable", "SparsePerceptron")


@pytest.fixture(scope="module")
def hardhat(tmp_path_factory: pytest.TempPathFactory):
    with HardhatNode(NodeSettings(), tmp_path_factory.mktemp("hardhat") / "hardhat.log") as node:
        yield node


@pytest.fixture
async def hh(hardhat):
    async with RpcClient(hardhat.url) as c:
        yield c
        await hardhat.set_mining(c, "auto")


def good_samples(agent: int, count: int) -> list[tuple[tuple[int, ...], int]]:
    """Distinct samples the default model agrees with: adds do not train, refunds succeed."""
    return [((2 * (j % 30), 2 * ((j + 1 + agent) % 30)), 1) for j in range(count)]


async def _setup(hardhat, hh, compiled, specs, seed):
    tx = Transactor(hh, dev_accounts(1)[0], 31337)
    system = await deploy_small(hh, tx, compiled)
    core = ShardCore(ShardConfig(
        shard_id=0, rpc_url=hardhat.url, chain_id=31337, seed=seed, trainer=system.trainer,
        incentive=system.incentive, abis={n: compiled[n].abi for n in CONTRACT_NAMES}, cost_weight=COST_WEIGHT,
        refund_wait=60, block_time=1, agents=specs, data_handler=system.data_handler))
    addresses = await core.start()
    for a in addresses:
        await tx.send(a, b"", FUNDING)
    await hardhat.set_mining(hh, "driven")
    return system, core


async def _step(hardhat, core, hh, advance_s: int = 1):
    b = await hh.get_block("latest")
    info = BlockInfo(int(b["number"], 16), int(b["timestamp"], 16), int(b["baseFeePerGas"], 16))
    report = await core.tick(info)
    assert report.errors == [], report.errors
    await hardhat.mine(hh, info.timestamp + advance_s)
    return report


async def test_agents_add_then_refund_on_hardhat(hardhat, hh, compiled):
    specs = [AgentSpec(i, "honest", "honest", {"rate": 50.0, "max_in_flight": 4}, good_samples(i, 3))
             for i in range(3)]
    system, core = await _setup(hardhat, hh, compiled, specs, seed=11)
    try:
        sent = sum([(await _step(hardhat, core, hh)).sent for _ in range(3)])
        assert sent == 9
        await hardhat.mine(hh, int((await hh.get_block("latest"))["timestamp"], 16) + 61)
        for _ in range(12):
            b = await hh.get_block("latest")
            info = BlockInfo(int(b["number"], 16), int(b["timestamp"], 16), int(b["baseFeePerGas"], 16))
            report = await core.tick(info)
            assert report.errors == [], report.errors
            if report.finished:
                break
            # The claim loop looks at the others' contributions once more (all refunded: nothing to
            # take); idle time up to that moment is skipped as the run loop does.
            wake = report.next_wake if report.next_wake and report.in_flight == 0 else 0
            await hardhat.mine(hh, max(info.timestamp + 1, wake))
        assert report.finished
        cols = await core.finalize(await hh.block_number())
    finally:
        await core.close()
    assert Counter(cols["status"]) == {"included": 18}
    assert sorted(cols["action"]) == ["add"] * 9 + ["refund"] * 9
    trainer_abi = system.abis["CollaborativeTrainer"]
    for i in (i for i, a in enumerate(cols["action"]) if a == "add"):
        receipt = await hh.call("eth_getTransactionReceipt", cols["tx_hash"][i])
        (ev,) = read_add_data_events(receipt, trainer_abi, system.trainer)
        assert ev["cost"] == cols["deposit"][i] > 0 and cols["received"][i] == MAX_DEPOSIT - ev["cost"]
    for agent in core.agents:
        rows = [i for i, s in enumerate(cols["sender"]) if s == agent.wallet.address]
        fees = sum(cols["gas_used"][i] * cols["effective_gas_price"][i] for i in rows)
        assert await hh.balance(agent.wallet.address) == FUNDING - fees  # deposits all came back
    assert await hh.balance(system.trainer) == 0


async def test_nonce_order_under_concurrency_on_hardhat(hardhat, hh, compiled):
    n_agents, per_agent = 12, 8
    specs = [AgentSpec(i, "crowd", "honest", {"rate": 100.0, "max_in_flight": 5}, good_samples(i, per_agent))
             for i in range(n_agents)]
    system, core = await _setup(hardhat, hh, compiled, specs, seed=22)
    try:
        for _ in range(per_agent // 5 + 3):
            await _step(hardhat, core, hh)
        cols = await core.finalize(await hh.block_number())
    finally:
        await core.close()
    adds = [i for i, a in enumerate(cols["action"]) if a == "add"]
    assert len(adds) == n_agents * per_agent
    assert all(cols["status"][i] == "included" for i in adds)
    for agent in core.agents:
        nonces = sorted(cols["nonce"][i] for i in adds if cols["sender"][i] == agent.wallet.address)
        assert nonces == list(range(per_agent))  # no gap, no duplicate: one transaction per nonce
