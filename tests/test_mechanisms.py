"""The gamification mechanism (`Points`) behind the unchanged CollaborativeTrainer, on a real node:
free adds, validation ("refund") and report rules with every revert path, scores, badges, events.

The helpers at the top are shared with test_prediction_market.py and test_security.py."""

from __future__ import annotations

import pytest
from conftest import FIXED, deploy_small, latest_timestamp, read_add_data_events, revert_reason, set_next_timestamp
from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from contracts.abi import ContractABI, decode_revert
from contracts.deploy import DeployedSystem
from contracts.mechanisms import (
    BADGE_FIRST_CONTRIBUTION,
    BADGE_FIRST_REPORT,
    BADGE_VALIDATED_10,
    BADGE_VALIDATED_100,
    BADGE_VALIDATED_1000,
    PointsSpec,
    expected_badges,
)
from contracts.rpc import RpcClient, RpcError
from contracts.signing import LocalAccount, keccak256
from contracts.transact import Transactor

POINTS = PointsSpec(refund_wait_s=60, owner_claim_wait_s=120, any_address_claim_wait_s=180)
GOOD = [0, 2, 4]  # default weights: predicts 1
BAD = [1, 3]  # default weights: predicts 0


# ---- shared helpers ------------------------------------------------------------------------------


async def view(client: RpcClient, abi, address: str, fn: str, *args, block="latest"):
    f = abi.fn(fn)
    return f.decode(await client.eth_call(address, f.encode(*args), block))


async def send_at(t: Transactor, ts: int, to: str, data: bytes, value: int = 0, gas: int | None = None):
    """Send one transaction mined (automine) in a block with timestamp `ts`."""
    await set_next_timestamp(t.client, ts)
    return await t.send(to, data, value, gas=gas)


async def mine_at(client: RpcClient, ts: int) -> None:
    await client.call("evm_mine", {"timestamp": ts})


def fee(receipt) -> int:
    return int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)


async def balance_delta(client: RpcClient, address: str, receipt) -> int:
    n = int(receipt["blockNumber"], 16)
    return await client.balance(address, n) - await client.balance(address, n - 1)


def events(abi, receipt, name: str, address: str | None = None) -> list[dict]:
    out = []
    for log in receipt["logs"]:
        if address is not None and log["address"].lower() != address.lower():
            continue
        d = abi.decode_log(log)
        if d is not None and d[0] == name:
            out.append(d[1])
    return out


async def expect_revert_reason(reason: str | None, error: str, args: tuple | None = None) -> str:
    assert reason is not None, f"expected {error}, but the call succeeds"
    assert reason.split("(")[0] == error, reason
    if args is not None:
        assert reason.lower() == f"{error}({', '.join(str(a) for a in args)})".lower(), reason
    return reason


async def expect_revert(client, system: DeployedSystem, sender: LocalAccount, to: str, data: bytes, error: str,
                        value: int = 0, args: tuple | None = None) -> str:
    return await expect_revert_reason(await revert_reason(client, system, sender.address, to, data, value),
                                      error, args)


@pytest.fixture
def actors(client: RpcClient, dev: list[LocalAccount], chain_id: int) -> list[Transactor]:
    """A fresh transactor per dev account (index 0 is the deployer)."""
    return [Transactor(client, a, chain_id) for a in dev]


# ---- Points helpers ------------------------------------------------------------------------------


async def deploy_points(client, tx, compiled, weights=None) -> DeployedSystem:
    return await deploy_small(client, tx, compiled, weights=weights, incentive=POINTS)


def T(system: DeployedSystem):
    return system.abis["CollaborativeTrainer"]


def P(system: DeployedSystem):
    return system.abis["Points"]


async def pview(client, system, fn, *args):
    return await view(client, P(system), system.incentive, fn, *args)


async def add(system, who: Transactor, ts: int, sample, label, value: int = 0):
    r = await send_at(who, ts, system.trainer, T(system).encode("addData", sample, label), value)
    (ev,) = read_add_data_events(r, T(system), system.trainer)
    return r, ev


# ---- tests ---------------------------------------------------------------------------------------


async def test_points_deploys_through_deploy_system(client, tx, compiled):
    system = await deploy_points(client, tx, compiled)
    assert system.incentive_contract == "Points"
    assert to_checksum_address(await pview(client, system, "owner")) == system.trainer
    assert await pview(client, system, "refundWaitTimeS") == 60
    assert await pview(client, system, "ownerClaimWaitTimeS") == 120
    assert await pview(client, system, "anyAddressClaimWaitTimeS") == 180
    for sig, args in (("getNextAddDataCost()", ()), ("getNextAddDataCost(uint256)", (10**12,)),
                      ("getNextAddDataCost(int64[],uint64)", (GOOD, 1))):
        assert await pview(client, system, sig, *args) == 0


async def test_points_waits_must_be_ordered(client, tx, compiled):
    errors = ContractABI(compiled["Points"].abi).errors
    for waits, ok in (((61, 60, 180), False), ((60, 181, 180), False), ((60, 60, 60), True), ((0, 1, 2), True)):
        code = compiled["Points"].bytecode + abi_encode(["uint256"] * 3, list(waits))
        try:
            await client.call("eth_call", {"from": tx.account.address, "data": "0x" + code.hex()}, "latest")
            reason = None
        except RpcError as e:
            reason = decode_revert(e.data if isinstance(e.data, str) else None, errors)
        assert reason == (None if ok else "WaitsOutOfOrder()"), waits


async def test_points_adds_are_free_and_train_the_model(client, tx, compiled, actors, dev):
    system = await deploy_points(client, tx, compiled, weights=[0] * 9)
    author = actors[1]
    t0 = await latest_timestamp(client) + 10
    # ether sent along comes straight back; nothing stays in the trainer
    r, ev = await add(system, author, t0, [0, 3], 1, value=10**15)
    assert ev["cost"] == 0 and ev["sender"] == dev[1].address
    assert await balance_delta(client, dev[1].address, r) == -fee(r)
    assert await client.balance(system.trainer) == 0
    assert await pview(client, system, "totalSubmitted") == 1
    # the model trained (all-zero weights predict 0, label 1: a mistake moves both weights)
    w = await view(client, system.model_abi, system.model, "getWeights", 0, 4)
    assert list(w) == [FIXED // 2, 0, 0, FIXED // 2]
    await add(system, author, t0 + 1, [5], 0)
    assert await pview(client, system, "totalSubmitted") == 2


async def test_points_validation_rules(client, tx, compiled, actors, dev):
    system = await deploy_points(client, tx, compiled)
    a, b = actors[1], actors[2]
    A = dev[1].address
    t0 = await latest_timestamp(client) + 10
    await add(system, a, t0, GOOD, 1)
    await add(system, a, t0 + 1, BAD, 1)
    refund = T(system).encode("refund", GOOD, 1, t0)

    # too early
    await expect_revert(client, system, dev[1], system.trainer, refund, "NotEnoughTimeHasPassed", args=(1, 60))
    await mine_at(client, t0 + 59)
    await expect_revert(client, system, dev[1], system.trainer, refund, "NotEnoughTimeHasPassed", args=(59, 60))
    # wrong author: the key binds the author, another account finds nothing
    await mine_at(client, t0 + 62)
    await expect_revert(client, system, dev[2], system.trainer, refund, "ContributionNotFound")
    # model disagrees
    await expect_revert(client, system, dev[1], system.trainer, T(system).encode("refund", BAD, 1, t0 + 1),
                        "ModelDisagrees", args=(0, 1))

    r = await send_at(a, t0 + 63, system.trainer, refund)
    assert await balance_delta(client, A, r) == -fee(r)  # no ether moves
    assert events(P(system), r, "Refund", system.incentive) == [{"recipient": A}]
    assert events(P(system), r, "BadgeEarned", system.incentive) == [{"account": A, "badge": BADGE_FIRST_CONTRIBUTION}]
    # Stakeable's Refund(address,uint256) has another topic: no confusion between the two ABIs
    assert events(system.abis["Stakeable"], r, "Refund") == []
    assert await pview(client, system, "numValid", A) == 1
    assert await pview(client, system, "numValidForAddress", A) == 1
    assert await pview(client, system, "totalGoodDataCount") == 1
    assert await pview(client, system, "score", A) == FIXED
    assert await pview(client, system, "scoreFraction", A) == (1, 1)
    assert await pview(client, system, "badgesOf", A) == BADGE_FIRST_CONTRIBUTION
    assert await pview(client, system, "hasBadge", A, BADGE_FIRST_CONTRIBUTION) is True
    assert await pview(client, system, "hasBadge", A, BADGE_VALIDATED_10) is False

    # already claimed
    await expect_revert(client, system, dev[1], system.trainer, refund, "AlreadyClaimed")

    # a second account's validation halves A's score
    await add(system, b, t0 + 70, [6, 8], 1)
    await send_at(b, t0 + 131, system.trainer, T(system).encode("refund", [6, 8], 1, t0 + 70))
    assert await pview(client, system, "score", A) == FIXED // 2
    assert await pview(client, system, "scoreFraction", dev[2].address) == (1, 2)


async def test_points_report_rules_and_blocking(client, tx, compiled, actors, dev):
    # feature 10 at -0.6: label 1 is a mistake; one update (+0.5) leaves it wrong, two make it right
    weights = [0] * 10 + [-(6 * FIXED) // 10] + [0] * 4
    system = await deploy_points(client, tx, compiled, weights=weights)
    a, b, c = actors[1], actors[2], actors[3]
    A, B, C = dev[1].address, dev[2].address, dev[3].address
    t0 = await latest_timestamp(client) + 10
    await add(system, a, t0, [10], 1)  # trains: -0.6 -> -0.1, still predicts 0
    await add(system, a, t0 + 1, [12], 0)  # the model agrees (0)
    report = T(system).encode("report", [10], 1, t0, A)

    await expect_revert(client, system, dev[2], system.trainer, report, "NotEnoughTimeHasPassed", args=(1, 60))
    await mine_at(client, t0 + 61)
    await expect_revert(client, system, dev[1], system.trainer, report, "CannotReportOwnContribution")
    await expect_revert(client, system, dev[2], system.trainer, T(system).encode("report", [12], 0, t0 + 1, A),
                        "ModelAgrees", args=(0,))
    await expect_revert(client, system, dev[2], system.trainer, T(system).encode("report", [10], 1, t0, B),
                        "ContributionNotFound")
    # reporting needs no verified contributions (unlike Stakeable's take)
    assert await pview(client, system, "numValid", B) == 0

    r = await send_at(b, t0 + 62, system.trainer, report)
    assert await balance_delta(client, B, r) == -fee(r)
    assert events(P(system), r, "Report", system.incentive) == [{"recipient": B}]
    assert events(P(system), r, "BadgeEarned", system.incentive) == [{"account": B, "badge": BADGE_FIRST_REPORT}]
    assert await pview(client, system, "numReports", B) == 1
    assert await pview(client, system, "totalReports") == 1
    assert await pview(client, system, "badgesOf", B) == BADGE_FIRST_REPORT

    # only the first claim counts
    await expect_revert(client, system, dev[2], system.trainer, report, "AlreadyClaimed")
    await expect_revert(client, system, dev[3], system.trainer, report, "EarlierClaimExists", args=(1,))

    # the model comes round to the label (C's add trains feature 10 to +0.4) ...
    await add(system, c, t0 + 63, [10], 1)
    assert await view(client, T(system), system.trainer, "predict", [10]) == 1
    # ... but the report blocked the author's validation for good, in every later window
    for ts in (t0 + 64, t0 + 125, t0 + 200):
        await mine_at(client, ts)
        await expect_revert(client, system, dev[1], system.trainer, T(system).encode("refund", [10], 1, t0),
                            "EarlierClaimExists", args=(1,))
    # C's own contribution, which the model agrees with, validates normally
    await send_at(c, t0 + 201 + 60, system.trainer, T(system).encode("refund", [10], 1, t0 + 63))
    assert await pview(client, system, "numValid", C) == 1
    # past the owner and any-address waits there is no special branch: still no reporting one's own
    # contribution, and still only when the model disagrees (feature 12 is 0: the model says 0, agrees)
    await expect_revert(client, system, dev[1], system.trainer, T(system).encode("report", [12], 0, t0 + 1, A),
                        "CannotReportOwnContribution")
    await expect_revert(client, system, dev[0], system.trainer, T(system).encode("report", [12], 0, t0 + 1, A),
                        "ModelAgrees", args=(0,))
    assert await client.balance(system.trainer) == 0


async def test_points_validated_contribution_cannot_be_reported(client, tx, compiled, actors, dev):
    system = await deploy_points(client, tx, compiled, weights=[0] * 10 + [-(6 * FIXED) // 10] + [0] * 4)
    a, b = actors[1], actors[2]
    t0 = await latest_timestamp(client) + 10
    await add(system, a, t0, [11], 0)  # model agrees: 0
    await send_at(a, t0 + 60, system.trainer, T(system).encode("refund", [11], 0, t0))
    # train feature 11 up so the model disagrees with the validated contribution
    await add(system, b, t0 + 61, [11], 1)
    assert await view(client, T(system), system.trainer, "predict", [11]) == 1
    await mine_at(client, t0 + 200)
    await expect_revert(client, system, dev[2], system.trainer, T(system).encode("report", [11], 0, t0, dev[1].address),
                        "EarlierClaimExists", args=(1,))


async def test_points_badges_at_every_threshold(client, tx, compiled, actors, dev):
    system = await deploy_points(client, tx, compiled)
    a = actors[4]
    A = dev[4].address
    t0 = await latest_timestamp(client) + 10
    samples = [[2 * i, 2 * i + 2] for i in range(12)]  # even features: the model agrees with 1
    for i, s in enumerate(samples):
        await add(system, a, t0 + i, s, 1)
    earned = []
    for i, s in enumerate(samples[:10]):
        r = await send_at(a, t0 + 100 + i, system.trainer, T(system).encode("refund", s, 1, t0 + i))
        earned += [e["badge"] for e in events(P(system), r, "BadgeEarned", system.incentive)]
    assert earned == [BADGE_FIRST_CONTRIBUTION, BADGE_VALIDATED_10]
    assert await pview(client, system, "badgesOf", A) == BADGE_FIRST_CONTRIBUTION | BADGE_VALIDATED_10

    # 100 and 1000: put the counter just below each threshold (numValid is the mapping at slot 2:
    # slot 0 owner, slot 1 the packed totals), then validate once more.
    slot = int.from_bytes(keccak256(abi_encode(["address", "uint256"], [A, 2])), "big")
    for below, i, badge in ((99, 10, BADGE_VALIDATED_100), (999, 11, BADGE_VALIDATED_1000)):
        await client.call("anvil_setStorageAt", system.incentive, hex(slot), "0x" + below.to_bytes(32, "big").hex())
        assert await pview(client, system, "numValid", A) == below
        assert await pview(client, system, "badgesOf", A) == expected_badges(below, 0)
        r = await send_at(a, t0 + 200 + i, system.trainer, T(system).encode("refund", samples[i], 1, t0 + i))
        assert [e["badge"] for e in events(P(system), r, "BadgeEarned", system.incentive)] == [badge]
        assert await pview(client, system, "badgesOf", A) == expected_badges(below + 1, 0)
    assert await pview(client, system, "badgesOf", A) == (BADGE_FIRST_CONTRIBUTION | BADGE_VALIDATED_10
                                                          | BADGE_VALIDATED_100 | BADGE_VALIDATED_1000)
    assert await pview(client, system, "hasBadge", A, 0) is False
    assert await pview(client, system, "badgesOf", dev[5].address) == 0


# ---- Stakeable: paths the trainer tests leave out ------------------------------------------------


async def test_stakeable_waits_must_be_ordered(client, tx, compiled):
    errors = ContractABI(compiled["Stakeable"].abi).errors
    for waits, ok in (((61, 60, 180), False), ((60, 181, 180), False), ((60, 60, 60), True)):
        code = compiled["Stakeable"].bytecode + abi_encode(["uint256"] * 4, [*waits, 10**9])
        try:
            await client.call("eth_call", {"from": tx.account.address, "data": "0x" + code.hex()}, "latest")
            reason = None
        except RpcError as e:
            reason = decode_revert(e.data if isinstance(e.data, str) else None, errors)
        assert reason == (None if ok else "WaitsOutOfOrder()"), waits


async def test_stakeable_partly_taken_deposit_is_refunded_later_and_a_taken_one_is_not(client, tx, compiled,
                                                                                       actors, dev):
    from conftest import MAX_DEPOSIT

    # feature 10 at -0.6: A's label 1 stays wrong after A's own update (-0.1) and right after one more
    weights = [FIXED] * 10 + [-(6 * FIXED) // 10, -20 * FIXED] + [FIXED] * 4
    system = await deploy_small(client, tx, compiled, weights=weights)
    S = system.abis["Stakeable"]
    a, b, c, d = actors[1], actors[2], actors[3], actors[4]
    A, B = dev[1].address, dev[2].address
    t0 = await latest_timestamp(client) + 10

    async def add_paid(who, ts, x, y):
        r = await send_at(who, ts, system.trainer, T(system).encode("addData", x, y), MAX_DEPOSIT)
        return read_add_data_events(r, T(system), system.trainer)[0]["cost"]

    # B and C each verify one good contribution: B's share of a take is half a deposit
    await add_paid(b, t0, [0], 1)
    await add_paid(c, t0 + 1, [1], 1)
    await send_at(b, t0 + 60, system.trainer, T(system).encode("refund", [0], 1, t0))
    await send_at(c, t0 + 61, system.trainer, T(system).encode("refund", [1], 1, t0 + 1))
    dep = await add_paid(a, t0 + 100, [10], 1)
    dep_taken = await add_paid(a, t0 + 101, [11], 1)

    r = await send_at(b, t0 + 160, system.trainer, T(system).encode("report", [10], 1, t0 + 100, A))
    assert events(S, r, "Report", system.incentive) == [{"recipient": B, "amount": dep // 2}]
    # the model comes round to A's label: A gets the rest back and becomes verified
    await add_paid(d, t0 + 161, [10], 1)
    assert await view(client, T(system), system.trainer, "predict", [10]) == 1
    r = await send_at(a, t0 + 162, system.trainer, T(system).encode("refund", [10], 1, t0 + 100))
    assert events(S, r, "Refund", system.incentive) == [{"recipient": A, "amount": dep - dep // 2}]
    assert await view(client, S, system.incentive, "numValid", A) == 1

    # a deposit taken whole (after the any-address wait) leaves nothing to refund
    await send_at(d, t0 + 101 + 180, system.trainer, T(system).encode("report", [11], 1, t0 + 101, A))
    await expect_revert(client, system, dev[1], system.trainer, T(system).encode("refund", [11], 1, t0 + 101),
                        "NothingLeftToClaim")
    assert dep_taken > 0
