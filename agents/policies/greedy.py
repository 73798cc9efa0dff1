"""Greedy: maximises its own profit under Deposit, Refund and Take.

Decision rule, each block:
* Refunds its own contributions as soon as they are refundable and the model agrees (free call).
* Takes: for each contribution of others whose refund wait has passed, that it has not claimed and
  that still holds a deposit, if the model now disagrees with its label (free call) and the agent
  has a verified contribution, the reward is `deposit * numValid / totalGoodDataCount` (or all that
  is left); it reports when the reward exceeds the report's fee. Once the any-address window opens
  it collects the whole remainder of anything left, its own included.
* Raises its tip for a claim worth more than the extra fee: the tip grows with `tip_share` of the
  reward per gas, capped at `max_tip`, since racing other takers for the same deposit is won by fee.
* Contributes only when it pays: a sample whose true label the model already predicts (so the
  refund is near certain, probability `p_agree`) at the current deposit price, if
  `p_agree * value_per_valid - (1 - p_agree) * deposit - fees > 0`, where `value_per_valid` is what
  one more verified contribution is worth in future takes (parameter; by default the deposits it has
  seen taken-able per verified contribution). It waits for the price to fall: the deposit drops with
  the square root of the time since the last add.

Parameters: p_agree (0.95), value_per_valid (None: estimated), max_deposit (None: no cap),
tip_share (0.1), max_tip (50 gwei), gas_price_guess (None: the next base fee + tip),
min_profit (0), max_in_flight (6).
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
    PublicContribution,
    Refund,
    Report,
    Wants,
)

GWEI = 10**9
REPORT_GAS = 120_000  # typical gas of a report (take)
ADD_GAS = 200_000
REFUND_GAS = 110_000


class GreedyPolicy(Policy):
    name: ClassVar[str] = "greedy"
    role: ClassVar[str] = "opportunist"
    needs_public: ClassVar[bool] = True
    param_defaults: ClassVar[dict[str, Any]] = {
        "rate": 0.05, "arrival": "poisson", "p_agree": 0.95, "value_per_valid": None, "max_deposit": None,
        "tip_share": 0.1, "max_tip": 50 * GWEI, "base_tip": GWEI, "min_profit": 0, "max_in_flight": 6,
        "burst_size": 10, "burst_every": 60, "max_gap": None,
    }

    def __init__(self, ctx: PolicyContext):
        super().__init__(ctx)
        p = self.params
        self.p_agree = float(p["p_agree"])
        self.max_in_flight = int(p["max_in_flight"])
        self.arrivals = Arrivals.from_params(p)
        for k in ("value_per_valid", "max_deposit", "max_tip", "base_tip", "min_profit"):
            if self.params[k] is not None:
                self.params[k] = parse_wei(self.params[k])
        self._next = 0
        self._claimed: set[tuple[str, int, int, tuple[int, ...]]] = set()
        self._empty: set[tuple[str, int, int, tuple[int, ...]]] = set()  # nothing left: never ask again

    # ---- what it needs to know ----------------------------------------------------------------

    def _due_own(self, obs: Observation) -> list[int]:
        return [c.id for c in obs.contributions
                if c.state is ContributionState.ADDED and c.deposit > 0
                and obs.time >= c.added_time + obs.mechanism.refund_wait]

    def _candidates(self, obs: Observation) -> list[PublicContribution]:
        m = obs.mechanism
        out = []
        for c in obs.public:
            if c.key in self._claimed or c.key in self._empty or c.deposit == 0:
                continue
            t = obs.time - c.added_time
            if t >= m.any_address_claim_wait or (c.author != obs.address and t >= m.refund_wait):
                out.append(c)
        return out

    def wants(self, obs: Observation) -> Wants:
        w = Wants(num_valid=True)
        w.predictions = {obs.contributions[i].data for i in self._due_own(obs)}
        cands = self._candidates(obs)
        w.predictions |= {c.data for c in cands}
        w.claimable = cands
        if self._next < len(self.samples):
            w.predictions.add(self.samples[self._next].data)
        return w

    # ---- decisions ----------------------------------------------------------------------------

    def _gas_price(self, obs: Observation, tip: int) -> int:
        return obs.base_fee + tip

    def _tip_for(self, obs: Observation, reward: int) -> int:
        base = int(self.params["base_tip"])
        extra = int(float(self.params["tip_share"]) * reward / REPORT_GAS)
        return min(base + extra, int(self.params["max_tip"]))

    def reward_of(self, obs: Observation, c: PublicContribution) -> int:
        """What a report of `c` would pay this agent now (0 if it would revert)."""
        m = obs.mechanism
        left = obs.claimable.get(c.key, 0)
        if left <= 0:
            return 0
        t = obs.time - c.added_time
        if t >= m.any_address_claim_wait:
            return left
        if c.author == obs.address or t < m.refund_wait:
            return 0
        if obs.predictions.get(c.data, c.label) == c.label:
            return 0  # the model agrees: the take would revert
        valid, total = obs.num_valid or 0, obs.total_good or 0
        if valid == 0 or total == 0:
            return 0
        share = c.deposit * valid // total
        return left if share == 0 or share > left else share

    def value_per_valid(self, obs: Observation) -> int:
        v = self.params["value_per_valid"]
        if v is not None:
            return int(v)
        # Deposits of others the model currently rejects, spread over the verified contributions
        # that share them: what one more verified contribution would have been worth so far.
        rejectable = sum(c.deposit for c in obs.public
                         if c.author != obs.address and obs.predictions.get(c.data, c.label) != c.label)
        return rejectable // max((obs.total_good or 0) + 1, 1)

    def contribution_ev(self, obs: Observation, deposit: int, agrees: bool) -> float:
        p = self.p_agree if agrees else 1 - self.p_agree
        fees = (ADD_GAS + REFUND_GAS) * self._gas_price(obs, int(self.params["base_tip"]))
        return p * self.value_per_valid(obs) - (1 - p) * deposit - fees

    def decide(self, obs: Observation) -> list[Action]:
        actions: list[Action] = []
        budget = self.max_in_flight - obs.in_flight
        for cid in self._due_own(obs):
            c = obs.contributions[cid]
            if budget > 0 and obs.predictions.get(c.data) == c.label:
                actions.append(Refund(cid))
                budget -= 1
        for key, left in obs.claimable.items():
            if left == 0:
                self._empty.add(key)  # refunded or taken in full: it can never pay again
        takes = []
        for c in self._candidates(obs):
            reward = self.reward_of(obs, c)
            if reward <= 0:
                continue
            tip = self._tip_for(obs, reward)
            profit = reward - REPORT_GAS * self._gas_price(obs, tip)
            if profit > int(self.params["min_profit"]):
                takes.append((profit, c, tip))
        for profit, c, tip in sorted(takes, key=lambda x: -x[0]):
            if budget <= 0:
                break
            self._claimed.add(c.key)
            actions.append(Report(c, tip=tip))
            budget -= 1
        if budget > 0 and self._next < len(self.samples):
            s = self.samples[self._next]
            deposit = obs.deposit_now()
            cap = self.params["max_deposit"]
            agrees = obs.predictions.get(s.data) == s.label
            if self.arrivals.draw(obs.time, obs.block_time, self.rng, obs.load) > 0:
                if not agrees:
                    self._next += 1  # a sample the model rejects would likely lose its deposit: skip it
                elif (cap is None or deposit <= int(cap)) and self.contribution_ev(obs, deposit, agrees) > 0:
                    self._next += 1
                    # Send the price seen plus a margin for adds landing first in the block.
                    actions.append(AddData(s, value=obs.mechanism.max_deposit))
        return actions

    def next_wake(self, obs: Observation) -> int | None:
        """Every block while it has samples to place; otherwise the next moment a claim window opens
        on a contribution it has not claimed (its own refund wait, others' refund wait, the
        any-address window), so idle days can be skipped."""
        if self._next < len(self.samples) or obs.in_flight:
            return None
        m = obs.mechanism
        moments = []
        for c in obs.contributions:
            if c.state is ContributionState.ADDED and c.deposit > 0:
                moments.append(c.added_time + m.refund_wait)
        for c in obs.public:
            if c.key in self._claimed or c.key in self._empty or c.deposit == 0:
                continue
            moments.append(c.added_time + m.any_address_claim_wait)
            if c.author != obs.address:
                moments.append(c.added_time + m.refund_wait)
        # What is claimable now was weighed this block; look again when the next window opens.
        future = [t for t in moments if t > obs.time]
        return min(future) if future else FINISHED
