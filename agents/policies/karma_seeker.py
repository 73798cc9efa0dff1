"""Karma seeker: maximises points under the gamification (Points) mechanism.

Decision rule, each block:
* Adds many cheap contributions the model already agrees with: for each of its samples it asks the
  model (free call) and submits the model's own prediction as the label (always "agreed"), then
  `near_duplicates` variants of the same sample, each missing one feature (a dense input: two of its
  components swapped).
* Validates each contribution at the earliest moment (the refund wait just passed), when the model
  still agrees.
* Reports rivals: contributions of others past the wait that the model now rejects, which blocks
  their validation for good (it earns nothing, but the rival's score falls relative to its own).

Parameters: rate (0.2/s), arrival (poisson), near_duplicates (2), report_rivals (true),
rival_window_s (600: rivals whose wait ended this recently), max_in_flight (8).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..arrivals import Arrivals
from .base import (
    Action,
    AddData,
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


class KarmaSeekerPolicy(Policy):
    name: ClassVar[str] = "karma_seeker"
    role: ClassVar[str] = "opportunist"
    needs_public: ClassVar[bool] = True
    param_defaults: ClassVar[dict[str, Any]] = {
        "rate": 0.2, "arrival": "poisson", "near_duplicates": 2, "report_rivals": True, "rival_window_s": 600,
        "max_in_flight": 8,
        "burst_size": 10, "burst_every": 60, "max_gap": None,
    }

    def __init__(self, ctx: PolicyContext):
        super().__init__(ctx)
        self.max_in_flight = int(self.params["max_in_flight"])
        self.near = int(self.params["near_duplicates"])
        self.arrivals = Arrivals.from_params(self.params)
        self._queue: list[tuple[int, ...]] = []  # feature sets waiting for the model's label
        self._next = 0
        self._reported: set[tuple[str, int, int, tuple[int, ...]]] = set()

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

    def _due(self, obs: Observation) -> list[int]:
        return [c.id for c in obs.contributions
                if c.state is ContributionState.ADDED and obs.time >= c.added_time + obs.mechanism.refund_wait]

    def _rivals(self, obs: Observation) -> list[PublicContribution]:
        if not self.params["report_rivals"]:
            return []
        # Rivals validate as soon as they can, after which a report fails: only contributions whose
        # wait ended within the last `rival_window_s` are worth a look (and a free call).
        lo = obs.mechanism.refund_wait
        hi = lo + int(self.params["rival_window_s"])
        return [c for c in obs.public if c.author != obs.address and c.key not in self._reported
                and lo <= obs.time - c.added_time <= hi]

    def wants(self, obs: Observation) -> Wants:
        w = Wants()
        if self._next < len(self.samples):
            # Ask about the next few samples and their variants: the label will be the model's own.
            n = self.arrivals.draw(obs.time, obs.block_time, self.rng, obs.load)
            for s in self.samples[self._next:self._next + n]:
                self._queue.extend(self._variants(s.data))
            self._next += n
        w.predictions = set(self._queue)
        w.predictions |= {obs.contributions[i].data for i in self._due(obs)}
        rivals = self._rivals(obs)
        w.predictions |= {c.data for c in rivals}
        w.claimed = rivals
        return w

    def decide(self, obs: Observation) -> list[Action]:
        actions: list[Action] = []
        budget = self.max_in_flight - obs.in_flight
        for cid in self._due(obs):
            c = obs.contributions[cid]
            if budget > 0 and obs.predictions.get(c.data) == c.label:
                actions.append(Refund(cid))
                budget -= 1
        for c in self._rivals(obs):
            if budget <= 0:
                break
            if not obs.claimed.get(c.key, True) and obs.predictions.get(c.data, c.label) != c.label:
                self._reported.add(c.key)
                actions.append(Report(c))
                budget -= 1
        keep = []
        for data in self._queue:
            if budget > 0 and data in obs.predictions:
                actions.append(AddData(Sample(data, obs.predictions[data]), value=obs.mechanism.max_deposit))
                budget -= 1
            else:
                keep.append(data)
        self._queue = keep
        return actions
