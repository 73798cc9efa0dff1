"""The claim loop on the real node: refunds, takes within the verified count, take-all after the last
window, retries, settlement that ends with nothing claimable, and budgets that hold for every attack.

Driven block by block through ShardCore (no Ray); idle time is skipped the way the run loop does it,
by mining the next block at the earliest `next_wake`."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import COST_WEIGHT, deploy_small

from agents.shard import AgentSpec, BlockInfo, ShardConfig, ShardCore
from agents.policies.base import FINISHED
from contracts.deploy import StakeableSpec
from contracts.rpc import RpcClient
from contracts.transact import Transactor
from orchestrator.nodes import mine, set_mining

FUNDING = 10**18
CONTRACTS = ("CollaborativeTrainer", "DataHandler", "Stakeable", "SparsePerceptron")
# Refund after 60 s, anyone takes what is left after 180 s (the deployer after 120 s).
WAITS = StakeableSpec(refund_wait_s=60, owner_claim_wait_s=120, any_address_claim_wait_s=180,
                      cost_weight=COST_WEIGHT * 1000)


def good(agent: int, n: int) -> list[tuple[tuple[int, ...], int]]:
    """Even features labelled 1: the default model agrees and a single update cannot change that."""
    return [((2 * (j % 30), 2 * ((j + 1 + agent) % 30)), 1) for j in range(n)]


def core_for(anvil, chain_id, compiled, system, specs, incentive=WAITS) -> ShardCore:
    return ShardCore(ShardConfig(
        shard_id=0, rpc_url=anvil.url, chain_id=chain_id, seed=7, trainer=system.trainer,
        incentive=system.incentive, abis={n: compiled[n].abi for n in CONTRACTS},
        cost_weight=incentive.cost_weight, refund_wait=incentive.refund_wait_s,
        owner_claim_wait=incentive.owner_claim_wait_s, any_address_claim_wait=incentive.any_address_claim_wait_s,
        block_time=1, agents=specs, data_handler=system.data_handler))


async def latest(client: RpcClient) -> BlockInfo:
    b = await client.get_block("latest")
    return BlockInfo(int(b["number"], 16), int(b["timestamp"], 16), int(b["baseFeePerGas"], 16))


async def fund(client, dev, chain_id, addresses) -> None:
    t = Transactor(client, dev[0], chain_id)
    for a in addresses:
        await t.send(a, b"", FUNDING)


async def play(core: ShardCore, client: RpcClient, max_blocks: int = 200, settle_at: int | None = None):
    """Tick and mine until every agent is finished; skip to the next wake when all are idle.
    Returns the number of blocks mined."""
    for n in range(max_blocks):
        if settle_at is not None and n == settle_at:
            await core.stop_acting(settle=True)
        info = await latest(client)
        report = await core.tick(info)
        assert report.errors == [], report.errors
        if report.finished:
            return n
        wake = report.next_wake
        nxt = info.timestamp + 1
        if wake is not None and wake != FINISHED and report.in_flight == 0:
            nxt = max(nxt, wake)
        await mine(client, nxt)
    raise AssertionError(f"agents not finished after {max_blocks} blocks")


@pytest.fixture
async def driven(client):
    yield
    await set_mining(client, "auto")


def rows(cols, **match):
    n = len(cols["tx_hash"])
    return [{k: cols[k][i] for k in cols} for i in range(n) if all(cols[k][i] == v for k, v in match.items())]


async def test_the_whole_claim_loop_leaves_nothing_in_the_trainer(anvil, client, tx, compiled, dev, chain_id,
                                                                 driven):
    system = await deploy_small(client, tx, compiled, incentive=WAITS)
    specs = [
        AgentSpec(0, "honest", "honest", {"rate": 50.0, "arrival": "constant"}, good(0, 3)),
        AgentSpec(1, "flipper", "adversarial", {"attack": "label_flip", "rate": 50.0, "arrival": "constant"},
                  good(1, 2)),
    ]
    core = core_for(anvil, chain_id, compiled, system, specs)
    try:
        addresses = await core.start()
        await fund(client, dev, chain_id, addresses)
        await set_mining(client, "driven")
        blocks = await play(core, client)
        cols = await core.finalize((await latest(client)).number)
    finally:
        await core.close()
    honest, flipper = addresses
    # The public list, read from the logs by hand, is what the ABI decodes.
    abi = system.abis["CollaborativeTrainer"]
    topic = "0x" + abi.events_by_name["AddData"].topic.hex()
    logs = await client.call("eth_getLogs", {"address": system.trainer, "topics": [topic], "fromBlock": "0x0",
                                             "toBlock": "latest"})
    decoded = [abi.decode_log(lg)[1] for lg in logs]
    assert [(c.author, c.data, c.label, c.added_time, c.deposit, c.tx_hash) for c in core.public] == [
        (a["sender"], tuple(a["d"]), a["c"], a["t"], a["cost"], lg["transactionHash"]) for a, lg in zip(decoded, logs)]
    adds = {r["tx_hash"]: r for r in rows(cols, action="add", status="included")}
    assert Counter(r["sender"] for r in adds.values()) == {honest: 3, flipper: 2}
    # 1. The honest agent refunded each of its own adds once the model agreed.
    refunds = rows(cols, action="refund", status="included")
    assert sorted(r["target_tx"] for r in refunds) == sorted(h for h, r in adds.items() if r["sender"] == honest)
    assert all(r["sender"] == honest and r["received"] == adds[r["target_tx"]]["deposit"] for r in refunds)
    # 2. It took its share of each flipped contribution (3 verified of 3: the whole deposit) before the
    #    last window; 3. nothing was left for the flipper's take-all, so the flipper sent none or lost.
    takes = rows(cols, action="report", status="included", sender=honest)
    flipped = {h for h, r in adds.items() if r["sender"] == flipper}
    assert {r["target_tx"] for r in takes} == flipped
    assert sum(r["received"] for r in takes) == sum(adds[h]["deposit"] for h in flipped)
    # Nothing is left claimable: the trainer holds no ether.
    assert await client.balance(system.trainer) == 0
    assert blocks < 60  # the waits were skipped, not mined through one second at a time


async def test_take_all_after_the_last_window_and_retry(anvil, client, tx, compiled, dev, chain_id, driven):
    """No one has verified contributions: flipped deposits cannot be taken before the last window,
    so their author takes them back itself once it opens (its own included, as the reference does)."""
    system = await deploy_small(client, tx, compiled, incentive=WAITS)
    specs = [AgentSpec(0, "flipper", "adversarial", {"attack": "label_flip", "rate": 50.0, "arrival": "constant"},
                       good(0, 2))]
    core = core_for(anvil, chain_id, compiled, system, specs)
    try:
        (address,) = await core.start()
        await fund(client, dev, chain_id, [address])
        await set_mining(client, "driven")
        await play(core, client)
        cols = await core.finalize((await latest(client)).number)
    finally:
        await core.close()
    adds = {r["tx_hash"]: r for r in rows(cols, action="add", status="included")}
    take_alls = rows(cols, action="report", status="included")
    assert sorted(r["target_tx"] for r in take_alls) == sorted(adds)
    assert all(r["received"] == adds[r["target_tx"]]["deposit"] > 0 for r in take_alls)
    assert all(r["included_time"] - adds[r["target_tx"]]["included_time"] >= 180 for r in take_alls)
    assert not rows(cols, action="refund")  # the model never agreed: no refund was ever sent
    assert await client.balance(system.trainer) == 0


async def test_settlement_stops_adds_and_claims_everything(anvil, client, tx, compiled, dev, chain_id, driven):
    system = await deploy_small(client, tx, compiled, incentive=WAITS)
    specs = [
        AgentSpec(0, "honest", "honest", {"rate": 1.0, "arrival": "constant"}, good(0, 50)),
        AgentSpec(1, "greedy", "greedy", {"rate": 1.0, "arrival": "constant", "value_per_valid": "1 ether"},
                  good(1, 50)),
        AgentSpec(2, "flipper", "adversarial", {"attack": "label_flip", "rate": 1.0, "arrival": "constant"},
                  good(2, 50)),
    ]
    core = core_for(anvil, chain_id, compiled, system, specs)
    try:
        addresses = await core.start()
        await fund(client, dev, chain_id, addresses)
        await set_mining(client, "driven")
        await play(core, client, settle_at=5)
        settled_at = core.last_block
        cols = await core.finalize((await latest(client)).number)
    finally:
        await core.close()
    adds = rows(cols, action="add")
    assert 0 < len(adds) < 150  # settlement came before the samples ran out
    last_add = max(r["submitted_block"] for r in adds)
    assert last_add < settled_at
    head = await latest(client)
    assert all(a.policy.next_wake(core._observe(a, head)) == FINISHED for a in core.agents)
    assert "pending" not in cols["status"]
    assert await client.balance(system.trainer) == 0  # every window passed: nothing locked


ATTACKS = ("label_flip", "targeted", "spam", "front_run", "grief", "malformed")


@pytest.mark.parametrize("attack", ATTACKS)
async def test_each_attack_stays_within_its_budget(anvil, client, tx, compiled, dev, chain_id, driven, attack):
    system = await deploy_small(client, tx, compiled, incentive=WAITS)
    budget = 10**16  # about two adds at a time (each reserves the highest deposit it sends)
    samples = [((2 * j, 2 * j + 1, 2 * j + 3), j % 2) for j in range(25)]
    specs = [
        AgentSpec(0, "honest", "honest", {"rate": 2.0, "arrival": "constant"}, good(0, 6)),
        AgentSpec(1, "attacker", "adversarial", {"attack": attack, "budget": budget, "rate": 5.0,
                                                 "arrival": "constant", "spam_per_block": 3, "warmup": 1},
                  samples),
    ]
    core = core_for(anvil, chain_id, compiled, system, specs)
    try:
        addresses = await core.start()
        await fund(client, dev, chain_id, addresses)
        start = await client.balance(addresses[1])
        await set_mining(client, "driven")
        await play(core, client, max_blocks=120)
        await core.finalize((await latest(client)).number)
    finally:
        await core.close()
    attacker = core.agents[1]
    import os
    if os.environ.get("DBG"):
        for r in core.records:
            if r.agent == 1:
                print(r.action, r.status.value, r.value, r.deposit, r.received, r.gas_limit, r.max_fee, r.gas_used, r.effective_gas_price, r.submitted_block, r.included_block, r.reason[:50])
    lost = start - await client.balance(addresses[1])
    assert attacker.spent == lost  # the shard's books are the chain's
    assert lost <= budget, f"{attack}: spent {lost} of a {budget} budget"
    assert attacker.reserved == 0
