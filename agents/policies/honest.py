"""Honest contributor.

Decision rule: each block it adds its next samples with their true labels as its arrival process
releases them (`arrival`: poisson, constant or burst at `rate` per second of chain time; a label is
flipped with probability `mistake_rate`), sending the mechanism's highest possible deposit so the
call never underpays (the excess comes back in the same call). Once a contribution's refund wait
has passed it asks the model (a free call) and, if the model agrees, claims its refund; if not, it
asks again at the next multiple of `recheck_s` seconds of chain time, giving up `give_up_s` seconds
after adding it. With `report: true` it also reports others' contributions the model now rejects,
once it has a verified contribution of its own. At most `max_in_flight` of its transactions are
pending at once.

Parameters: rate (0.05/s), arrival (poisson), mistake_rate (0.0), recheck_s (6 hours),
give_up_s (3 days), report (false), max_in_flight (4), burst_size, burst_every.
"""

from __future__ import annotations

from typing import Any, ClassVar

from contracts.units import parse_duration_s

from ..arrivals import Arrivals
from .base import (
    FINISHED,
    Action,
    AddData,
    Contribution,
    ContributionState,
    Observation,
    Policy,
    PolicyContext,
    PublicContribution,
    Refund,
    Report,
    Sample,
    Wants,
)


class HonestPolicy(Policy):
    name: ClassVar[str] = "honest"
    role: ClassVar[str] = "honest"
    param_defaults: ClassVar[dict[str, Any]] = {
        "rate": 0.05, "arrival": "poisson", "mistake_rate": 0.0, "recheck_s": 6 * 3600,
        "give_up_s": 3 * 86400, "report": False, "max_in_flight": 4, "burst_size": 10, "burst_every": 60,
        "max_gap": None,
    }

    def __init__(self, ctx: PolicyContext):
        super().__init__(ctx)
        p = self.params
        self.mistake_rate = float(p["mistake_rate"])
        self.recheck_s = parse_duration_s(p["recheck_s"])
        self.give_up_s = parse_duration_s(p["give_up_s"])
        self.max_in_flight = int(p["max_in_flight"])
        self.report = bool(p["report"])
        self.arrivals = Arrivals.from_params(p, agent=f"agent {self.agent_id}")
        self._next = 0
        self._reported: set[tuple[str, int, int, tuple[int, ...]]] = set()

    @property
    def needs_public(self) -> bool:  # type: ignore[override]
        return self.report

    def _recheck_at(self, c: Contribution) -> int:
        # Rechecks fall on a shared grid of chain time, so agents waiting on the model all look again
        # in the same block instead of one by one (which would keep the chain from skipping ahead).
        return (c.last_check_time // self.recheck_s + 1) * self.recheck_s

    def _refund_due(self, c: Contribution, obs: Observation) -> bool:
        if c.state is ContributionState.ADDED and not c.abandoned and obs.time > c.added_time + self.give_up_s:
            c.abandoned = True
        return (
            c.state is ContributionState.ADDED
            and not c.abandoned
            and (c.deposit > 0 or obs.mechanism.kind == "points")
            and obs.time >= c.added_time + obs.mechanism.refund_wait
            and (c.last_check_time < 0 or obs.time >= self._recheck_at(c))
        )

    def _report_candidates(self, obs: Observation) -> list[PublicContribution]:
        if not self.report:
            return []
        return [c for c in obs.public
                if c.author != obs.address and c.key not in self._reported
                and obs.time - c.added_time >= obs.mechanism.refund_wait]

    def wants(self, obs: Observation) -> Wants:
        w = Wants(predictions={c.data for c in obs.contributions if self._refund_due(c, obs)})
        candidates = self._report_candidates(obs)
        if candidates:
            w.predictions |= {c.data for c in candidates}
            w.claimable = candidates
            w.num_valid = True
        return w

    def decide(self, obs: Observation) -> list[Action]:
        actions: list[Action] = []
        budget = self.max_in_flight - obs.in_flight
        for c in obs.contributions:
            if budget <= 0:
                break
            if self._refund_due(c, obs) and c.data in obs.predictions:
                c.last_check_time = obs.time
                if obs.predictions[c.data] == c.label:
                    actions.append(Refund(c.id))
                    budget -= 1
        if (obs.num_valid or 0) > 0 or obs.mechanism.kind == "points":
            for c in self._report_candidates(obs):
                if budget <= 0:
                    break
                if obs.claimable.get(c.key, 0) > 0 and obs.predictions.get(c.data, c.label) != c.label:
                    self._reported.add(c.key)
                    actions.append(Report(c))
                    budget -= 1
        if self._next < len(self.samples) and budget > 0:
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

    def next_wake(self, obs: Observation) -> int | None:
        if obs.in_flight > 0 or self.report:
            return None
        wake = FINISHED
        if self._next < len(self.samples):
            # Slow contributors let the chain skip to their next arrival instead of ticking through it.
            arrival = self.arrivals.next_time()
            if arrival is None:
                return None
            wake = arrival
        for c in obs.contributions:
            if c.state is ContributionState.ADDED and not c.abandoned and (
                    c.deposit > 0 or obs.mechanism.kind == "points"):
                due = c.added_time + obs.mechanism.refund_wait
                if c.last_check_time >= 0:
                    due = max(due, self._recheck_at(c))
                wake = min(wake, due)
            elif c.state in (ContributionState.SUBMITTED, ContributionState.REFUND_SENT):
                return None
        return wake
