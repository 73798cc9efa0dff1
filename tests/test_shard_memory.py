"""Bounded shard memory: the forgetting list (agents/window.py), and a shard on a real node that forgets
settled contributions (its agents' own, the public list, its claim loops' memos) while sending
exactly the transactions a shard that keeps everything sends."""

from __future__ import annotations

import pickle

import pytest
from conftest import deploy_small
from test_wallet_shard import fund, latest, make_core

from agents import shard_memory
from agents.policies.base import Contribution, ContributionState, Mechanism, Observation, PublicContribution
from agents.policies.claims import ClaimLoop, ClaimRules, own_key
from agents.shard import AgentSpec, ShardCore
from agents.window import ForgottenError, Window
from contracts.transact import Transactor
from orchestrator.nodes import mine, set_mining

# ---- the list ------------------------------------------------------------------------------------


def test_window_keeps_absolute_indices_after_forgetting_its_head():
    w: Window[int] = Window(range(10))
    assert len(w) == 10 and w[3] == 3 and w[-1] == 9 and w[2:5] == [2, 3, 4]
    assert w.forget_before(4) == 4
    assert (len(w), w.start, w.kept) == (10, 4, 6)
    assert w[6] == 6 and w[-1] == 9 and list(w) == [4, 5, 6, 7, 8, 9]
    assert w[0:6] == [4, 5]  # a cursor older than the window reads what is kept
    assert w[8:] == [8, 9] and w[4:10:2] == [4, 6, 8]
    with pytest.raises(ForgottenError, match="item 2 was forgotten"):
        w[2]
    with pytest.raises(IndexError):
        w[10]
    w.append(10)
    assert len(w) == 11 and w[10] == 10
    assert w.forget_before(2) == 0  # below the start: nothing more to drop


def test_window_forgets_single_items_and_trims_a_settled_head():
    w: Window[str] = Window(["a", "b", "c", "d", "e"])
    w.forget(2)
    assert list(w) == ["a", "b", "d", "e"] and w.kept == 4 and len(w) == 5
    assert w.get(2) is None and w.get(3) == "d" and w.get(9) is None
    assert w[1:4] == ["b", "d"]
    with pytest.raises(ForgottenError):
        w[2]
    w.forget(0)
    w.forget(1)  # the head up to "d" is settled: the start moves past it
    assert w.start == 3 and list(w) == ["d", "e"] and len(w) == 5
    w.forget(1)  # already gone: nothing happens
    clone = pickle.loads(pickle.dumps(w))
    assert list(clone) == ["d", "e"] and len(clone) == 5 and clone.start == 3 and clone.kept == 2
    w.truncate(4)
    assert list(w) == ["d"] and len(w) == 4
    with pytest.raises(ForgottenError, match="already forgotten"):
        w.truncate(1)


def test_window_holes_survive_pickling():
    w: Window[int] = Window(range(6))
    w.forget(3)
    clone = pickle.loads(pickle.dumps(w))
    assert list(clone) == [0, 1, 2, 4, 5] and clone.kept == 5 and clone.get(3) is None
    clone.forget(0)
    assert clone.kept == 4


# ---- a shard on the node -------------------------------------------------------------------------


def specs() -> list[AgentSpec]:
    """Honest agents that sometimes mislabel (so others report and take), and two that claim only
    their own deposits."""
    out = []
    for i in range(6):
        params = {"rate": 0.03, "max_in_flight": 4, "mistake_rate": 0.25, "recheck_s": 30, "report_every_s": 30}
        if i >= 4:
            # Without a take-all, a rejected contribution is asked about until it gives up.
            params.update({"report": False, "take_all": False, "give_up_s": 300})
        samples = [((2 * (j % 30), 2 * ((j + 1 + i) % 30) + (j // 30)), 1) for j in range(14)]
        out.append(AgentSpec(i, "honest", "honest", params, samples))
    return out


async def run_shard(anvil, client, compiled, chain_id, system, *, stream: bool) -> tuple[list, ShardCore]:
    """Run the funded agents to the end (10 s blocks, driven); the transactions (hash, action, status)
    in the order sent, and the shard."""
    core = make_core(anvil, chain_id, compiled, system, specs(), seed=29)
    core.config.stream_ledger = stream
    core.config.reorg_depth = 2
    core.config.block_time = 10
    core.ledger.stream = stream
    rows: dict[str, tuple[str, str]] = {}
    order: list[str] = []

    def take(cols: dict | None) -> None:
        for h, action, status in zip(*(cols[k] for k in ("tx_hash", "action", "status"))) if cols else ():
            if h not in rows:
                order.append(h)
            rows[h] = (action, status)

    try:
        await core.start()
        for _ in range(300):
            info = await latest(client)
            report = await core.tick(info)
            assert report.errors == [], report.errors
            take(report.ledger)
            if report.finished:
                break
            if info.number > 90 and not core.settling:
                await core.stop_acting(settle=True)
            # Idle time up to the next claim moment is skipped, as the run loop does.
            wake = report.next_wake if report.next_wake and report.in_flight == 0 else 0
            # anvil does not revert its next base fee with a snapshot: pinned, so both runs see the same.
            await client.call("anvil_setNextBlockBaseFeePerGas", hex(10**9))
            await mine(client, max(info.timestamp + 10, wake))
        assert report.finished, "the agents did not finish"
        take(await core.finalize((await latest(client)).number))
    finally:
        await core.close()
    return [(h, *rows[h]) for h in order], core


async def test_a_streaming_shard_forgets_what_is_settled_and_sends_the_same(anvil, client, compiled, dev, chain_id,
                                                                             monkeypatch):
    monkeypatch.setattr(ClaimLoop, "COLLECT_MIN", 8)  # sweep the memos often in a short run
    monkeypatch.setattr(shard_memory, "PUBLIC_MIN_KEPT", 4)  # and look at the public list early
    system = await deploy_small(client, Transactor(client, dev[0], chain_id), compiled)
    probe = make_core(anvil, chain_id, compiled, system, specs(), seed=29)
    addresses = await probe.start()
    await probe.close()
    await fund(client, dev, chain_id, addresses)
    await set_mining(client, "driven")
    try:  # both runs start from this state, and mine at the same chain times
        snap = await client.call("evm_snapshot")
        keeping, kept_core = await run_shard(anvil, client, compiled, chain_id, system, stream=False)
        assert await client.call("evm_revert", snap)
        forgetting, core = await run_shard(anvil, client, compiled, chain_id, system, stream=True)
    finally:
        await set_mining(client, "auto")

    actions = {a for _, a, _ in keeping}
    assert {"add", "refund", "report"} <= actions, actions  # the whole game was played
    # The same seed gives the same transactions, in the same order, whatever the shard forgot.
    assert [r[0] for r in forgetting] == [r[0] for r in keeping]
    assert forgetting == keeping

    # What the keeping shard still holds; the forgetting one dropped most of it.
    total_own = sum(len(a.contributions) for a in core.agents)
    assert total_own == sum(len(a.contributions) for a in kept_core.agents) > 40
    assert sum(a.contributions.kept for a in kept_core.agents) == total_own
    own_kept = sum(a.contributions.kept for a in core.agents)
    refunded_or_failed = sum(1 for a in kept_core.agents for c in a.contributions
                             if c.state.value in ("refunded", "failed"))
    assert own_kept <= total_own - refunded_or_failed + 6, (own_kept, total_own, refunded_or_failed)
    assert kept_core.public.start == 0 and core.public.start > 0
    assert core.public.kept < len(core.public) // 2, (core.public.kept, len(core.public))
    # Every index an agent may still read is kept.
    assert all(a.policy.public_needed_from() >= core.public.start for a in core.agents)
    # The claim loops' per-contribution memos hold, beyond the last sweep's doubling, only keys still
    # in play: its own contributions kept, others' still scheduled.
    for a in core.agents:
        loop = a.policy.claims
        live = {(a.wallet.address, c.added_time, c.label, c.data) for c in a.contributions}
        live |= set(loop._by_key) | set(loop._parked)
        memo = set(loop._checked) | loop._done | set(loop._attempts) | loop._took
        assert len(memo) <= max(ClaimLoop.COLLECT_MIN, 2 * len(live)) + 2 * len(live), (len(memo), len(live))
    seen = sum(len(a.policy.claims._checked) for a in kept_core.agents)
    assert sum(len(a.policy.claims._checked) for a in core.agents) < seen


# ---- the claim loop's own memory (no node: observations built by hand) ----------------------------

ME, OTHER = "0x" + "a" * 40, "0x" + "b" * 40
MECH = Mechanism(kind="stakeable", cost_weight=1, refund_wait=60, owner_claim_wait=120, any_address_claim_wait=180)


def observe(time: int, public: Window[PublicContribution], **kw) -> Observation:
    return Observation(block=time, time=time, base_fee=0, block_time=1, mechanism=MECH, last_update=0, address=ME,
                       in_flight=0, spent=0, contributions=kw.pop("contributions", Window()), public=public, **kw)


def other(i: int, t: int = 1_000, index: int | None = None) -> PublicContribution:
    """Someone else's contribution; as a shard's list would hold it at `index` (default: i)."""
    return PublicContribution(OTHER, (i,), 1, t, 10**15, t, f"0x{i:064x}", i if index is None else index)


def test_reports_wait_for_a_verified_count_without_replaying_the_list():
    loop = ClaimLoop(ClaimRules(report=True, take_all=False, report_every_s=10))
    public: Window[PublicContribution] = Window([other(i) for i in range(3)])
    loop.settled(("x", 0, 0, ()), "noop", False, "", 0, False)  # nothing: an unknown key is ignored
    loop._set_valid(0)
    assert loop.next_moment(observe(1_060, public)) > 1_060 or not loop._sched  # nothing to report yet
    assert len(loop._parked) == 3 and not loop._by_key
    # The shard forgets the list's head: the parked reports do not need it.
    public.forget_before(3)
    loop._set_valid(2)  # a refund verified: the parked ones come back into the schedule
    t = loop.next_moment(observe(1_061, public))
    assert t <= 1_070 and not loop._parked and len(loop._by_key) == 3
    w = loop.wants(observe(1_070, public))
    assert [c.data for c in w.claimable] == [(0,), (1,), (2,)]  # in order of addition


def test_a_reorg_cut_drops_only_what_came_from_the_cut_blocks():
    loop = ClaimLoop(ClaimRules(report=True, take_all=True))
    public: Window[PublicContribution] = Window([other(i, 1_000 + i) for i in range(5)])
    loop.next_moment(observe(1_100, public))
    assert loop.public_cursor() == 5 and len(loop._by_key) == 5
    public.truncate(3)
    loop.next_moment(observe(1_101, public))
    assert loop.public_cursor() == 3 and sorted(c.data for c in loop._by_key.values()) == [(0,), (1,), (2,)]
    public.append(other(9, 1_010, index=3))
    loop.next_moment(observe(1_102, public))
    assert loop.public_cursor() == 4 and {c.index for c in loop._by_key.values()} == {0, 1, 2, 3}


def test_memos_of_settled_contributions_are_swept(monkeypatch):
    monkeypatch.setattr(ClaimLoop, "COLLECT_MIN", 4)
    loop = ClaimLoop(ClaimRules(report=False, take_all=False))
    assert loop.public_cursor() is None  # it never reads others' contributions: the shard may forget them all
    mine = [Contribution(i, (i,), 1, ContributionState.REFUNDED, added_time=900 + i) for i in range(40)]
    for c in mine:
        key = own_key(ME, c)
        loop._checked[key] = 1_000
        loop._done.add(key)
    own: Window[Contribution] = Window(mine)
    for c in mine[:36]:
        own.forget(c.id)  # the shard forgot them (their refunds settled deep)
    loop.next_moment(observe(1_001, Window(), contributions=own))
    assert set(loop._checked) == {own_key(ME, c) for c in mine[36:]} == loop._done
    # The next sweep waits until the memos have doubled: amortised O(1) per claim.
    assert loop._collect_at == 2 * (4 + 4)


def test_window_walks_from_a_cursor_with_absolute_indices():
    w: Window[str] = Window(["a", "b", "c", "d", "e"])
    w.forget_before(1)
    w.forget(3)
    assert list(w.enumerate_from(0)) == [(1, "b"), (2, "c"), (4, "e")]
    assert list(w.enumerate_from(4)) == [(4, "e")] and list(w.enumerate_from(5)) == []
