"""Adversarial: attacks the model or the honest participants, within a declared budget.

`attack` chooses the decision rule. `budget` (wei) bounds what it may spend, deposits kept plus fees,
net of what came back: the shard sends no transaction whose worst case (value + gas limit * max
fee) would take spending plus what its pending transactions may still cost past it, so the budget
holds exactly, whatever the timing of receipts.
* `label_flip` (the reference's bad agent, simulate.py's `good=False`): adds its samples with the
  wrong label (the other class; in a multi-class run one of the other classes at random).
* `targeted`: pushes the model toward `target_class`: adds samples of the other class labelled
  `target_class`.
* `spam`: floods the chain with gas-heavy transactions that change nothing (the trainer's `predict`
  sent as a transaction over `spam_indices` features) at `spam_per_block`, to raise the base fee
  and delay honest refunds.
* `front_run`: when the pending pool holds others' transactions, adds one of its own samples (true
  label) with a high tip (`front_run_tip`) so it lands first in the block: every other add in that
  block then pays the highest deposit (the price resets with each add). It needs the node's
  `txpool_status`: on a node without it, it warns once and stops attacking (claims go on).
* `grief`: for each honest contribution it sees, adds the same features with a wrong label
  (so the model turns against the original); its first `warmup` contributions are honest ones, so
  that once they are verified it may report the originals when the model disagrees with them.
* `malformed`: probes the contracts with inputs they must refuse, one kind per block, between a good
  add first and its remaining samples after: an array too big for a block (`malformed_size`
  indices), a negative index, an index far beyond the model (`beyond_index`), label 2, `predict` sent
  with a negative index, a report of a contribution that does not exist, a refund before the wait.
  Each should revert (or be refused at send) with a reason in the ledger while the agent goes on.

Claims, for every attack (agents/policies/claims.py), as the reference's bad agent also claims
(it runs the same loop as the good one): flippers refund what the final model agrees with, report
others' contributions the model rejects once some of their own are verified, and take whatever is
left after the any-address window, their own first. Claims respect the budget like everything else.
Settlement (`Observation.settling`): the attack stops, claims go on.

Parameters: attack (label_flip), budget (1 ether), rate (0.05/s), arrival (poisson), target_class (1),
spam_indices (200), spam_per_block (5), front_run_tip (20 gwei), warmup (2), max_in_flight (8),
malformed_size (2000), beyond_index (1,000,000), and the claim loop's (see honest).
"""

from __future__ import annotations

import sys
from typing import ClassVar, Literal

from pydantic import Field

from ..arrivals import Arrivals
from .base import (
    FINISHED,
    Action,
    Mechanism,
    AddData,
    ContributionState,
    Observation,
    Policy,
    PolicyContext,
    PredictTx,
    PublicContribution,
    Refund,
    Report,
    Sample,
    Wants,
)
from .claims import ClaimLoop
from .params import ClaimParams, Wei

GWEI = 10**9
ATTACKS = ("label_flip", "targeted", "spam", "front_run", "grief", "malformed")
MALFORMED = ("good", "oversized", "negative_index", "beyond_model", "bad_label", "bad_predict", "ghost_report",
             "early_refund")


class AdversarialParams(ClaimParams):
    attack: Literal["label_flip", "targeted", "spam", "front_run", "grief", "malformed"] = "label_flip"
    budget: Wei = 10**18
    target_class: int = Field(1, ge=0)
    spam_indices: int = Field(200, ge=1)
    spam_per_block: int = Field(5, ge=1)
    front_run_tip: Wei = 20 * GWEI
    warmup: int = Field(2, ge=0)
    max_in_flight: int = Field(8, ge=1)
    malformed_size: int = Field(2000, ge=1)
    beyond_index: int = Field(1_000_000, ge=0)


class AdversarialPolicy(Policy):
    name: ClassVar[str] = "adversarial"
    role: ClassVar[str] = "attacker"
    needs_public: ClassVar[bool] = True
    Params = AdversarialParams

    def __init__(self, ctx: PolicyContext):
        super().__init__(ctx)
        p: AdversarialParams = self.typed
        self.p = p
        self.attack = p.attack
        self.budget = p.budget
        self.max_in_flight = p.max_in_flight
        self.arrivals = Arrivals.from_params(self.params, agent=f"agent {self.agent_id}")
        self.claims = ClaimLoop(p.claim_rules())
        self._next = 0
        self._copied: set[tuple[str, int, int, tuple[int, ...]]] = set()
        self._probes = list(MALFORMED)
        self._stopped = ""  # why the attack stopped early ("" while it goes on)
        self._claims_off = False
        self.warnings: list[str] = []  # collected by the shard, once each

    def exhausted(self, obs: Observation) -> bool:
        return obs.spent + obs.reserved >= self.budget

    def refused(self, action: Action, why: str) -> None:
        """The shard did not send `action` (its worst-case cost does not fit the budget)."""
        if isinstance(action, (Refund, Report)):
            self._claims_off = True
        elif self.attack != "malformed":  # a probe too costly is skipped, the next may fit
            self._stopped = self._stopped or why

    def attacking(self, obs: Observation) -> bool:
        """Still in its attack phase (samples, probes or copies left, budget left, not settling)."""
        if obs.settling or self._stopped or self.exhausted(obs):
            return False
        if self.attack == "spam":
            return True
        if self.attack == "malformed":
            return bool(self._probes) or self._next < len(self.samples)
        if self.attack == "grief":
            return len(obs.contributions) < int(self.p.warmup) or any(
                c.author != obs.address and c.key not in self._copied for c in obs.public)
        return self._next < len(self.samples)

    def wants(self, obs: Observation) -> Wants:
        assert self.claims is not None
        w = self.claims.wants(obs) if not self._claims_off else Wants()
        if self.attack == "front_run" and self.attacking(obs):
            w.pool = True
        return w

    def _next_samples(self, obs: Observation, n: int) -> list[Sample]:
        out = []
        while len(out) < n and self._next < len(self.samples):
            out.append(self.samples[self._next])
            self._next += 1
        return out

    def decide(self, obs: Observation) -> list[Action]:
        assert self.claims is not None
        budget = self.max_in_flight - obs.in_flight
        if budget <= 0:
            return []
        actions: list[Action] = [] if self._claims_off else self.claims.decide(obs, budget)
        budget -= len(actions)
        if budget > 0 and self.attacking(obs):
            actions += self._attack(obs, budget)
        return actions

    def _attack(self, obs: Observation, budget: int) -> list[Action]:
        value = obs.mechanism.max_deposit
        if self.attack == "label_flip":
            n = self.arrivals.draw(obs.time, obs.block_time, self.rng, obs.load,
                                   limit=min(budget, len(self.samples) - self._next))
            return [AddData(Sample(s.data, self.wrong_label(s.label)), value)
                    for s in self._next_samples(obs, n)]
        if self.attack == "targeted":
            n = min(self.arrivals.draw(obs.time, obs.block_time, self.rng, obs.load), budget)
            target = int(self.p.target_class)
            out: list[Action] = []
            while len(out) < n and self._next < len(self.samples):
                s = self.samples[self._next]
                self._next += 1
                if s.label != target:
                    out.append(AddData(Sample(s.data, target), value))
            return out
        if self.attack == "spam":
            data = self._spam_input()
            return [PredictTx(data) for _ in range(min(int(self.p.spam_per_block), budget))]
        if self.attack == "malformed":
            return self._malformed(obs, value)
        if self.attack == "front_run":
            if obs.pool_pending is None:
                self._stopped = "no txpool"
                self.warnings.append(
                    f"agent {self.agent_id}: front_run needs the node's txpool_status, which did not answer: "
                    "the attack stops (its claims go on)")
                return []
            if obs.pool_pending > 0:
                s = self._next_samples(obs, 1)
                if s:
                    return [AddData(s[0], value, tip=int(self.p.front_run_tip))]
            return []
        return self._grief(obs, budget, value)

    def _spam_input(self) -> tuple[int, ...]:
        """A valid input the model must read in full: `spam_indices` features (within the vocabulary
        when it is known; an index beyond it would make predict revert cheaply), or for a dense model
        a unit vector of its whole dimension."""
        if self.dense and self.n_features:
            return (10**9,) + (0,) * (self.n_features - 1)
        k = int(self.p.spam_indices)
        return tuple(range(min(k, self.n_features) if self.n_features else k))

    def _grief(self, obs: Observation, budget: int, value: int) -> list[Action]:
        """Honest warm-up adds first (verified contributions entitle it to take), then a wrong-label
        copy of every contribution of others; the claim loop reports the originals."""
        actions: list[Action] = []
        warmup = int(self.p.warmup)
        if len(obs.contributions) < warmup:
            for s in self._next_samples(obs, min(warmup - len(obs.contributions), budget)):
                actions.append(AddData(s, value))
            return actions
        for c in obs.public:
            if budget <= 0:
                break
            if c.author == obs.address or c.key in self._copied:
                continue
            self._copied.add(c.key)
            actions.append(AddData(Sample(c.data, self.wrong_label(c.label)), value))
            budget -= 1
        return actions

    def _malformed(self, obs: Observation, value: int) -> list[Action]:
        """One probe per block; then the remaining samples, honestly, one per block."""
        if not self._probes:
            return [AddData(s, value) for s in self._next_samples(obs, 1)]
        kind = self._probes[0]
        base = self.samples[0].data if self.samples else (0,)
        action: Action | None = None
        if kind == "good":
            s = self._next_samples(obs, 1)
            action = AddData(s[0], value) if s else None
        elif kind == "oversized":
            action = AddData(Sample(tuple(range(int(self.p.malformed_size))), 1), value)
        elif kind == "negative_index":
            action = AddData(Sample((*base, -1), 1), value)
        elif kind == "beyond_model":
            action = AddData(Sample((*base, int(self.p.beyond_index)), 1), value)
        elif kind == "bad_label":
            action = AddData(Sample(base, 2), value)
        elif kind == "bad_predict":
            action = PredictTx((-5, *base))
        elif kind == "ghost_report":
            action = Report(PublicContribution(obs.address, base, 1, 12_345, value, 0))
        elif kind == "early_refund":
            # a refund of its first add, before the wait: waits until that add is mined
            early = [c for c in obs.contributions if c.state is ContributionState.ADDED
                     and obs.time < c.added_time + obs.mechanism.refund_wait]
            if not early:
                if any(c.state is ContributionState.SUBMITTED for c in obs.contributions):
                    return []
                self._probes.pop(0)  # nothing left to refund early: skip this probe
                return []
            action = Refund(early[0].id)
        self._probes.pop(0)
        return [action] if action is not None else []

    def public_horizon(self, mechanism: Mechanism) -> int:
        """Others' contributions matter to its claims once their refund wait has passed; a griefer
        copies them at once."""
        return 0 if self.attack == "grief" else mechanism.refund_wait

    def public_needed_from(self) -> int:
        if self.attack == "grief":
            return 0  # it walks the whole list for contributions not yet copied
        return sys.maxsize if self._claims_off else self.claims_need_from()

    def next_wake(self, obs: Observation) -> int | None:
        """Every block while it attacks (a front-runner only while others' transactions are pending);
        then its next claim moment, FINISHED once nothing is left to claim or its budget is gone."""
        assert self.claims is not None
        if obs.in_flight:
            return None
        if self.attacking(obs) and self.attack == "label_flip":
            # A slow flipper lets the chain skip to its next add (or an earlier claim).
            arrival = self.arrivals.next_time()
            if arrival is None:
                return None
            return arrival if self._claims_off else min(arrival, self.claims.next_moment(obs))
        if self.attacking(obs) and not (self.attack == "front_run" and not obs.pool_pending):
            return None
        if self._claims_off:
            return FINISHED
        return self.claims.next_moment(obs)

    def reasons(self) -> dict[str, int]:
        out = super().reasons()
        if self._stopped:
            out[f"attack stopped: {self._stopped}"] = 1
        return out
