"""The chain attacks (agents/policies/chain_attacks.py) on the real node, driven block by block through
ShardCore: each does what it says, and each spends no more than its budget (the chain's balance is the
judge, not the shard's books)."""

from __future__ import annotations

import pytest
from test_claims_chain import WAITS, core_for, fund, good, latest, play, rows

from agents.policies.base import PolicyContext, PolicyError, resolve_policy
from agents.shard import AgentSpec
from orchestrator.nodes import set_mining

GWEI = 10**9


@pytest.fixture
async def driven(client):
    yield
    await set_mining(client, "auto")


async def run(anvil, client, tx, compiled, dev, chain_id, specs, max_blocks=300, block_gas_limit=None):
    """Deploy, fund, play until every agent is finished; (core, addresses, lost per address, ledger).
    `block_gas_limit` applies while the agents play (deploying the model needs more), restored after."""
    from conftest import deploy_small

    system = await deploy_small(client, tx, compiled, incentive=WAITS)
    core = core_for(anvil, chain_id, compiled, system, specs)
    try:
        addresses = await core.start()
        await fund(client, dev, chain_id, addresses)
        start = {a: await client.balance(a) for a in addresses}
        await set_mining(client, "driven")
        if block_gas_limit is not None:
            await client.call("evm_setBlockGasLimit", hex(block_gas_limit))
        await play(core, client, max_blocks=max_blocks)
        cols = await core.finalize((await latest(client)).number)
    finally:
        if block_gas_limit is not None:
            await client.call("evm_setBlockGasLimit", hex(30_000_000))
        await core.close()
    lost = {a: start[a] - await client.balance(a) for a in addresses}
    for agent in core.agents:
        assert agent.spent == lost[agent.wallet.address]  # the shard's books are the chain's
        assert agent.reserved == 0
    return core, addresses, lost, cols


def test_params_are_declared_and_checked() -> None:
    cls = resolve_policy("chain_attack")
    assert cls.role == "attacker"
    ctx = PolicyContext(0, __import__("numpy").random.default_rng(0), {"attack": "sybil", "identities": 4,
                                                                         "budget": "1 ether"}, [])
    assert cls(ctx).budget == 10**18 // 4  # the budget is the attacker's total, split over its wallets
    with pytest.raises(PolicyError, match="did you mean 'slow_poison'"):
        cls(PolicyContext(0, __import__("numpy").random.default_rng(0), {"attack": "slow_poisson"}, []))
    with pytest.raises(PolicyError, match="flip_fraction"):
        cls(PolicyContext(0, __import__("numpy").random.default_rng(0), {"flip_fraction": 1.5}, []))


async def test_deadline_congestion_fills_the_blocks_before_the_refund_window(anvil, client, tx, compiled, dev,
                                                                             chain_id, driven):
    budget = 5 * 10**17
    lead, hold = 12, 4
    specs = [
        AgentSpec(0, "honest", "honest", {"rate": 50.0, "arrival": "constant"}, good(0, 3)),
        AgentSpec(1, "congest", "chain_attack", {"attack": "deadline_congestion", "budget": budget, "lead_s": lead,
                                                 "hold_s": hold, "spam_per_block": 20, "spam_indices": 60,
                                                 "max_in_flight": 40, "fee_bid": 5 * GWEI, "snipe": False}, []),
    ]
    # A small block gas limit while the agents play, so a few `predict` transactions fill a block.
    core, addresses, lost, cols = await run(anvil, client, tx, compiled, dev, chain_id, specs,
                                            block_gas_limit=1_500_000)
    honest, attacker = addresses
    adds = rows(cols, action="add", status="included", sender=honest)
    deadlines = sorted({r["included_time"] + WAITS.refund_wait_s for r in adds})
    spam = rows(cols, action="spam", sender=attacker)
    assert spam, "no flood was sent"
    # Every flood transaction was sent for a block within [deadline - lead, deadline + hold].
    for r in spam:
        b = await client.call("eth_getBlockByNumber", hex(r["submitted_block"]), False)
        t = int(b["timestamp"], 16) + 1
        assert any(d - lead - 1 <= t <= d + hold for d in deadlines), (t, deadlines)
        assert r["max_priority_fee"] == 5 * GWEI
    # The blocks leading up to the first deadline were full, and the base fee rose through them.
    first = deadlines[0]
    blocks = []
    n = (await latest(client)).number
    for i in range(1, n + 1):
        b = await client.call("eth_getBlockByNumber", hex(i), False)
        if first - lead <= int(b["timestamp"], 16) <= first:
            blocks.append((int(b["gasUsed"], 16) / int(b["gasLimit"], 16), int(b["baseFeePerGas"], 16)))
    assert len(blocks) >= 5
    assert sum(u > 0.5 for u, _ in blocks) >= len(blocks) - 2, blocks
    assert blocks[-1][1] > 1.3 * blocks[0][1], blocks  # the base fee climbed 12.5% per full block
    # The honest refunds, sent together when their window opened, found room for one per block: without
    # the flood all three land in the next block.
    refunds = rows(cols, action="refund", status="included", sender=honest)
    assert len(refunds) == 3 and len({r["included_block"] for r in refunds}) == 3
    assert max(r["included_time"] for r in refunds) >= first + 3
    assert 0 < lost[attacker] <= budget


async def test_deadline_congestion_snipes_the_take_all(anvil, client, tx, compiled, dev, chain_id, driven):
    """Flipped contributions nobody refunds: at the take-all opening the sniper takes them first."""
    budget = 10**16
    specs = [
        AgentSpec(0, "flipper", "adversarial", {"attack": "label_flip", "rate": 50.0, "arrival": "constant"},
                  good(0, 2)),
        AgentSpec(1, "sniper", "chain_attack", {"attack": "deadline_congestion", "deadline": "take_all",
                                                "budget": budget, "lead_s": 2, "hold_s": 1, "spam_per_block": 1,
                                                "spam_indices": 20, "fee_bid": 7 * GWEI}, []),
    ]
    core, addresses, lost, cols = await run(anvil, client, tx, compiled, dev, chain_id, specs)
    flipper, sniper = addresses
    adds = {r["tx_hash"]: r for r in rows(cols, action="add", status="included", sender=flipper)}
    takes = rows(cols, action="report", status="included", sender=sniper)
    assert sorted(r["target_tx"] for r in takes) == sorted(adds)
    assert all(r["max_priority_fee"] == 7 * GWEI for r in takes)
    assert sum(r["received"] for r in takes) == sum(a["deposit"] for a in adds.values())
    assert lost[sniper] < 0  # it made money, within its budget at every moment


async def test_sybil_splits_budget_over_identities_and_reports_its_siblings(anvil, client, tx, compiled, dev,
                                                                            chain_id, driven):
    budget = 3 * 10**16
    n = 3
    params = {"attack": "sybil", "identities": n, "budget": budget, "warmup": 1, "rate": 50.0,
              "arrival": "constant", "fee_bid": 9 * GWEI, "coalition": "test-sybil"}
    specs = [AgentSpec(0, "honest", "honest", {"rate": 50.0, "arrival": "constant"}, good(0, 2))] + [
        AgentSpec(i, "sybil", "chain_attack", params, good(i, 3)) for i in range(1, n + 1)]
    core, addresses, lost, cols = await run(anvil, client, tx, compiled, dev, chain_id, specs)
    sybils = addresses[1:]
    adds = rows(cols, action="add", status="included")
    senders = {r["sender"] for r in adds if r["sender"] in sybils}
    assert senders == set(sybils)  # N senders for one attacker
    for a in sybils:
        assert lost[a] <= budget // n
    assert sum(lost[a] for a in sybils) <= budget
    # Each identity added one honest sample then flipped ones; siblings took from each other's flips.
    by_hash = {r["tx_hash"]: r for r in adds}
    sibling_takes = [r for r in rows(cols, action="report", status="included")
                     if r["sender"] in sybils and by_hash.get(r["target_tx"], {}).get("sender") in sybils
                     and by_hash[r["target_tx"]]["sender"] != r["sender"]]
    assert sibling_takes and all(r["max_priority_fee"] == 9 * GWEI for r in sibling_takes)


async def test_slow_poison_flips_a_paced_fraction_and_gets_most_deposits_back(anvil, client, tx, compiled, dev,
                                                                              chain_id, driven):
    budget = 10**17
    samples = good(1, 10)
    specs = [AgentSpec(0, "honest", "honest", {"rate": 50.0, "arrival": "constant"}, good(0, 2)),
             AgentSpec(1, "poison", "chain_attack", {"attack": "slow_poison", "flip_fraction": 0.3, "budget": budget,
                                                     "rate": 1.0, "arrival": "constant", "flip_spacing_s": 2},
                       samples)]
    core, addresses, lost, cols = await run(anvil, client, tx, compiled, dev, chain_id, specs)
    poison = core.agents[1]
    truth = {s[0]: s[1] for s in samples}
    flipped = [c for c in poison.contributions if c.label != truth[c.data]]
    assert len(poison.contributions) == 10 and len(flipped) == 3  # 30%, never ahead of the fraction
    times = sorted(c.added_time for c in flipped)
    assert all(b - a >= 2 for a, b in zip(times, times[1:]))
    refunds = rows(cols, action="refund", status="included", sender=addresses[1])
    assert len(refunds) >= 7  # the model agreed with most of its contributions at refund time
    assert lost[addresses[1]] <= budget


@pytest.mark.parametrize("attack", ["deadline_congestion", "sybil", "slow_poison"])
async def test_each_chain_attack_stops_at_its_budget(anvil, client, tx, compiled, dev, chain_id, driven, attack):
    """A budget too small for the attack: it stops there, and the chain shows no more was spent."""
    budget = 6 * 10**15  # under two of the highest deposits with their gas
    n = 2 if attack == "sybil" else 1
    params = {"attack": attack, "budget": budget, "identities": n, "rate": 5.0, "arrival": "constant",
              "spam_per_block": 8, "spam_indices": 60, "lead_s": 30, "hold_s": 30, "fee_bid": 50 * GWEI,
              "flip_fraction": 0.5, "warmup": 1, "coalition": "budget-test"}
    samples = [((2 * j, 2 * j + 1, 2 * j + 3), j % 2) for j in range(25)]
    specs = [AgentSpec(0, "honest", "honest", {"rate": 2.0, "arrival": "constant"}, good(0, 6))] + [
        AgentSpec(i, "attacker", "chain_attack", params, samples) for i in range(1, n + 1)]
    core, addresses, lost, cols = await run(anvil, client, tx, compiled, dev, chain_id, specs)
    attackers = addresses[1:]
    assert sum(lost[a] for a in attackers) <= budget
    assert all(lost[a] <= budget // n for a in attackers)
    # The budget, not the samples or the deadlines, ended the attack.
    assert any("attack stopped: budget" in a.policy.reasons() for a in core.agents[1:])
