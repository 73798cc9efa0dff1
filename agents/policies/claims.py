"""The claim loop every built-in policy runs: what a participant maximising its own money claims, when.

Facts from the reference simulation's agent (microsoft/0xDeCA10B, simulation/decai/simulation/
simulate.py), and how this loop follows or departs from them:
1. The reference agent, each time it wakes, walks the contributions not yet fully claimed in order
   of addition. Here each agent keeps its own view of every public contribution (the trainer's
   AddData logs) and of its own, and acts on those whose moment has come.
2. Own contribution past the refund wait: the reference tries `refund` (the contract rejects it if
   the model disagrees). Here the agent first asks the model with a free `predict` call and sends
   the refund only when it agrees, so a refused refund costs no gas; if the model disagrees it asks
   again at each step of a shared grid of chain time (`recheck_s`), until the last window opens.
3. Someone else's contribution past the refund wait (looked at every `report_every_s`, by default a
   quarter of the window between the refund wait and the any-address wait): the reference tries `report` (rejected unless
   the model disagrees and the reporter has verified contributions). Here: a free `predict`, the
   remaining deposit and the agent's verified count first; it reports when the model disagrees, the
   remainder is above 0, it has verified contributions (the contract pays
   deposit * numValid / totalGoodDataCount, at most the remainder) and the reward exceeds the fee.
   A reporter takes once per contribution before the last window (the contract refuses a second).
4. Past the any-address window: the reference takes the entire remainder of anything, its own
   included. Here too, own contributions first (at the window's opening: a refund if the model
   agrees, since it also counts as verified, else a take-all `report`); others' after
   `take_all_grace_s` more, so the author, who wakes for its own deposit, normally takes it first
   and the others find nothing left instead of racing it into reverted transactions.
5. The reference removes a contribution from its list once nothing is claimable; here a
   contribution is done once its remainder reads 0, or a claim reverts for a reason that cannot
   change (already claimed, nothing left). Any other failure (dropped, out of gas, the model
   changed its mind in between) is retried at the next moment; a take-all is tried at most
   `max_attempts` times so that a contribution no one can ever claim does not keep the run going.
6. The reference sends transactions for free. Here each claim pays gas, so a claim must be worth
   more than its fee (`min_reward_over_fee`), and `next_wake` says when the next claim moment is, so
   the orchestrator can skip idle days: the refund wait, the next recheck, the last window.

Under Points (no deposits) the same loop validates the agent's own contributions (`refund`) when
the model agrees, up to the last window, and, with `points_reports`, reports rivals the model
rejects just after their wait ends (the first claim blocks their validation; it pays nothing).
A prediction market has no claims (its shard collects at the end): the loop stays idle.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from ..window import Window
from .base import (
    FINISHED,
    Action,
    Contribution,
    ContributionState,
    Observation,
    PublicContribution,
    Refund,
    Report,
    Wants,
)

Key = tuple[str, int, int, tuple[int, ...]]
REPORT_GAS = 120_000  # typical gas of a report or refund: what a claim's fee is weighed with
HOUR = 3600
# Reverts that a later attempt cannot turn into a success.
FINAL_REVERTS = ("AlreadyClaimed", "NothingLeftToClaim", "EarlierClaimExists", "CannotTakeOwnDeposit",
                 "CannotReportOwnContribution", "ContributionNotFound")


@dataclass
class ClaimRules:
    refund: bool = True  # claim its own deposits back when the model agrees
    report: bool = True  # take from others' deposits the model rejects (within its verified count)
    take_all: bool = True  # take whatever is left once the any-address window opens
    points_reports: bool = False  # under Points: report rivals the model rejects
    recheck_s: int | None = None  # None: the mechanism's refund wait, between 1 minute and 6 hours
    report_every_s: int | None = None  # None: a quarter of the report window, at least recheck_s
    give_up_s: int | None = None  # stop asking for its own refund this long after adding (take-all still)
    take_all_grace_s: int = 60  # others' take-all waits this long after the author's
    rival_window_s: int = 600  # Points: rivals are looked at this long after their wait ends
    max_attempts: int = 5  # take-all attempts per contribution
    min_reward_over_fee: int = 0  # wei a claim must bring beyond its fee


def own_key(address: str, c: Contribution) -> Key:
    return (address, c.added_time, c.label, c.data)


@dataclass
class ClaimLoop:
    COLLECT_MIN: ClassVar[int] = 256
    rules: ClaimRules = field(default_factory=ClaimRules)
    # Greedy raises its tip for valuable claims: (obs, reward) -> tip or None for the default.
    tip_for: Callable[[Observation, int], int | None] | None = None

    def __post_init__(self) -> None:
        self._checked: dict[Key, int] = {}  # when the model (or the remainder) was last asked about it
        self._took: set[Key] = set()  # took its share before the last window: the contract refuses another
        self._done: set[Key] = set()  # nothing more to claim, ever
        self._attempts: dict[Key, int] = {}
        self._valid: int | None = None  # its verified count, as last read
        self._due_own: list[Contribution] = []
        self._due_others: list[PublicContribution] = []
        self.reasons: dict[str, int] = {}  # why claims were not sent (counts), for the summary
        # Others' contributions by their next moment: each block touches only those due, not the whole
        # public list (thousands of contributions times every agent of the shard, every block).
        self._heap: list[tuple[int, int, Key]] = []
        self._sched: dict[Key, int] = {}
        # Others' contributions it may still claim. Settled ones leave (with what was known of them),
        # so a long run holds only what is still in play.
        self._by_key: dict[Key, PublicContribution] = {}
        # Reportable but for its verified count, which is 0: scheduled again once it has one.
        self._parked: dict[Key, PublicContribution] = {}
        self._ingested = 0
        self._dirty: set[Key] = set()
        self._unpark = False
        self._seq = 0  # tie-breaker of equal moments (an int: the policy is pickled in snapshots)
        self._collect_at = self.COLLECT_MIN  # size of the per-key memos at which settled keys are swept out

    # ---- moments ---------------------------------------------------------------------------------

    def recheck_s(self, obs: Observation) -> int:
        if self.rules.recheck_s:
            return int(self.rules.recheck_s)
        return min(max(obs.mechanism.refund_wait, 60), 6 * HOUR)

    def report_every_s(self, obs: Observation) -> int:
        """How often others' contributions are looked at in the report window. Each look costs a
        `predict` and a remainder read per contribution (node time, shared by the shard's agents),
        and a take pays the same whenever in the window it lands: a quarter of the window by default."""
        if self.rules.report_every_s:
            return int(self.rules.report_every_s)
        m = obs.mechanism
        return max(self.recheck_s(obs), (m.any_address_claim_wait - m.refund_wait) // 4, 1)

    @staticmethod
    def _grid_ceil(t: int, step: int) -> int:
        # Moments on a grid shared by every agent: they all look in the same block, so the free calls
        # are shared and idle time between grid points can be skipped.
        return -(-t // step) * step

    def _own_moment(self, obs: Observation, c: Contribution) -> int | None:
        """When its own contribution should next be looked at (None: never again)."""
        m = obs.mechanism
        key = own_key(obs.address, c)
        if key in self._done or c.state is not ContributionState.ADDED or c.abandoned:
            return None
        points = m.claims == "points"
        if m.claims == "none" or (not points and c.deposit == 0):
            return None
        opens = c.added_time + m.refund_wait
        last_window = c.added_time + m.any_address_claim_wait
        last = self._checked.get(key)
        if points:
            if not self.rules.refund or obs.time >= self._points_horizon(obs, c):
                return None
            return opens if last is None else max(opens, self._grid_ceil(last + 1, self.recheck_s(obs)))
        if obs.time >= last_window and self.rules.take_all:
            if last is not None and last >= last_window and self._attempts.get(key, 0) >= self.rules.max_attempts:
                return None
            return last_window if last is None or last < last_window else last + obs.block_time
        gave_up = self.rules.give_up_s is not None and obs.time >= c.added_time + int(self.rules.give_up_s)
        if not self.rules.refund or gave_up:
            return last_window if self.rules.take_all else None
        nxt = opens if last is None else max(opens, self._grid_ceil(last + 1, self.recheck_s(obs)))
        return min(nxt, last_window) if self.rules.take_all else nxt

    def _points_horizon(self, obs: Observation, c: Contribution) -> int:
        """Points has no take-all: validation is retried until `give_up_s`, else until the last window
        (at least twice the refund wait, since a Points system may set all three waits equal)."""
        m = obs.mechanism
        if self.rules.give_up_s is not None:
            return c.added_time + int(self.rules.give_up_s)
        return c.added_time + max(m.any_address_claim_wait, 2 * m.refund_wait)

    def _other_moment(self, obs: Observation, c: PublicContribution, assume_valid: bool = False) -> int | None:
        m = obs.mechanism
        key = c.key
        if key in self._done or c.author == obs.address or m.claims == "none":
            return None
        last = self._checked.get(key)
        opens = c.added_time + m.refund_wait
        if m.claims == "points":
            if not self.rules.points_reports or last is not None:
                return None
            close = opens + self.rules.rival_window_s
            return opens if obs.time <= close else None
        if c.deposit == 0:
            return None
        take_all = c.added_time + m.any_address_claim_wait + self.rules.take_all_grace_s
        take = None
        if self.rules.report and key not in self._took and (self._valid is None or self._valid > 0 or assume_valid):
            step = self.report_every_s(obs)
            take = self._grid_ceil(opens, step) if last is None else max(opens, self._grid_ceil(last + 1, step))
            if take >= take_all - self.rules.take_all_grace_s:
                take = None
        if obs.time >= take_all and self.rules.take_all:
            if self._attempts.get(key, 0) >= self.rules.max_attempts:
                return None
            return take_all if last is None or last < take_all else last + obs.block_time
        if not self.rules.take_all:
            return take
        return take_all if take is None else min(take, take_all)

    # ---- the policy interface --------------------------------------------------------------------

    def wants(self, obs: Observation) -> Wants:
        own = [c for c in obs.contributions
               if (t := self._own_moment(obs, c)) is not None and t <= obs.time
               and own_key(obs.address, c) not in obs.claims_in_flight]
        for c in self._due_others:  # left over from a block whose decision never came
            self._schedule(obs, c)
        due = self._due_public(obs)
        others = [c for c in due if c.key not in obs.claims_in_flight]
        for c in due:
            if c.key in obs.claims_in_flight:
                self._schedule(obs, c)
        self._due_own, self._due_others = own, others
        w = Wants()
        if not own and not others:
            # The verified count decides whether reports are worth a look: read it now and then.
            w.num_valid = self._valid is None and obs.mechanism.claims == "deposit"
            return w
        w.predictions = {c.data for c in own} | {c.data for c in others}
        if obs.mechanism.claims == "points":
            w.claimed = [c for c in others]
            return w
        w.claimable = [_as_public(obs.address, c) for c in own] + others
        w.num_valid = True
        return w

    def decide(self, obs: Observation, slots: int) -> list[Action]:
        """Claims due now, at most `slots` of them."""
        try:
            return self._decide(obs, slots)
        finally:
            for c in self._due_others:
                self._schedule(obs, c)
            self._due_others = []

    def _decide(self, obs: Observation, slots: int) -> list[Action]:
        if obs.num_valid is not None:
            self._set_valid(obs.num_valid)
        out: list[Action] = []
        m = obs.mechanism
        for c in self._due_own:
            pc = _as_public(obs.address, c)
            left = obs.claimable.get(pc.key)
            agrees = obs.predictions.get(c.data)
            if agrees is None or (m.claims != "points" and left is None):
                self._count("unanswered")
                continue  # the free call went unanswered: look again next block
            self._checked[pc.key] = obs.time
            if m.claims != "points" and left == 0:
                self._done.add(pc.key)
                continue
            if len(out) >= slots:
                self._count("in-flight limit")
                continue
            past_last = obs.time >= c.added_time + m.any_address_claim_wait
            gave_up = self.rules.give_up_s is not None and obs.time >= c.added_time + int(self.rules.give_up_s)
            if agrees == c.label and self.rules.refund and (not gave_up or past_last):
                out.append(Refund(c.id))
            elif past_last and self.rules.take_all and m.claims != "points":
                self._attempts[pc.key] = self._attempts.get(pc.key, 0) + 1
                out.append(Report(pc, tip=self._tip(obs, left or 0)))
        for c in self._due_others:
            agrees = obs.predictions.get(c.data)
            if m.claims == "points":
                if agrees is None or c.key not in obs.claimed:
                    self._count("unanswered")
                    continue
                self._checked[c.key] = obs.time
                if agrees != c.label and not obs.claimed[c.key] and len(out) < slots:
                    out.append(Report(c))
                continue
            left = obs.claimable.get(c.key)
            if left is None:
                self._count("unanswered")
                continue
            self._checked[c.key] = obs.time
            if left == 0:
                self._done.add(c.key)
                continue
            age = obs.time - c.added_time
            if age >= m.any_address_claim_wait + self.rules.take_all_grace_s:
                reward = left
            elif agrees is None:
                self._count("unanswered")
                continue
            else:
                reward = self.reward(obs, c, left, agrees)
                if reward <= 0:
                    continue
            tip = self._tip(obs, reward)
            if reward - REPORT_GAS * (obs.base_fee + (tip or 10**9)) <= self.rules.min_reward_over_fee:
                self._count("fee above reward")
                if age >= m.any_address_claim_wait:
                    self._done.add(c.key)  # dust no one would pay gas for: it stays in the trainer
                continue
            if len(out) >= slots:
                self._count("in-flight limit")
                continue
            if age >= m.any_address_claim_wait:
                self._attempts[c.key] = self._attempts.get(c.key, 0) + 1
            out.append(Report(c, tip=tip))
        return out

    def reward(self, obs: Observation, c: PublicContribution, left: int, prediction: int) -> int:
        """What a take of someone else's contribution in the report window pays now (0: it would revert)."""
        if prediction == c.label:
            return 0  # the model agrees: the contract refuses the take
        valid, total = obs.num_valid or 0, obs.total_good or 0
        if valid == 0 or total == 0:
            self._count("no verified contribution")
            return 0
        if obs.mechanism.report_share_bps is not None:  # a fixed share, whatever the verified counts
            share = c.deposit * obs.mechanism.report_share_bps // 10_000
        else:
            share = c.deposit * valid // total
        return left if share == 0 or share > left else share

    def next_moment(self, obs: Observation) -> int:
        """The earliest chain time a claim may be due; FINISHED when nothing could ever be claimed."""
        moments = [t for c in obs.contributions if (t := self._own_moment(obs, c)) is not None]
        self._sync(obs)
        self._collect(obs)
        while self._heap and self._sched.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # stale entry
        if self._heap:
            moments.append(self._heap[0][0])
        # The next contribution of others still to be taken in, looked for among a bounded number of
        # entries (past the bound, wake at that entry's wait to look further: never finish early).
        for n, c in enumerate(obs.public[self._ingested:self._ingested + 64]):
            if n == 63 or (c.author != obs.address and self._other_moment(obs, c) is not None):
                moments.append(c.added_time + obs.mechanism.refund_wait)
                break
        # A contribution of its own still in flight or being refunded may end as a claim later.
        if any(c.state in (ContributionState.SUBMITTED, ContributionState.REFUND_SENT) for c in obs.contributions):
            return obs.time
        return min(moments) if moments else FINISHED

    def settled(self, key: Key, action: str, ok: bool, reason: str, obs_time: int, last_window: bool) -> None:
        """A claim of this agent reached a final status (told by the shard)."""
        self._dirty.add(key)
        if ok:
            if action == "refund":
                self._set_valid((self._valid or 0) + 1)  # one more verified contribution
            if action == "report" and not last_window:
                self._took.add(key)
            elif action == "report" or action == "refund":
                self._done.add(key)
            return
        if any(r in reason for r in FINAL_REVERTS):
            self._done.add(key)

    # ---- the schedule of others' contributions -----------------------------------------------------

    def looks_at_others(self) -> bool:
        """Whether others' contributions can matter to it (its rules report or take)."""
        r = self.rules
        return r.report or r.take_all or r.points_reports

    def public_cursor(self) -> int | None:
        """The lowest index of the public list it may still read (None: it never reads it): what it
        needs of an entry below is in its own schedule."""
        return self._ingested if self.looks_at_others() else None

    def _set_valid(self, n: int) -> None:
        if self._valid == 0 and n > 0:
            self._unpark = True  # report moments skipped while it had no verified data count again
        self._valid = n

    def _sync(self, obs: Observation) -> None:
        """Take in contributions whose refund wait has passed (nothing can be claimed before; the list
        is in order of addition, so this is a cursor, and a run that ends before any wait passes
        never pays for it). The list only grows, except when a reorg cuts it: what came from the cut
        blocks leaves the schedule, and the cursor goes back to the cut."""
        pub = obs.public
        n = len(pub)
        if n < self._ingested:
            self._cut(n, isinstance(pub, Window))
        if self._unpark:
            self._unpark = False
            waiting = sorted([*self._by_key.values(), *self._parked.values()], key=_order)
            self._parked = {}
            for c in waiting:
                self._schedule(obs, c)
        wait = obs.mechanism.refund_wait
        # Entries below the list's start were forgotten by the shard: none of its agents needs them
        # (an agent added to a running shard starts there).
        i = max(self._ingested, getattr(pub, "start", 0))
        if not self.looks_at_others():
            # Nothing of others' can be claimed by it (every moment would be None): skip the walk,
            # which costs every agent of the shard a call per contribution of the run.
            self._ingested = max(n, self._ingested)
        else:
            walk = pub.enumerate_from(i) if isinstance(pub, Window) else enumerate(pub[i:n], i)
            for j, c in walk:
                if c.added_time + wait > obs.time:
                    break
                self._schedule(obs, c)
                i = j + 1
            self._ingested = max(i, self._ingested)
        for key in self._dirty:
            c = self._by_key.get(key)
            if c is not None:
                self._schedule(obs, c)
        self._dirty.clear()

    def _cut(self, n: int, indexed: bool) -> None:
        """A reorg cut the public list to `n` entries. A shard's list (a Window) numbers its entries:
        only those at or past the cut leave. A plain list's do not: everything is taken in again."""
        if not indexed:
            self._heap, self._sched, self._by_key, self._parked, self._ingested = [], {}, {}, {}, 0
            return
        for memo in (self._by_key, self._parked):
            for key in [k for k, c in memo.items() if c.index >= n]:
                del memo[key]
                self._sched.pop(key, None)  # its heap entries are stale now
        self._ingested = n

    def _collect(self, obs: Observation) -> None:
        """Sweep the per-key memos of contributions settled for good: own ones the shard has forgotten,
        others' ones out of the schedule (nothing looks at them again). Amortised: only when the
        memos have doubled since the last sweep."""
        if len(self._checked) + len(self._done) + len(self._attempts) + len(self._took) <= self._collect_at:
            return
        m = obs.mechanism
        for key in [k for k, c in self._parked.items() if c.added_time + m.any_address_claim_wait <= obs.time]:
            del self._parked[key]  # its report window closed: only a take-all could follow, not scheduled
        live = {own_key(obs.address, c) for c in obs.contributions}
        live.update(self._by_key, self._parked, obs.claims_in_flight)
        for memo in (self._checked, self._attempts):
            for key in [k for k in memo if k not in live]:
                del memo[key]
        self._done &= live
        self._took &= live
        size = len(self._checked) + len(self._done) + len(self._attempts) + len(self._took)
        self._collect_at = max(self.COLLECT_MIN, 2 * size)

    def _schedule(self, obs: Observation, c: PublicContribution) -> None:
        key = c.key
        t = self._other_moment(obs, c)
        if t is None:
            self._sched.pop(key, None)
            self._by_key.pop(key, None)
            if self._valid == 0 and self._other_moment(obs, c, assume_valid=True) is not None:
                self._parked[key] = c
            return
        if self._parked:
            self._parked.pop(key, None)
        self._by_key[key] = c
        if self._sched.get(key) != t:
            self._sched[key] = t
            self._seq += 1
            heapq.heappush(self._heap, (t, self._seq, key))

    def _due_public(self, obs: Observation) -> list[PublicContribution]:
        self._sync(obs)
        due: list[PublicContribution] = []
        while self._heap and self._heap[0][0] <= obs.time:
            t, _, key = heapq.heappop(self._heap)
            if self._sched.get(key) != t:
                continue  # stale
            c = self._by_key[key]
            now = self._other_moment(obs, c)
            if now is None:
                self._schedule(obs, c)  # leaves the schedule (or waits for a verified count)
            elif now > obs.time:
                self._sched[key] = now
                self._seq += 1
                heapq.heappush(self._heap, (now, self._seq, key))
            else:
                del self._sched[key]  # rescheduled once decided on
                due.append(c)
        due.sort(key=_order)  # order of addition, as the reference walks them
        return due

    def _tip(self, obs: Observation, reward: int) -> int | None:
        return self.tip_for(obs, reward) if self.tip_for is not None else None

    def _count(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def _order(c: PublicContribution) -> tuple[int, int, int]:
    """Order of addition: block, then place in the shard's list (-1 outside a shard's list)."""
    return (c.block, c.added_time, c.index)


def _as_public(address: str, c: Contribution) -> PublicContribution:
    return PublicContribution(address, c.data, c.label, c.added_time, c.deposit, -1, c.add_tx)
