"""A shard of agents on a real node, driven block by block (no Ray): adds, refunds, nonce order under
concurrency, recovery from a nonce error, and call coalescing."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from conftest import COST_WEIGHT, MAX_DEPOSIT, deploy_small, read_add_data_events

from agents.coalescing import CoalescingRpc
from agents.ledger import TxStatus
from agents.shard import AgentSpec, BlockInfo, ShardConfig, ShardCore
from contracts.rpc import RpcClient, RpcError
from contracts.transact import Transactor
from orchestrator.node import mine, set_mining

FUNDING = 10**18
CONTRACT_NAMES = ("CollaborativeTrainer", "DataHandler", "Stakeable", "SparsePerceptron")


def good_samples(agent: int, count: int) -> list[tuple[tuple[int, ...], int]]:
    """Distinct samples of even features, labelled 1: the default model agrees with all of them, so
    adds do not train (the model keeps agreeing) and refunds succeed."""
    return [((2 * (j % 30), 2 * ((j + 1 + agent) % 30)), 1) for j in range(count)]


def make_core(anvil, chain_id, compiled, system, specs, *, seed: int) -> ShardCore:
    config = ShardConfig(
        shard_id=0,
        rpc_url=anvil.url,
        chain_id=chain_id,
        seed=seed,
        trainer=system.trainer,
        incentive=system.incentive,
        abis={name: compiled[name].abi for name in CONTRACT_NAMES},
        cost_weight=COST_WEIGHT,
        refund_wait=60,
        block_time=1,
        agents=specs,
        data_handler=system.data_handler,  # the claim loop reads remainders from it
    )
    return ShardCore(config)


async def fund(client, dev, chain_id, addresses, amount=FUNDING) -> None:
    t = Transactor(client, dev[0], chain_id)
    for a in addresses:
        await t.send(a, b"", amount)


async def latest(client: RpcClient) -> BlockInfo:
    b = await client.get_block("latest")
    return BlockInfo(int(b["number"], 16), int(b["timestamp"], 16), int(b["baseFeePerGas"], 16))


async def step(core: ShardCore, client: RpcClient, advance_s: int = 1):
    """One tick on the latest block, then mine the next one `advance_s` seconds later."""
    info = await latest(client)
    report = await core.tick(info)
    assert report.errors == [], report.errors
    await mine(client, info.timestamp + advance_s)
    return report


def by_status(cols) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for s in cols["status"]:
        out[s] += 1
    return out


@pytest.fixture
async def driven(client):
    """Fresh set-up happens in automine; the test body runs in driven mode; automine comes back."""
    yield
    await set_mining(client, "auto")


async def test_honest_agents_add_then_refund(anvil, client, tx, compiled, dev, chain_id, driven):
    system = await deploy_small(client, tx, compiled)
    specs = [AgentSpec(i, "honest", "honest", {"rate": 50.0, "max_in_flight": 4}, good_samples(i, 3))
             for i in range(3)]
    core = make_core(anvil, chain_id, compiled, system, specs, seed=11)
    try:
        addresses = await core.start()
        assert len(set(addresses)) == 3
        await fund(client, dev, chain_id, addresses)
        await set_mining(client, "driven")

        sent = 0
        for _ in range(3):
            sent += (await step(core, client)).sent
        assert sent == 9  # every sample submitted
        assert all(c.state.value == "added" for a in core.agents for c in a.contributions)

        # past the refund wait: the agents ask the model and claim
        await mine(client, (await latest(client)).timestamp + 61)
        for _ in range(12):
            info = await latest(client)
            report = await core.tick(info)
            assert report.errors == [], report.errors
            if report.finished:
                break
            # Each agent still looks at the others' contributions once (all refunded by then: nothing
            # left to take); idle time up to that moment is skipped as the run loop does.
            wake = report.next_wake if report.next_wake and report.in_flight == 0 else 0
            await mine(client, max(info.timestamp + 1, wake))
        assert report.finished
        last = (await latest(client)).number
        cols = await core.finalize(last)
    finally:
        await core.close()

    statuses = by_status(cols)
    assert "pending" not in statuses
    assert statuses == {"included": 18}
    assert sorted(cols["action"]) == ["add"] * 9 + ["refund"] * 9
    # each refund names the addData it claims (the join key with contributions.parquet)
    adds = {h for h, a in zip(cols["tx_hash"], cols["action"]) if a == "add"}
    targets = [t for t, a in zip(cols["target_tx"], cols["action"]) if a == "refund"]
    assert sorted(targets) == sorted(adds)
    assert all(t == "" for t, a in zip(cols["target_tx"], cols["action"]) if a == "add")

    # the ledger's deposits are the chain's AddData costs, and every deposit came back
    trainer_abi = system.abis["CollaborativeTrainer"]
    for i, action in enumerate(cols["action"]):
        if action != "add":
            continue
        receipt = await client.call("eth_getTransactionReceipt", cols["tx_hash"][i])
        (ev,) = read_add_data_events(receipt, trainer_abi, system.trainer)
        assert ev["cost"] == cols["deposit"][i] > 0
        assert ev["sender"] == cols["sender"][i]
        assert cols["received"][i] == MAX_DEPOSIT - ev["cost"]
    for agent in core.agents:
        assert len(agent.contributions) == 3
        for c in agent.contributions:
            assert c.state.value == "refunded" and c.refunded == c.deposit > 0
        mine_rows = [i for i, s in enumerate(cols["sender"]) if s == agent.wallet.address]
        deposits = sum(cols["deposit"][i] for i in mine_rows if cols["action"][i] == "add")
        refunds = sum(cols["received"][i] for i in mine_rows if cols["action"][i] == "refund")
        assert refunds == deposits
        fees = sum(cols["gas_used"][i] * cols["effective_gas_price"][i] for i in mine_rows)
        assert await client.balance(agent.wallet.address) == FUNDING - fees  # nothing else was lost
    assert await client.balance(system.trainer) == 0


async def test_nonce_order_under_concurrency(anvil, client, tx, compiled, dev, chain_id, driven):
    system = await deploy_small(client, tx, compiled)
    n_agents, per_agent = 20, 12
    specs = [AgentSpec(i, "crowd", "honest", {"rate": 100.0, "max_in_flight": 5}, good_samples(i, per_agent))
             for i in range(n_agents)]
    core = make_core(anvil, chain_id, compiled, system, specs, seed=22)
    try:
        addresses = await core.start()
        await fund(client, dev, chain_id, addresses)
        await set_mining(client, "driven")
        first = await step(core, client)
        assert first.sent == n_agents * 5  # everyone at its in-flight limit in the same block
        for _ in range(5):
            await step(core, client)
        cols = await core.finalize((await latest(client)).number)
    finally:
        await core.close()

    assert len(cols["status"]) == n_agents * per_agent
    assert by_status(cols) == {"included": n_agents * per_agent}  # none dropped, none reverted
    nonces: dict[str, list[int]] = defaultdict(list)
    blocks: dict[str, list[int]] = defaultdict(list)
    for sender, nonce, status, block in zip(cols["sender"], cols["nonce"], cols["status"], cols["included_block"]):
        assert status == TxStatus.INCLUDED.value
        nonces[sender].append(nonce)
        blocks[sender].append(block)
    assert set(nonces) == set(addresses)
    for sender, ns in nonces.items():
        assert sorted(ns) == list(range(len(ns))), (sender, ns)  # no gaps, no repeats
        assert await client.nonce(sender, "latest") == len(ns) == per_agent
        assert len(set(blocks[sender])) >= 3  # really spread over several blocks, 5 at a time


async def test_nonce_error_is_dropped_and_resynced(anvil, client, tx, compiled, dev, chain_id, driven):
    system = await deploy_small(client, tx, compiled)
    specs = [AgentSpec(0, "solo", "honest", {"rate": 100.0, "max_in_flight": 1}, good_samples(0, 4))]
    core = make_core(anvil, chain_id, compiled, system, specs, seed=33)
    agent = core.agents[0]
    try:
        (address,) = await core.start()
        await fund(client, dev, chain_id, [address])
        await set_mining(client, "driven")

        assert (await step(core, client)).sent == 1  # add #0, nonce 0
        assert (await step(core, client)).sent == 1  # add #1, nonce 1
        assert agent.wallet.nonce == 2
        agent.wallet.nonce -= 1  # the next send reuses nonce 1, which is already mined

        report = await step(core, client)
        assert report.sent == 1 and report.dropped == 1
        assert agent.wallet.needs_resync
        report = await step(core, client)  # resync, then add #3 with nonce 2
        assert report.sent == 1
        assert not agent.wallet.needs_resync
        for _ in range(2):
            await step(core, client)
        cols = await core.finalize((await latest(client)).number)
    finally:
        await core.close()

    rows = list(zip(cols["action"], cols["nonce"], cols["status"], cols["reason"]))
    assert [(a, n, s) for a, n, s, _ in rows] == [
        ("add", 0, "included"), ("add", 1, "included"), ("add", 1, "dropped"), ("add", 2, "included")]
    reason = rows[2][3].lower()
    assert "rejected" in reason and "nonce" in reason, reason
    assert await client.nonce(address, "latest") == 3
    assert [c.state.value for c in agent.contributions] == ["added", "added", "failed", "added"]


async def test_coalescing_rpc_batches_concurrent_calls(anvil):
    async with RpcClient(anvil.url) as client:
        rpc = CoalescingRpc(client)
        expected = await client.call("eth_blockNumber")
        batches, requests = rpc.batches, client.requests
        results = await asyncio.gather(*(rpc.call("eth_blockNumber") for _ in range(100)))
        assert results == [expected] * 100
        assert rpc.batches == batches + 1
        assert client.requests == requests + 1

        # an error reaches only its own caller; the rest of the batch succeeds
        batches, requests = rpc.batches, client.requests
        calls = [rpc.call("eth_chainId") for _ in range(10)] + [rpc.call("no_such_method")]
        out = await asyncio.gather(*calls, return_exceptions=True)
        assert out[:10] == [hex(31337)] * 10
        assert isinstance(out[10], RpcError)
        assert rpc.batches == batches + 1 and client.requests == requests + 1

        # max_batch splits a burst
        small = CoalescingRpc(client, max_batch=30)
        requests = client.requests
        await asyncio.gather(*(small.call("eth_blockNumber") for _ in range(100)))
        assert small.batches == 4 and client.requests == requests + 4
