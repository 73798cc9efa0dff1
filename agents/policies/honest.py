"""Honest contributor.

Decision rule: each block, submits its next samples with their true labels at a Poisson rate
(`rate` contributions per second of chain time; a label is flipped with probability
`mistake_rate`), sending the mechanism's highest possible deposit so the call never underpays (the
excess comes back in the same call). Once a contribution's refund wait has passed it asks the model
(a free call) and, if the model agrees, claims its refund; if not, it asks again after
`recheck_s` seconds, giving up `give_up_s` seconds after adding it. At most `max_in_flight` of its transactions are pending at once.

Parameters: rate (float, default 0.05), mistake_rate (0.0), recheck_s (6 hours), give_up_s (3 days),
max_in_flight (4).
"""

from __future__ import annotations

from typing import ClassVar

from .base import (
    FINISHED,
    Action,
    AddData,
    Contribution,
    ContributionState,
    Observation,
    Policy,
    PolicyContext,
    Refund,
    Sample,
)


class HonestPolicy(Policy):
    name: ClassVar[str] = "honest"

    def __init__(self, ctx: PolicyContext):
        super().__init__(ctx)
        self.rate = float(self.params.get("rate", 0.05))
        self.mistake_rate = float(self.params.get("mistake_rate", 0.0))
        self.recheck_s = int(self.params.get("recheck_s", 6 * 3600))
        self.max_in_flight = int(self.params.get("max_in_flight", 4))
        self.give_up_s = int(self.params.get("give_up_s", 3 * 86400))
        self._next = 0

    def _refund_due(self, c: Contribution, obs: Observation) -> bool:
        if c.state is ContributionState.ADDED and not c.abandoned and obs.time > c.added_time + self.give_up_s:
            c.abandoned = True
        return (
            c.state is ContributionState.ADDED
            and not c.abandoned
            and c.deposit > 0
            and obs.time >= c.added_time + obs.refund_wait
            and (c.last_check_time < 0 or obs.time >= self._recheck_at(c))
        )

    def _recheck_at(self, c: Contribution) -> int:
        # Rechecks fall on a shared grid of chain time, so agents waiting on the model all look again
        # in the same block instead of one by one (which would keep the chain from skipping ahead).
        return (c.last_check_time // self.recheck_s + 1) * self.recheck_s

    def wants_predictions(self, obs: Observation) -> list[int]:
        return [c.id for c in obs.contributions if self._refund_due(c, obs)]

    def decide(self, obs: Observation) -> list[Action]:
        actions: list[Action] = []
        budget = self.max_in_flight - obs.in_flight
        for c in obs.contributions:
            if budget <= 0:
                break
            if c.id in obs.predictions:
                c.last_check_time = obs.time
                if obs.predictions[c.id] == c.label:
                    actions.append(Refund(c.id))
                    budget -= 1
        if self._next < len(self.samples) and budget > 0:
            arrivals = int(self.rng.poisson(self.rate * obs.block_time))
            for _ in range(min(arrivals, budget, len(self.samples) - self._next)):
                s = self.samples[self._next]
                self._next += 1
                label = s.label
                if self.mistake_rate > 0 and self.rng.random() < self.mistake_rate:
                    label = 1 - label
                actions.append(AddData(Sample(s.data, label), value=obs.max_deposit))
        return actions

    def next_wake(self, obs: Observation) -> int | None:
        if self._next < len(self.samples) or obs.in_flight > 0:
            return None
        wake = FINISHED
        for c in obs.contributions:
            if c.state is ContributionState.ADDED and c.deposit > 0 and not c.abandoned:
                due = c.added_time + obs.refund_wait
                if c.last_check_time >= 0:
                    due = max(due, self._recheck_at(c))
                wake = min(wake, due)
            elif c.state in (ContributionState.SUBMITTED, ContributionState.REFUND_SENT):
                return None
        return wake
