"""Karma seeker: maximises points under the gamification (Points) mechanism.

Point by point against the reference simulation (microsoft/0xDeCA10B, simulation/), whose agents
play deposits, not points: the karma seeker plays the same claim loop (agents/policies/claims.py),
scored in points instead of ether.
* Adds many cheap contributions the model already agrees with: for each of its samples it asks the
  model (free call) and submits the model's own prediction as the label (always "agreed"), then
  `near_duplicates` variants of the same sample, each missing one feature (a dense input: two of its
  components swapped).
* Validates each contribution (Points' `refund`) at the earliest moment, the refund wait just
  passed, when the model still agrees; rechecks on the shared grid until the last window if not.
* Reports rivals: contributions of others whose wait ended within `rival_window_s` that the model
  now rejects, which blocks their validation for good (it earns nothing, but the rival's score
  falls relative to its own); each rival is looked at once, and a report refused because someone
  claimed first is not retried.
* Under Deposit, Refund and Take it plays the full money loop like every other policy: refunds,
  takes within its verified count, take-all after the last window.
* Settlement: stops adding, keeps validating and reporting; `next_wake` is its next claim moment.

Parameters: rate (0.2/s), arrival (poisson), near_duplicates (2), report_rivals (true),
rival_window_s (600), max_in_flight (8), and the claim loop's (see honest).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ..arrivals import Arrivals
from .base import Action, AddData, Mechanism, Observation, Policy, PolicyContext, Sample, Wants
from .claims import ClaimLoop
from .params import ClaimParams, Duration


class KarmaSeekerParams(ClaimParams):
    rate: float = Field(0.2, ge=0)
    near_duplicates: int = Field(2, ge=0)
    report_rivals: bool = True
    rival_window_s: Duration = 600
    max_in_flight: int = Field(8, ge=1)


class KarmaSeekerPolicy(Policy):
    name: ClassVar[str] = "karma_seeker"
    role: ClassVar[str] = "opportunist"
    needs_public: ClassVar[bool] = True
    Params = KarmaSeekerParams

    def __init__(self, ctx: PolicyContext):
        super().__init__(ctx)
        p: KarmaSeekerParams = self.typed
        self.max_in_flight = p.max_in_flight
        self.near = p.near_duplicates
        self.arrivals = Arrivals.from_params(self.params)
        self.claims = ClaimLoop(p.claim_rules(points_reports=p.report_rivals, rival_window_s=p.rival_window_s))
        self._queue: list[tuple[int, ...]] = []  # feature sets waiting for the model's label
        self._next = 0

    def _variants(self, data: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The sample and near-duplicates of it, each missing one feature (so they stay within the
        model's features and hash to different contributions)."""
        out = [data]
        if len(data) < 2:
            return out
        if self.dense:
            return out + self._dense_variants(data)
        drop = self.rng.choice(len(data), size=min(self.near, len(data)), replace=False)
        for i in drop:
            out.append(tuple(x for j, x in enumerate(data) if j != int(i)))
        return out

    def _dense_variants(self, data: tuple[int, ...]) -> list[tuple[int, ...]]:
        """A dense input cannot lose a component (its length and unit norm are checked on chain):
        swapping two unequal components keeps both exactly and still makes a different contribution."""
        out: list[tuple[int, ...]] = []
        for _ in range(self.near):
            i, j = (int(v) for v in self.rng.choice(len(data), size=2, replace=False))
            if data[i] != data[j]:
                v = list(data)
                v[i], v[j] = v[j], v[i]
                out.append(tuple(v))
        return out

    def adding(self, obs: Observation) -> bool:
        return (self._next < len(self.samples) or bool(self._queue)) and not obs.settling

    def wants(self, obs: Observation) -> Wants:
        assert self.claims is not None
        w = self.claims.wants(obs)
        if not self.adding(obs):
            return w
        if self._next < len(self.samples):
            # Ask about the next few samples and their variants: the label will be the model's own.
            n = self.arrivals.draw(obs.time, obs.block_time, self.rng, obs.load)
            for s in self.samples[self._next:self._next + n]:
                self._queue.extend(self._variants(s.data))
            self._next += n
        w.predictions |= set(self._queue)
        return w

    def decide(self, obs: Observation) -> list[Action]:
        assert self.claims is not None
        budget = self.max_in_flight - obs.in_flight
        actions: list[Action] = self.claims.decide(obs, max(budget, 0))
        budget -= len(actions)
        if not self.adding(obs):
            return actions
        keep = []
        for data in self._queue:
            if budget > 0 and data in obs.predictions:
                actions.append(AddData(Sample(data, obs.predictions[data]), value=obs.mechanism.max_deposit))
                budget -= 1
            else:
                keep.append(data)
        self._queue = keep
        return actions

    def public_horizon(self, mechanism: Mechanism) -> int:
        """Others' contributions matter only to its claims, once their refund wait has passed."""
        return mechanism.refund_wait

    def public_needed_from(self) -> int:
        return self.claims_need_from()

    def next_wake(self, obs: Observation) -> int | None:
        assert self.claims is not None
        if self.adding(obs) or obs.in_flight:
            return None
        return self.claims.next_moment(obs)
