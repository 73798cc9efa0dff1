"""Honest contributor: the reference simulation's good agent, playing the whole game.

Point by point against the reference's agent (microsoft/0xDeCA10B, simulation/decai/simulation/
simulate.py; facts only, the code is ours):
* Adding. Reference: at each wake (normally distributed waits) a good agent adds the next sample
  with its true label (flipped with `prob_mistake`), with probability accuracy + 0.15. Here: it adds
  its samples with their true labels as its arrival process releases them (`arrival`: poisson,
  constant or burst at `rate` per second of chain time; a label is flipped with probability
  `mistake_rate`), sending the mechanism's highest possible deposit so the call never underpays
  (the excess comes back in the same call). It does not model the accuracy-dependent willingness.
* Claiming: the shared claim loop (agents/policies/claims.py), as the reference agent claims:
  refund of its own contributions once the model agrees (after the refund wait, rechecked every
  `recheck_s`), takes of others' contributions the model rejects once it has verified
  contributions of its own (`report`), the whole remainder of anything left after the any-address
  window, its own first (`take_all`), retried until nothing is left.
* Settlement (`Observation.settling`): it stops adding and only claims; `next_wake` is then its
  next claim moment, FINISHED once nothing could ever be claimed again.
At most `max_in_flight` of its transactions are pending at once.

Parameters: rate (0.05/s), arrival (poisson), mistake_rate (0.0), max_in_flight (4), burst_size,
burst_every, max_gap, and the claim loop's: refund, report, take_all (true), recheck_s (the refund
wait, 1 min to 6 h), give_up_s (none: never stop asking for a refund), take_all_grace_s (60),
max_attempts (5).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ..arrivals import Arrivals
from .base import Action, AddData, Mechanism, Observation, Policy, PolicyContext, Sample, Wants
from .claims import ClaimLoop
from .params import ClaimParams


class HonestParams(ClaimParams):
    mistake_rate: float = Field(0.0, ge=0, le=1, description="probability of a wrong label")


class HonestPolicy(Policy):
    name: ClassVar[str] = "honest"
    role: ClassVar[str] = "honest"
    needs_public: ClassVar[bool] = True
    Params = HonestParams

    def __init__(self, ctx: PolicyContext):
        super().__init__(ctx)
        p: HonestParams = self.typed
        self.mistake_rate = p.mistake_rate
        self.max_in_flight = p.max_in_flight
        self.arrivals = Arrivals.from_params(self.params, agent=f"agent {self.agent_id}")
        self.claims = ClaimLoop(p.claim_rules())
        self._next = 0

    def adding(self, obs: Observation) -> bool:
        return self._next < len(self.samples) and not obs.settling

    def wants(self, obs: Observation) -> Wants:
        assert self.claims is not None
        return self.claims.wants(obs)

    def decide(self, obs: Observation) -> list[Action]:
        assert self.claims is not None
        budget = self.max_in_flight - obs.in_flight
        actions: list[Action] = self.claims.decide(obs, max(budget, 0))
        budget -= len(actions)
        if self.adding(obs) and budget > 0:
            arrivals = self.arrivals.draw(obs.time, obs.block_time, self.rng, obs.load,
                                          limit=min(budget, len(self.samples) - self._next))
            for _ in range(arrivals):
                s = self.samples[self._next]
                self._next += 1
                label = s.label
                if self.mistake_rate > 0 and self.rng.random() < self.mistake_rate:
                    label = self.wrong_label(label)
                actions.append(AddData(Sample(s.data, label), value=obs.mechanism.max_deposit))
        return actions

    def public_horizon(self, mechanism: Mechanism) -> int:
        """Others' contributions matter only to its claims, once their refund wait has passed."""
        return mechanism.refund_wait

    def public_needed_from(self) -> int:
        return self.claims_need_from()

    def next_wake(self, obs: Observation) -> int | None:
        assert self.claims is not None
        if obs.in_flight > 0:
            return None
        if self.adding(obs):
            # Slow contributors let the chain skip to their next arrival instead of ticking through it.
            arrival = self.arrivals.next_time()
            return None if arrival is None else min(arrival, self.claims.next_moment(obs))
        return self.claims.next_moment(obs)
