"""The on-chain prediction market on a real node: a full round checked to the wei against the exact
off-chain twin, gas-bounded reward passes, the unpredictable reveal index, every phase's revert
paths, cancellation, the reveal timeout, collection and the late claim by anyone."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from conftest import FIXED, latest_timestamp
from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address
from test_mechanisms import actors, balance_delta, expect_revert_reason, fee, mine_at  # noqa: F401

from contracts.abi import decode_revert
from contracts.deploy import SparsePerceptronSpec
from contracts.mechanisms import (
    LATE_CLAIM_WAIT_S,
    MarketContribution,
    MarketDriver,
    MarketParams,
    MarketTwin,
    Phase,
    VISIT_GAS_FIXED,
    VISIT_GAS_PER_ENTRY,
    VISIT_GAS_PER_FEATURE,
    TestPortion,
    as_presence_set,
    deploy_market,
    portion_hash,
    run_round,
    safe_max_test_entries,
    split_test_set,
)
from contracts.rpc import RpcError
from contracts.signing import keccak256
from contracts.transact import Transactor

N_FEATURES = 30
POSITIVE = range(0, 15)  # features of class 1
NEGATIVE = range(15, 30)  # features of class 0
MIN_STAKE = 10**6
BOUNTY = 10**9


def draw(rng: random.Random, label: int, k: int = 3) -> tuple[int, ...]:
    pool = POSITIVE if label == 1 else NEGATIVE
    return as_presence_set(rng.sample(list(pool), k))


def make_test_set(seed: int, n: int = 32) -> tuple[list[tuple[int, ...]], list[int]]:
    rng = random.Random(seed)
    labels = [i % 2 for i in range(n)]
    return [draw(rng, y) for y in labels], labels


@dataclass
class Setup:
    driver: MarketDriver
    portions: list[TestPortion]
    weights: list[int]
    intercept: int


async def gas_limit(client) -> int:
    block = await client.get_block("latest")
    return int(block["gasLimit"], 16)


async def new_market(client, tx, compiled, *, weights=None, intercept=0, params=None, k=4, seed=1) -> Setup:
    weights = [0] * N_FEATURES if weights is None else weights
    spec = SparsePerceptronSpec(weights=weights, intercept=intercept, learning_rate=FIXED // 2)
    deployed = await deploy_market(client, tx, compiled, spec, params or MarketParams(min_stake=MIN_STAKE),
                                   gas_limit=await gas_limit(client))
    samples, labels = make_test_set(seed)
    portions = split_test_set(samples, labels, k, salt_seed=seed.to_bytes(8, "big"))
    return Setup(MarketDriver(client, deployed), portions, weights, intercept)


def twin_of(s: Setup) -> MarketTwin:
    return MarketTwin(s.weights, s.intercept, FIXED // 2, s.driver.m.params.min_stake)


async def reason(d: MarketDriver, sender, fn, *args, value=0) -> str | None:
    return await d.revert_reason(sender.address if hasattr(sender, "address") else sender, fn, *args, value=value)


def contributions_plan(rng: random.Random, good: list[Transactor], bad: list[Transactor], n: int):
    """(tx, data, label, value): honest samples from the good accounts, flipped labels from the bad."""
    plan = []
    for i in range(n):
        who = rng.choice(good + bad)
        y = rng.randrange(2)
        x = draw(rng, y, rng.randint(1, 4))
        plan.append((who, x, 1 - y if who in bad else y, None))
    return plan


# ---- a full round --------------------------------------------------------------------------------


async def test_full_round_matches_twin_to_the_wei(client, tx, compiled, actors, dev):
    s = await new_market(client, tx, compiled)
    d = s.driver
    rng = random.Random(11)
    good, bad = actors[1:3], actors[3:5]
    plan = contributions_plan(rng, good, bad, 14)
    start_block = await client.block_number()
    model_before = await d.client.eth_call(d.m.model, d.m.model_abi.encode("getWeights", 0, N_FEATURES))

    result = await run_round(d, tx, BOUNTY, s.portions, plan, min_contributions=len(plan), max_count=5)
    assert await d.phase() == Phase.COLLECT

    # no training during participation (nor afterwards): the starting model is untouched
    assert await d.client.eth_call(d.m.model, d.m.model_abi.encode("getWeights", 0, N_FEATURES)) == model_before

    tests = await d.revealed_test_set(s.portions)
    assert len(tests) == 24 and await d.view("numTestSamples") == 24
    contribs = [MarketContribution(t.account.address, tuple(x), y, MIN_STAKE) for t, x, y, _ in plan]
    assert await d.contributions() == contribs  # rebuilt from the AddData events
    outcome = twin_of(s).run(tx.account.address, BOUNTY, tests, contribs)
    assert await d.view("initialCorrect") == outcome.initial_correct == 12  # all-zero model: predicts 0

    chain_credits = {to_checksum_address(a): v for a, v in result.credits.items()}
    twin_credits = {a: v for a, v in outcome.credits.items() if v}
    assert {a: v for a, v in chain_credits.items() if v} == twin_credits
    total = BOUNTY + MIN_STAKE * len(plan)
    assert sum(chain_credits.values()) == total == await client.balance(d.m.market)

    # several passes: bad contributions were priced out and dropped before the last pass
    passes = [e for r in result.receipts["process"] for e in d.events(r, "PassCompleted")]
    assert len(passes) == len(outcome.passes) >= 2
    assert [(p["survivors"], p["correct"], p["rounds"], p["remainingRounds"]) for p in passes] == \
        [(p["survivors"], p["correct"], p["rounds"], p["remaining"]) for p in outcome.passes]
    assert passes[-1]["remainingRounds"] == 0 and passes[-1]["survivors"] < len(plan)
    for addr in {t.account.address for t in bad}:
        assert chain_credits.get(addr, 0) < MIN_STAKE * sum(1 for t, *_ in plan if t.account.address == addr)
    for addr in {t.account.address for t in good}:
        assert chain_credits[addr] > MIN_STAKE * sum(1 for t, *_ in plan if t.account.address == addr)
    # the final accuracy beats the starting one
    assert passes[-1]["correct"] > outcome.initial_correct

    # every contribution's last score and final balance as the twin has them
    for i in range(len(plan)):
        _c, _y, score, balance, data = await d.view("getContribution", i)
        assert (score, balance) == (outcome.scores[i], outcome.final_balances[i]), i
        assert tuple(data) == plan[i][1]
    # the replayed model: the starting model trained on the last pass's contributions
    for f in range(N_FEATURES):
        assert await d.view("marketWeight", f) == outcome.final_weights.get(f, s.weights[f])

    # each reward transaction is gas-bounded (at most 5 contributions each here)
    for r in result.receipts["process"]:
        assert int(r["gasUsed"], 16) < 2_000_000

    # collection: every participant gets exactly its credit, once
    by_addr = {t.account.address: t for t in actors}
    for addr, amount in chain_credits.items():
        if not amount:
            continue
        r = await d.collect(by_addr[addr])
        assert await balance_delta(client, addr, r) == amount - fee(r)
        assert d.events(r, "Collected") == [{"participant": addr, "recipient": addr, "amount": amount}]
        assert await d.view("claimableBalance", addr) == 0
        await expect_revert_reason(await reason(d, by_addr[addr].account, "collect"), "NothingToCollect")
    assert await client.balance(d.m.market) == 0
    assert await client.block_number() > start_block


async def test_chunking_does_not_change_the_outcome(client, tx, compiled, actors):
    """One contribution per transaction or all at once: the same credits (each market draws its own
    reveal index, hence its own scored test set: compare each with the twin, and markets that drew the
    same index with each other)."""
    rng = random.Random(5)
    plan = contributions_plan(rng, actors[1:3], actors[3:4], 9)
    contribs = [MarketContribution(t.account.address, tuple(x), y, MIN_STAKE) for t, x, y, _ in plan]
    by_index: dict[int, dict] = {}
    for max_count in (1, 4, 100, 1, 4, 100):
        s = await new_market(client, tx, compiled, seed=3)
        result = await run_round(s.driver, tx, BOUNTY, s.portions, plan, min_contributions=len(plan),
                                 max_count=max_count)
        n_tx = len(result.receipts["process"])
        if max_count == 1:  # one contribution per transaction: at least one transaction per contribution
            assert n_tx >= len(plan)
        elif max_count == 100:
            assert n_tx == 1
        outcome = twin_of(s).run(tx.account.address, BOUNTY, await s.driver.revealed_test_set(s.portions), contribs)
        credits = {a: v for a, v in result.credits.items() if v}
        assert credits == {a: v for a, v in outcome.credits.items() if v}
        assert by_index.setdefault(result.reveal_index, credits) == credits


async def test_worst_case_visit_is_gas_bounded(client, tx, compiled, actors, dev):
    """Every test sample is feature 0 alone: a contribution [0] that the model gets wrong moves every
    margin; another one of maxDataLength never-touched features writes that many fresh overlay slots.
    Both visits stay under the published bound, which `safe_max_test_entries` relies on."""
    n = 200  # scored samples (the other portion of the same size is the revealed one)
    samples = [(0,)] * (2 * n)
    portions = split_test_set(samples, [1] * (2 * n), 2, salt_seed=b"worst")
    max_len = 40
    max_entries = safe_max_test_entries(await gas_limit(client), max_data_length=max_len)
    assert max_entries >= n
    params = MarketParams(min_stake=MIN_STAKE, max_data_length=max_len, max_test_entries=max_entries)
    s = await new_market(client, tx, compiled, weights=[0] * (100 + max_len), params=params)
    wide = tuple(range(100, 100 + max_len))  # zero weights, no test sample holds them: a mistake
    plan = [(actors[1], (0,), 1, None), (actors[2], wide, 1, None), (actors[3], (0, 1), 1, None)]
    result = await run_round(s.driver, tx, BOUNTY, portions, plan, min_contributions=3, max_count=1)
    entries = await s.driver.view("numTestEntries")
    assert entries == n
    first, second = (int(r["gasUsed"], 16) for r in result.receipts["process"][:2])
    assert first <= VISIT_GAS_FIXED + VISIT_GAS_PER_FEATURE + entries * VISIT_GAS_PER_ENTRY
    assert first > n * 5_000  # it really moved every margin
    assert second <= VISIT_GAS_FIXED + max_len * VISIT_GAS_PER_FEATURE
    assert second > max_len * 20_000  # it really wrote a fresh slot per feature
    # the one that trained on every sample fixed them all: it earns the whole bounty's worth
    outcome = twin_of(s).run(tx.account.address, BOUNTY, await s.driver.revealed_test_set(portions),
                             await s.driver.contributions())
    assert {a: v for a, v in result.credits.items() if v} == {a: v for a, v in outcome.credits.items() if v}
    assert result.credits[dev[1].address] > BOUNTY // 2


async def test_greater_stakes_and_stake_refund(client, tx, compiled, actors, dev):
    # exactly minStake is kept by default; the excess comes back in the same call
    s = await new_market(client, tx, compiled)
    d = s.driver
    await d.initialize(tx, BOUNTY, s.portions, min_length_s=0, min_contributions=1)
    await d.reveal_init(tx, s.portions)
    r = await d.contribute(actors[1], [0, 1], 1, value=3 * MIN_STAKE)
    assert await balance_delta(client, dev[1].address, r) == -MIN_STAKE - fee(r)
    assert d.events(r, "AddData")[0]["cost"] == MIN_STAKE
    assert await d.view("stakeOf", dev[1].address) == MIN_STAKE
    await expect_revert_reason(await reason(d, dev[2], "addData", [0, 1], 1, value=MIN_STAKE - 1),
                               "DidNotPayEnough", (MIN_STAKE, MIN_STAKE - 1))

    # with larger stakes allowed, the whole value is the stake, and it scales the reward
    s2 = await new_market(client, tx, compiled, params=MarketParams(min_stake=MIN_STAKE, allow_greater_stake=True))
    plan = [(actors[1], draw(random.Random(i), 1), 1, MIN_STAKE * (1 + 2 * (i % 2))) for i in range(4)]
    plan += [(actors[2], draw(random.Random(9), 0), 1, MIN_STAKE * 5)]  # a flipped label, staked high
    result = await run_round(s2.driver, tx, BOUNTY, s2.portions, plan, min_contributions=len(plan))
    tests = await s2.driver.revealed_test_set(s2.portions)
    outcome = twin_of(s2).run(tx.account.address, BOUNTY,
                              tests, [MarketContribution(t.account.address, tuple(x), y, v) for t, x, y, v in plan])
    assert {a: v for a, v in result.credits.items() if v} == {a: v for a, v in outcome.credits.items() if v}
    assert await s2.driver.view("totalStakes") == sum(v for *_, v in plan)
    assert sum(result.credits.values()) == BOUNTY + sum(v for *_, v in plan) == await client.balance(s2.driver.m.market)


# ---- the reveal index ----------------------------------------------------------------------------


async def test_reveal_index_comes_from_a_later_block_hash(client, tx, compiled, dev):
    s = await new_market(client, tx, compiled, params=MarketParams(min_stake=MIN_STAKE, reveal_delay_blocks=3))
    d = s.driver
    r = await d.initialize(tx, BOUNTY, s.portions[:3], min_length_s=0, min_contributions=1)
    init_block = int(r["blockNumber"], 16)
    assert await d.view("drawBlock") == init_block + 3
    assert await d.phase() == Phase.INITIALIZATION
    await expect_revert_reason(await reason(d, dev[1], "drawRevealIndex"), "TooEarlyToDraw", (init_block + 3,))
    await expect_revert_reason(await reason(d, dev[0], "revealInitTestSet", *s.portions[0].args()),
                               "TooEarlyToDraw", (init_block + 3,))

    # more hashes while the draw block is not mined: the draw moves on
    r = await d.add_portions(tx, s.portions[3:])
    add_block = int(r["blockNumber"], 16)
    assert await d.view("drawBlock") == add_block + 3
    assert await d.view("numPortions") == 4
    assert list(await d.view("getTestSetHashes")) == [p.hash for p in s.portions]
    assert d.events(r, "TestSetHashesAdded") == [{"numPortions": 4, "drawBlock": add_block + 3}]
    # only the provider adds hashes, never an empty list
    await expect_revert_reason(await reason(d, dev[1], "addTestSetHashes", [b"\1" * 32]), "NotProvider")
    await expect_revert_reason(await reason(d, dev[0], "addTestSetHashes", []), "NoHashes")

    # anyone draws once the draw block is mined; the index is the block hash's, taken modulo k
    for _ in range(4):
        await client.call("evm_mine")
    await expect_revert_reason(await reason(d, dev[0], "addTestSetHashes", [b"\1" * 32]), "DrawBlockPassed",
                               (add_block + 3,))
    stranger = Transactor(client, dev[5], tx.chain_id)
    index = await d.draw(stranger)
    block = await client.get_block(add_block + 3)
    expected = int.from_bytes(keccak256(abi_encode(["bytes32", "address", "uint256"],
                                                   [bytes.fromhex(block["hash"][2:]), d.m.market, 4])), "big") % 4
    assert index == expected
    # drawn for good: a second draw changes nothing
    await stranger.send(d.m.market, d.abi.encode("drawRevealIndex"))
    assert await d.view("revealIndex") == index

    # the drawn portion must be revealed exactly; any other portion or a wrong salt is refused
    other = (index + 1) % 4
    await expect_revert_reason(await reason(d, dev[0], "revealInitTestSet", *s.portions[other].args()),
                               "HashMismatch", (index,))
    salt, xs, ys = s.portions[index].args()
    await expect_revert_reason(await reason(d, dev[0], "revealInitTestSet", b"\0" * 32, xs, ys), "HashMismatch")
    await expect_revert_reason(await reason(d, dev[0], "revealInitTestSet", salt, xs, [1 - ys[0]] + ys[1:]),
                               "HashMismatch")
    await expect_revert_reason(await reason(d, dev[0], "revealInitTestSet", salt, xs, ys[:-1]), "BadTestSet")
    r = await stranger.send(d.m.market, d.abi.encode("revealInitTestSet", salt, xs, ys))  # anyone holding it
    assert await d.phase() == Phase.PARTICIPATION
    assert d.events(r, "ParticipationStarted")
    await expect_revert_reason(await reason(d, dev[0], "addTestSetHashes", [b"\1" * 32]), "WrongPhase", (2,))


async def test_draw_after_256_blocks_is_rescheduled(client, tx, compiled, dev):
    s = await new_market(client, tx, compiled)
    d = s.driver
    await d.initialize(tx, BOUNTY, s.portions, min_length_s=0, min_contributions=1)
    await client.call("anvil_mine", hex(300))
    stranger = Transactor(client, dev[6], tx.chain_id)
    await expect_revert_reason(await reason(d, dev[0], "revealInitTestSet", *s.portions[0].args()), "DrawExpired")
    r = await stranger.send(d.m.market, d.abi.encode("drawRevealIndex"))
    assert d.events(r, "RevealDrawRescheduled") == [{"drawBlock": int(r["blockNumber"], 16) + 1}]
    assert await d.view("revealIndexDrawn") is False
    index = await d.reveal_init(tx, s.portions)
    assert 0 <= index < 4 and await d.phase() == Phase.PARTICIPATION


# ---- revert paths by phase -----------------------------------------------------------------------


async def test_initialization_checks(client, tx, compiled, dev):
    s = await new_market(client, tx, compiled)
    d = s.driver
    hashes = [p.hash for p in s.portions]
    await expect_revert_reason(await reason(d, dev[1], "initializeMarket", hashes, 0, 1, value=BOUNTY), "NotProvider")
    await expect_revert_reason(await reason(d, dev[0], "initializeMarket", hashes, 0, 1), "ZeroBounty")
    await expect_revert_reason(await reason(d, dev[0], "initializeMarket", hashes[:1], 0, 1, value=BOUNTY),
                               "TooFewPortions", (1,))
    # wrong phase for everything that comes later
    for fn, args in (("addData", ([0], 1)), ("endParticipation", ()), ("revealTestSet", (0, *s.portions[0].args())),
                     ("processContributions", (1,)), ("collect", ()), ("claimUnclaimed", (dev[1].address,)),
                     ("abortMarket", ()), ("drawRevealIndex", ()), ("cancelMarket", ())):
        who = dev[0]
        await expect_revert_reason(await reason(d, who, fn, *args, value=MIN_STAKE if fn == "addData" else 0),
                                   "WrongPhase", (0,))

    # a market that does not own its model refuses to start
    spec = SparsePerceptronSpec(weights=[0] * 6)
    r = await tx.send(None, compiled["SparsePerceptron"].bytecode + abi_encode(*spec.constructor()))
    model = to_checksum_address(r["contractAddress"])
    types, args = MarketParams(min_stake=MIN_STAKE).constructor_args(model)
    r = await tx.send(None, compiled["PredictionMarket"].bytecode + abi_encode(types, args))
    market = to_checksum_address(r["contractAddress"])
    data = d.abi.encode("initializeMarket", hashes, 0, 1)
    with pytest.raises(RpcError) as ei:
        await client.call("eth_call", {"from": dev[0].address, "to": market, "data": "0x" + data.hex(),
                                       "value": hex(BOUNTY)}, "latest")
    assert decode_revert(ei.value.data, d.m.errors) == f"ModelNotOwnedByMarket({dev[0].address.lower()})"

    # bad constructor parameters
    for bad in (MarketParams(min_stake=0), MarketParams(min_stake=1, max_data_length=0),
                MarketParams(min_stake=1, reveal_delay_blocks=0), MarketParams(min_stake=1, reveal_delay_blocks=129),
                MarketParams(min_stake=1, max_test_entries=0), MarketParams(min_stake=1, reveal_timeout_s=0)):
        types, args = bad.constructor_args(model)
        with pytest.raises(RpcError) as ei:
            await client.call("eth_call", {"from": dev[0].address, "data": "0x" + (
                compiled["PredictionMarket"].bytecode + abi_encode(types, args)).hex()}, "latest")
        assert decode_revert(ei.value.data, d.m.errors) == "BadParameter()"

    # the initialized market: initialization cannot run twice, the provider may cancel
    await d.initialize(tx, BOUNTY, s.portions, min_length_s=0, min_contributions=1)
    await expect_revert_reason(await reason(d, dev[0], "initializeMarket", hashes, 0, 1, value=BOUNTY),
                               "WrongPhase", (1,))
    await expect_revert_reason(await reason(d, dev[1], "cancelMarket"), "NotProvider")
    await expect_revert_reason(await reason(d, dev[1], "addData", [0], 1, value=MIN_STAKE), "WrongPhase", (1,))
    r = await d.cancel(tx)
    assert d.events(r, "MarketCancelled")
    assert await d.phase() == Phase.COLLECT
    assert await d.claimable(dev[0].address) == BOUNTY
    r = await d.collect(tx)
    assert await balance_delta(client, dev[0].address, r) == BOUNTY - fee(r)
    assert await client.balance(d.m.market) == 0


async def test_participation_checks(client, tx, compiled, actors, dev):
    s = await new_market(client, tx, compiled, params=MarketParams(min_stake=MIN_STAKE, max_data_length=4))
    d = s.driver
    await d.initialize(tx, BOUNTY, s.portions, min_length_s=600, min_contributions=3)
    await d.reveal_init(tx, s.portions)
    start = await latest_timestamp(client)
    earliest = await d.view("earliestEndTime")
    assert earliest == start + 600
    # the data must be a presence set of at most maxDataLength features, the label binary
    for data in ([], [3, 1], [1, 1], [-1, 2], [0, 1, 2, 3, 4]):
        await expect_revert_reason(await reason(d, dev[1], "addData", data, 1, value=MIN_STAKE), "BadData")
    await expect_revert_reason(await reason(d, dev[1], "addData", [1], 2, value=MIN_STAKE), "BadClassification",
                               (2,))
    await expect_revert_reason(await reason(d, dev[1], "addData", [1], 1, value=0), "DidNotPayEnough",
                               (MIN_STAKE, 0))
    # neither condition met: cannot end
    await d.contribute(actors[1], [0, 1], 1)
    await expect_revert_reason(await reason(d, dev[2], "endParticipation"), "CannotEndYet", (1, earliest))
    for fn, args in (("revealTestSet", (0, *s.portions[0].args())), ("processContributions", (1,)),
                     ("collect", ()), ("abortMarket", ()), ("cancelMarket", ()),
                     ("revealInitTestSet", s.portions[0].args())):
        await expect_revert_reason(await reason(d, dev[0], fn, *args), "WrongPhase", (2,))
    # the minimum duration ends it (the minimum count would too: see the full round)
    await mine_at(client, earliest)
    stranger = Transactor(client, dev[7], tx.chain_id)
    r = await stranger.send(d.m.market, d.abi.encode("endParticipation"))
    assert d.events(r, "ParticipationEnded") == [{"numContributions": 1}]
    assert await d.phase() == Phase.REVEAL_TEST_SET
    await expect_revert_reason(await reason(d, dev[1], "addData", [0], 1, value=MIN_STAKE), "WrongPhase", (3,))


async def test_reveal_checks_and_order(client, tx, compiled, actors, dev):
    s = await new_market(client, tx, compiled, params=MarketParams(min_stake=MIN_STAKE, max_test_entries=50))
    d = s.driver
    await d.initialize(tx, BOUNTY, s.portions, min_length_s=0, min_contributions=1)
    index = await d.reveal_init(tx, s.portions)
    await d.contribute(actors[1], [0, 1], 1)
    await d.end_participation(actors[2])
    order = [i for i in range(4) if i != index]
    first, second = order[0], order[1]
    await expect_revert_reason(await reason(d, dev[0], "revealTestSet", second, *s.portions[second].args()),
                               "WrongPortion", (first,))
    await expect_revert_reason(await reason(d, dev[0], "revealTestSet", first, *s.portions[second].args()),
                               "HashMismatch", (first,))
    await expect_revert_reason(await reason(d, dev[0], "processContributions", 1), "WrongPhase", (3,))
    await expect_revert_reason(await reason(d, dev[0], "abortMarket"), "RevealNotTimedOut")
    for i in order[:2]:
        await d._send(tx, "revealTestSet", i, *s.portions[i].args())
    # the last portion would exceed maxTestEntries (3 per sample here: 24 samples, 72 entries > 50)
    last = order[2]
    await expect_revert_reason(await reason(d, dev[0], "revealTestSet", last, *s.portions[last].args()),
                               "TooManyTestEntries")

    # a test sample that is not a presence set is refused even with a matching hash
    s2 = await new_market(client, tx, compiled)
    bad = TestPortion(b"\7" * 32, ((2, 1),), (1,))
    portions = [s2.portions[0], bad]
    await s2.driver.initialize(tx, BOUNTY, portions, min_length_s=0, min_contributions=1)
    idx = await s2.driver.draw(tx)
    if idx == 1:
        await expect_revert_reason(await reason(s2.driver, dev[0], "revealInitTestSet", *bad.args()), "BadData")
    else:
        await s2.driver.reveal_init(tx, portions)
        await s2.driver.contribute(actors[1], [0], 1)
        await s2.driver.end_participation(tx)
        await expect_revert_reason(await reason(s2.driver, dev[0], "revealTestSet", 1, *bad.args()), "BadData")
    assert portion_hash(*bad.args()) == bad.hash


async def test_abort_after_reveal_timeout_shares_the_bounty_by_stake(client, tx, compiled, actors, dev):
    params = MarketParams(min_stake=MIN_STAKE, allow_greater_stake=True, reveal_timeout_s=3600)
    s = await new_market(client, tx, compiled, params=params)
    d = s.driver
    bounty = 10**9 + 1  # not divisible: the last collector gets the rounding remainder
    await d.initialize(tx, bounty, s.portions, min_length_s=0, min_contributions=3)
    await d.reveal_init(tx, s.portions)
    stakes = {1: 3 * MIN_STAKE, 2: MIN_STAKE, 3: 7 * MIN_STAKE}
    for i, v in stakes.items():
        await d.contribute(actors[i], [i], 1, value=v)
    await d.contribute(actors[1], [4], 0, value=MIN_STAKE)
    stakes[1] += MIN_STAKE
    r = await d.end_participation(tx)
    ended = int((await client.get_block(int(r["blockNumber"], 16)))["timestamp"], 16)
    await expect_revert_reason(await reason(d, dev[5], "abortMarket"), "RevealNotTimedOut", (ended + 3600,))
    await mine_at(client, ended + 3600)
    stranger = Transactor(client, dev[5], tx.chain_id)
    r = await stranger.send(d.m.market, d.abi.encode("abortMarket"))
    assert d.events(r, "MarketAborted") and await d.phase() == Phase.COLLECT
    total = sum(stakes.values())
    order = (2, 1, 3)
    shares = bounty_left(bounty, total, stakes, order)
    assert sum(shares) == bounty
    paid = 0
    for i, share in zip(order, shares):
        owed = await d.claimable(dev[i].address)
        assert owed == stakes[i] + share
        r = await d.collect(actors[i])
        assert await balance_delta(client, dev[i].address, r) == owed - fee(r)
        paid += owed
    assert paid == bounty + total
    assert await client.balance(d.m.market) == 0
    await expect_revert_reason(await reason(d, dev[0], "collect"), "NothingToCollect")


def bounty_left(bounty: int, total: int, stakes: dict[int, int], order) -> list[int]:
    """Shares of an aborted market's bounty in collection order (the contract's arithmetic)."""
    left_b, left_s, out = bounty, total, []
    for i in order:
        share = left_b if stakes[i] == left_s else left_b * stakes[i] // left_s
        left_b -= share
        left_s -= stakes[i]
        out.append(share)
    return out


async def test_no_contributions_returns_the_bounty(client, tx, compiled, dev):
    s = await new_market(client, tx, compiled)
    d = s.driver
    await d.initialize(tx, BOUNTY, s.portions, min_length_s=30, min_contributions=5)
    await d.reveal_init(tx, s.portions)
    await mine_at(client, await d.view("earliestEndTime"))
    r = await d.end_participation(tx)
    assert d.events(r, "RewardPhaseEnded") == [{"providerAmount": BOUNTY}]
    assert await d.phase() == Phase.COLLECT and await d.claimable(dev[0].address) == BOUNTY


async def test_late_claim_by_anyone_after_seven_days(client, tx, compiled, actors, dev):
    s = await new_market(client, tx, compiled)
    d = s.driver
    plan = [(actors[1], draw(random.Random(i), 1), 1, None) for i in range(3)]
    result = await run_round(d, tx, BOUNTY, s.portions, plan, min_contributions=3)
    owed = result.credits[dev[1].address]
    assert owed > 3 * MIN_STAKE  # good data earned part of the bounty
    ended = await d.view("rewardEndTime")
    await expect_revert_reason(await reason(d, dev[4], "claimUnclaimed", dev[1].address), "TooEarlyToClaim",
                               (ended + LATE_CLAIM_WAIT_S,))
    await mine_at(client, ended + LATE_CLAIM_WAIT_S - 1)
    await expect_revert_reason(await reason(d, dev[4], "claimUnclaimed", dev[1].address), "TooEarlyToClaim")
    # the participant may still collect late; here a stranger claims it after the wait
    await mine_at(client, ended + LATE_CLAIM_WAIT_S)
    r = await d.claim_unclaimed(actors[4], dev[1].address)
    assert await balance_delta(client, dev[4].address, r) == owed - fee(r)
    assert d.events(r, "Collected") == [{"participant": dev[1].address, "recipient": dev[4].address, "amount": owed}]
    # the participant's balance is gone (the reference deleted the reporter's balance instead)
    assert await d.claimable(dev[1].address) == 0
    assert await d.claimable(dev[4].address) == 0
    await expect_revert_reason(await reason(d, dev[1], "collect"), "NothingToCollect")
    await expect_revert_reason(await reason(d, dev[4], "claimUnclaimed", dev[1].address), "NothingToCollect")
    # the provider's remainder is still there for the provider
    assert await d.claimable(dev[0].address) == BOUNTY + 3 * MIN_STAKE - owed


async def test_processing_is_callable_by_anyone_and_stops_at_collect(client, tx, compiled, actors, dev):
    s = await new_market(client, tx, compiled)
    d = s.driver
    await d.initialize(tx, BOUNTY, s.portions, min_length_s=0, min_contributions=2)
    await d.reveal_init(tx, s.portions)
    await d.contribute(actors[1], [0, 2], 1)
    await d.contribute(actors[2], [1, 3], 0)  # flipped: features 1, 3 are class 1
    await d.end_participation(tx)
    await d.reveal_test_set(tx, s.portions)
    assert await d.phase() == Phase.REWARD
    await expect_revert_reason(await reason(d, dev[1], "collect"), "WrongPhase", (4,))
    stranger = Transactor(client, dev[8], tx.chain_id)
    receipts = await d.process_all(stranger, max_count=1)
    assert receipts and await d.phase() == Phase.COLLECT
    await expect_revert_reason(await reason(d, dev[8], "processContributions", 1), "WrongPhase", (5,))
    assert sum([await d.claimable(a.address) for a in dev[:3]]) == BOUNTY + 2 * MIN_STAKE


async def test_twin_agrees_on_random_markets(client, tx, compiled, actors):
    """Several random rounds (weights, data, stakes, flips): chain and twin agree on every credit."""
    for seed in (21, 22, 23):
        rng = random.Random(seed)
        weights = [rng.randint(-FIXED, FIXED) for _ in range(N_FEATURES)]
        params = MarketParams(min_stake=MIN_STAKE, allow_greater_stake=True)
        s = await new_market(client, tx, compiled, weights=weights, intercept=rng.randint(-FIXED, FIXED),
                             params=params, k=rng.randint(2, 5), seed=seed)
        plan = []
        for _ in range(rng.randint(3, 10)):
            who = actors[rng.randint(1, 5)]
            y = rng.randrange(2)
            x = draw(rng, y, rng.randint(1, 5))
            plan.append((who, x, y if rng.random() < 0.6 else 1 - y, MIN_STAKE * rng.randint(1, 4)))
        bounty = rng.randint(10**6, 10**10)
        result = await run_round(s.driver, tx, bounty, s.portions, plan, min_contributions=len(plan), max_count=3)
        tests = await s.driver.revealed_test_set(s.portions)
        outcome = twin_of(s).run(tx.account.address, bounty, tests,
                                 [MarketContribution(t.account.address, tuple(x), y, v) for t, x, y, v in plan])
        assert {a: v for a, v in result.credits.items() if v} == {a: v for a, v in outcome.credits.items() if v}, seed
        assert sum(result.credits.values()) == bounty + sum(v for *_, v in plan)
