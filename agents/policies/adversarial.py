"""Adversarial: attacks the model or the honest participants, within a declared budget.

`attack` chooses the decision rule; every attack stops once `budget` wei (deposits kept plus fees,
net of what came back) is spent.
* `label_flip` (the reference's bad agent): adds its samples with the wrong label (the other class;
  in a multi-class run one of the other classes at random).
* `targeted`: pushes the model toward `target_class`: adds samples of the other class labelled
  `target_class`.
* `spam`: floods the chain with gas-heavy transactions that change nothing (the trainer's `predict`
  sent as a transaction over `spam_indices` features) at `spam_per_block`, to raise the base fee
  and delay honest refunds.
* `front_run`: when the pending pool holds others' transactions, adds one of its own samples (true
  label) with a high tip (`front_run_tip`) so it lands first in the block: every other add in that
  block then pays the highest deposit (the price resets with each add).
* `grief`: for each honest contribution it sees, adds the same features with a wrong label
  (so the model turns against the original); after a few honest `warmup` contributions of its own
  are verified, it reports the originals as soon as the model disagrees with them.
* `malformed`: probes the contracts with inputs they must refuse, one kind per block, between a good
  add first and its remaining samples after: an array too big for a block (`malformed_size`
  indices), a negative index, an index far beyond the model (`beyond_index`), label 2, `predict` sent
  with a negative index, a report of a contribution that does not exist, a refund before the wait.
  Each should revert (or be refused at send) with a reason in the ledger while the agent goes on.

Parameters: attack (label_flip), budget (1 ether), rate (0.05/s), arrival (poisson), target_class (1),
spam_indices (200), spam_per_block (5), front_run_tip (20 gwei), warmup (2), max_in_flight (8),
malformed_size (2000), beyond_index (1,000,000).
"""

from __future__ import annotations

from typing import Any, ClassVar

from contracts.units import parse_wei

from ..arrivals import Arrivals
from .base import (
    FINISHED,
    Action,
    AddData,
    ContributionState,
    Observation,
    Policy,
    PolicyContext,
    PolicyError,
    PredictTx,
    PublicContribution,
    Refund,
    Report,
    Sample,
    Wants,
)

GWEI = 10**9
ATTACKS = ("label_flip", "targeted", "spam", "front_run", "grief", "malformed")
MALFORMED = ("good", "oversized", "negative_index", "beyond_model", "bad_label", "bad_predict", "ghost_report",
             "early_refund")


class AdversarialPolicy(Policy):
    name: ClassVar[str] = "adversarial"
    role: ClassVar[str] = "attacker"
    param_defaults: ClassVar[dict[str, Any]] = {
        "attack": "label_flip", "budget": 10**18, "rate": 0.05, "arrival": "poisson", "target_class": 1,
        "spam_indices": 200, "spam_per_block": 5, "front_run_tip": 20 * GWEI, "warmup": 2, "max_in_flight": 8,
        "burst_size": 10, "burst_every": 60, "max_gap": None, "malformed_size": 2000, "beyond_index": 1_000_000,
    }

    def __init__(self, ctx: PolicyContext):
        super().__init__(ctx)
        p = self.params
        self.attack = str(p["attack"])
        if self.attack not in ATTACKS:
            raise PolicyError(f"adversarial: unknown attack {self.attack!r}; expected one of {ATTACKS}")
        self.budget = parse_wei(p["budget"])
        self.max_in_flight = int(p["max_in_flight"])
        self.arrivals = Arrivals.from_params(p, agent=f"agent {self.agent_id}")
        self._next = 0
        self._copied: set[tuple[str, int, int, tuple[int, ...]]] = set()
        self._reported: set[tuple[str, int, int, tuple[int, ...]]] = set()
        self._probes = list(MALFORMED)

    @property
    def needs_public(self) -> bool:  # type: ignore[override]
        return self.attack == "grief"

    def exhausted(self, obs: Observation) -> bool:
        return obs.spent >= self.budget

    def wants(self, obs: Observation) -> Wants:
        w = Wants()
        if self.attack == "front_run":
            w.pool = True
        if self.attack == "grief":
            w.num_valid = True
            w.predictions = {c.data for c in obs.contributions if c.state is ContributionState.ADDED
                             and obs.time >= c.added_time + obs.mechanism.refund_wait}
            due = [c for c in obs.public if c.author != obs.address and c.key in self._copied
                   and c.key not in self._reported and obs.time - c.added_time >= obs.mechanism.refund_wait]
            w.predictions |= {c.data for c in due}
            w.claimable = due
        return w

    def _next_samples(self, obs: Observation, n: int) -> list[Sample]:
        out = []
        while len(out) < n and self._next < len(self.samples):
            out.append(self.samples[self._next])
            self._next += 1
        return out

    def decide(self, obs: Observation) -> list[Action]:
        if self.exhausted(obs):
            return []
        budget = self.max_in_flight - obs.in_flight
        if budget <= 0:
            return []
        value = obs.mechanism.max_deposit
        if self.attack == "label_flip":
            n = self.arrivals.draw(obs.time, obs.block_time, self.rng, obs.load,
                                   limit=min(budget, len(self.samples) - self._next))
            return [AddData(Sample(s.data, self.wrong_label(s.label)), value)
                    for s in self._next_samples(obs, n)]
        if self.attack == "targeted":
            n = min(self.arrivals.draw(obs.time, obs.block_time, self.rng, obs.load), budget)
            target = int(self.params["target_class"])
            out: list[Action] = []
            while len(out) < n and self._next < len(self.samples):
                s = self.samples[self._next]
                self._next += 1
                if s.label != target:
                    out.append(AddData(Sample(s.data, target), value))
            return out
        if self.attack == "spam":
            data = self._spam_input()
            return [PredictTx(data) for _ in range(min(int(self.params["spam_per_block"]), budget))]
        if self.attack == "malformed":
            return self._malformed(obs, value)
        if self.attack == "front_run":
            if (obs.pool_pending or 0) > 0:
                s = self._next_samples(obs, 1)
                if s:
                    return [AddData(s[0], value, tip=parse_wei(self.params["front_run_tip"]))]
            return []
        return self._grief(obs, budget, value)

    def _spam_input(self) -> tuple[int, ...]:
        """A valid input the model must read in full: `spam_indices` features (within the vocabulary
        when it is known; an index beyond it would make predict revert cheaply), or for a dense model
        a unit vector of its whole dimension."""
        if self.dense and self.n_features:
            return (10**9,) + (0,) * (self.n_features - 1)
        k = int(self.params["spam_indices"])
        return tuple(range(min(k, self.n_features) if self.n_features else k))

    def _grief(self, obs: Observation, budget: int, value: int) -> list[Action]:
        actions: list[Action] = []
        warmup = int(self.params["warmup"])
        # Verified contributions of its own are what entitles it to take.
        for c in obs.contributions:
            if budget <= 0:
                return actions
            if (c.state is ContributionState.ADDED and c.id < warmup and c.data in obs.predictions
                    and obs.predictions[c.data] == c.label):
                actions.append(Refund(c.id))
                budget -= 1
        if len(obs.contributions) < warmup:
            for s in self._next_samples(obs, min(warmup - len(obs.contributions), budget)):
                actions.append(AddData(s, value))
                budget -= 1
            return actions
        for c in obs.public:
            if budget <= 0:
                break
            if c.author == obs.address:
                continue
            if c.key not in self._copied:
                self._copied.add(c.key)
                actions.append(AddData(Sample(c.data, self.wrong_label(c.label)), value))
                budget -= 1
            elif (c.key not in self._reported and (obs.num_valid or 0) > 0
                  and obs.claimable.get(c.key, 0) > 0 and obs.predictions.get(c.data, c.label) != c.label):
                self._reported.add(c.key)
                actions.append(Report(c))
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
            action = AddData(Sample(tuple(range(int(self.params["malformed_size"]))), 1), value)
        elif kind == "negative_index":
            action = AddData(Sample((*base, -1), 1), value)
        elif kind == "beyond_model":
            action = AddData(Sample((*base, int(self.params["beyond_index"])), 1), value)
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

    def next_wake(self, obs: Observation) -> int | None:
        """Done once its budget is spent; the sample-driven attacks are done when their samples are;
        spam and grief act every block until then."""
        if self.exhausted(obs) and not obs.in_flight:
            return FINISHED
        if self.attack == "malformed":
            return FINISHED if not self._probes and self._next >= len(self.samples) and not obs.in_flight else None
        if self.attack == "label_flip" and self._next < len(self.samples) and not obs.in_flight:
            return self.arrivals.next_time()  # slow attackers let the chain skip to their next add
        if self.attack in ("label_flip", "targeted", "front_run"):
            return FINISHED if self._next >= len(self.samples) and not obs.in_flight else None
        return None
