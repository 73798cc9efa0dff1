"""Attacks that use the chain itself: fees, congestion, deadlines and identities.

`chain_attack` is the adversarial policy (every attack of agents/policies/adversarial.py stays
available under the same `attack` key) plus three attacks that only a chain with a fee market,
deadlines and cheap identities allows. All of them spend within `budget`: the shard refuses any
transaction whose worst case (value + gas limit * max fee) would take spending past it. `budget` is
the attacker's total over its `identities` wallets: run the group with `count` equal to
`identities` (`dcai attack-search` sets the count when it samples `identities`); each wallet then
spends at most `budget / identities`.

* `deadline_congestion`: reads the deadlines of others' contributions from the mechanism's public
  waits and the contributions it observes (`added_time + refund_wait`: the refund window opens and
  the report window with it; `added_time + any_address_claim_wait`: the take-all), and floods the
  chain with gas-heavy transactions that change nothing (`predict` sent as a transaction) at a
  priority fee of `fee_bid` from `lead_s` before each deadline until `hold_s` after it: the base
  fee climbs 12.5% per full block, so honest claims priced for the old base fee wait in the pool
  or are dropped, and miss their window. With `snipe` it also takes every remainder at the very
  opening of the take-all window (no grace) with `fee_bid`, so it lands ahead of honest claimers
  in the same block.
* `sybil`: one attacker behind `identities` wallets, each adding its own samples, the first
  `warmup` honestly (verified contributions entitle a wallet to take), the rest with the wrong
  label. The identities know each other (a coalition named `coalition`): each reports its siblings' rejected contributions as soon
  as their report window opens, with `fee_bid`, so the attacker takes back a share of its own
  forfeited deposits before honest reporters do. Siblings are known within one shard process;
  across shards they are treated as strangers (still reported, at the usual moment and tip).
* `slow_poison`: flips only a share `flip_fraction` of its samples, paced so that the flipped
  share of what it has added never exceeds that fraction, and never two flips closer than
  `flip_spacing_s` of chain time: the model still agrees with most of its contributions when their
  refund test comes, so most deposits come back and the attack costs little per flipped sample.
"""

from __future__ import annotations

import bisect
from dataclasses import replace
from typing import ClassVar, Literal

from pydantic import Field

from .adversarial import ATTACKS as BASE_ATTACKS
from .adversarial import AdversarialParams, AdversarialPolicy
from .base import FINISHED, Action, AddData, Observation, PolicyContext, PredictTx, Report, Sample
from .claims import ClaimLoop
from .params import Duration, OptDuration, Wei

GWEI = 10**9
CHAIN_ATTACKS = ("deadline_congestion", "sybil", "slow_poison")
ATTACKS = BASE_ATTACKS + CHAIN_ATTACKS
# Sibling identities per coalition name, within this process (a shard hosts one run's agents).
_COALITIONS: dict[str, set[str]] = {}


class ChainAttackParams(AdversarialParams):
    attack: Literal["label_flip", "targeted", "spam", "front_run", "grief", "malformed",  # type: ignore[assignment]
                    "deadline_congestion", "sybil", "slow_poison"] = "deadline_congestion"
    deadline: Literal["refund", "take_all", "both"] = Field(
        "refund", description="deadline_congestion: the deadlines flooded (refund = the refund and report "
                              "windows opening; take_all = the any-address window opening)")
    lead_s: Duration = Field(120, ge=0, description="start flooding this long before a deadline")
    hold_s: Duration = Field(60, ge=0, description="keep flooding this long after it")
    fee_bid: Wei = Field(20 * GWEI, ge=0, description="priority fee of the flood, snipes and sibling reports")
    snipe: bool = Field(True, description="deadline_congestion: take every remainder at the take-all opening")
    identities: int = Field(1, ge=1, le=256,
                            description="wallets of the attacker (the group's count); budget is split over them")
    coalition: str = Field("sybil", min_length=1, max_length=64, description="sybil: the identities' shared name")
    flip_fraction: float = Field(0.3, gt=0, le=1, description="slow_poison: share of samples flipped")
    flip_spacing_s: OptDuration = Field(None, ge=0, description="slow_poison: least chain time between flips")


class ChainAttackPolicy(AdversarialPolicy):
    name: ClassVar[str] = "chain_attack"
    role: ClassVar[str] = "attacker"
    Params = ChainAttackParams

    def __init__(self, ctx: PolicyContext):
        super().__init__(ctx)
        p: ChainAttackParams = self.typed
        self.p = p
        rules = p.claim_rules()
        self.budget = p.budget // p.identities  # one attacker behind `identities` wallets: its total, split
        if p.attack == "deadline_congestion":
            # It adds nothing, so it has nothing to refund or report; sniping is a take-all at the opening.
            rules = replace(rules, refund=False, report=False, take_all=p.snipe, take_all_grace_s=0)
        elif p.attack == "sybil":
            # Look at others' contributions as soon as their report window opens (honest reporters look
            # on a coarser grid), and take remainders without the courtesy grace.
            rules = replace(rules, report_every_s=rules.report_every_s or 60, take_all_grace_s=0)
        self.claims = ClaimLoop(rules)
        self._flipped = 0
        self._added = 0
        self._last_flip = -(2**62)
        self._deadlines: list[int] = []  # sorted chain times of deadlines seen so far
        self._seen = 0  # public contributions already turned into deadlines

    # ---- deadlines ------------------------------------------------------------------------------

    def _offsets(self, obs: Observation) -> list[int]:
        m = obs.mechanism
        d = self.p.deadline
        return ([m.refund_wait] if d in ("refund", "both") else []) + (
            [m.any_address_claim_wait] if d in ("take_all", "both") else [])

    def _sync_deadlines(self, obs: Observation) -> None:
        """Deadlines of others' contributions, from their addition times and the mechanism's waits."""
        if len(obs.public) < self._seen:  # a reorg cut the list: start over
            self._deadlines, self._seen = [], 0
        for c in obs.public[self._seen:]:
            if c.author == obs.address:
                continue
            for off in self._offsets(obs):
                d = c.added_time + off
                i = bisect.bisect_left(self._deadlines, d)
                if i == len(self._deadlines) or self._deadlines[i] != d:  # one window per moment
                    self._deadlines.insert(i, d)
        self._seen = len(obs.public)

    def _first_open(self, t: int) -> int | None:
        """The earliest deadline whose flood window has not ended by chain time `t`."""
        i = bisect.bisect_left(self._deadlines, t - self.p.hold_s)
        return self._deadlines[i] if i < len(self._deadlines) else None

    def in_window(self, obs: Observation) -> bool:
        """Whether the next block falls within [deadline - lead_s, deadline + hold_s] of some deadline."""
        t = obs.time + obs.block_time
        d = self._first_open(t)
        return d is not None and d - self.p.lead_s <= t

    def next_window(self, obs: Observation) -> int | None:
        """When the next flood starts (a block before it, so the flood is in the pool in time)."""
        d = self._first_open(obs.time + obs.block_time)
        return None if d is None else max(obs.time, d - self.p.lead_s - obs.block_time)

    # ---- the policy interface ---------------------------------------------------------------------

    def public_needed_from(self) -> int:
        needed = super().public_needed_from()
        return min(needed, self._seen) if self.attack == "deadline_congestion" else needed

    def attacking(self, obs: Observation) -> bool:
        if self.attack not in CHAIN_ATTACKS:
            return super().attacking(obs)
        # Settlement ends contributions, not the claims: a flooder goes on, since that is when they come.
        if (obs.settling and self.attack != "deadline_congestion") or self._stopped or self.exhausted(obs):
            return False
        if self.attack == "deadline_congestion":
            self._sync_deadlines(obs)
            return self.next_window(obs) is not None
        return self._next < len(self.samples)

    def decide(self, obs: Observation) -> list[Action]:
        if self.attack == "sybil":
            _COALITIONS.setdefault(self.p.coalition, set()).add(obs.address)
        actions = super().decide(obs)
        if self.attack in ("sybil", "deadline_congestion"):
            siblings = _COALITIONS.get(self.p.coalition, set()) if self.attack == "sybil" else None
            # Outbid: a sibling's deposit (sybil) or any take-all snipe (congestion) goes at fee_bid.
            actions = [replace(a, tip=int(self.p.fee_bid))
                       if isinstance(a, Report) and (siblings is None or a.target.author in siblings) else a
                       for a in actions]
        return actions

    def _attack(self, obs: Observation, budget: int) -> list[Action]:
        if self.attack not in CHAIN_ATTACKS:
            return super()._attack(obs, budget)
        value = obs.mechanism.max_deposit
        if self.attack == "deadline_congestion":
            if not self.in_window(obs):
                return []
            data = self._spam_input()
            return [PredictTx(data, tip=int(self.p.fee_bid)) for _ in range(min(int(self.p.spam_per_block), budget))]
        n = self.arrivals.draw(obs.time, obs.block_time, self.rng, obs.load,
                               limit=min(budget, len(self.samples) - self._next))
        out: list[Action] = []
        for s in self._next_samples(obs, n):
            out.append(AddData(self._label(obs, s), value))
        return out

    def _label(self, obs: Observation, s: Sample) -> Sample:
        """The sample as it is sent: its own label, or a wrong one when this one is to be flipped."""
        self._added += 1
        if self.attack == "sybil":
            flip = self._added > int(self.p.warmup)
        else:  # slow_poison: stay at or under the fraction, and apart in time
            spacing = self.p.flip_spacing_s or 0
            flip = ((self._flipped + 1) <= self.p.flip_fraction * self._added
                    and obs.time - self._last_flip >= spacing)
        if not flip:
            return s
        self._flipped += 1
        self._last_flip = obs.time
        return Sample(s.data, self.wrong_label(s.label))

    def next_wake(self, obs: Observation) -> int | None:
        """Every block while its transactions are pending; else a flooder wakes a block before its
        next window (or its next snipe), a sybil or poisoner at its next add (or an earlier claim)."""
        if obs.in_flight or self.attack not in CHAIN_ATTACKS:
            return super().next_wake(obs)
        claims = FINISHED if self._claims_off or self.claims is None else self.claims.next_moment(obs)
        if not self.attacking(obs):
            return claims
        if self.attack == "deadline_congestion":
            nxt = self.next_window(obs)
            return claims if nxt is None else min(nxt, claims)
        arrival = self.arrivals.next_time()
        return None if arrival is None else min(arrival, claims)
