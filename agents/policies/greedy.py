"""Greedy: maximises its own profit under Deposit, Refund and Take.

Point by point against the reference simulation's agent (microsoft/0xDeCA10B, simulation/decai/
simulation/simulate.py), which has no greedy agent of its own: greedy plays the same claim loop as
every agent there, and chooses when to contribute by expected value.
* Claims (agents/policies/claims.py, as every built-in policy): refunds its own contributions once
  the model agrees; takes others' contributions the model rejects, when it has verified
  contributions: the reward is `deposit * numValid / totalGoodDataCount` (at most what is left),
  sent when it exceeds the fee by `min_profit`; and comes back once the any-address window opens to
  take the whole remainder of anything left, its own first. Retries until nothing is left.
* Raises its tip for a claim worth more than the extra fee: the tip grows with `tip_share` of the
  reward per gas, capped at `max_tip`, since racing other takers for the same deposit is won by fee.
* Contributes only when it pays: a sample whose true label the model already predicts (so the
  refund is near certain, probability `p_agree`) at the current deposit price, if
  `p_agree * value_per_valid - (1 - p_agree) * deposit - fees > 0`, where `value_per_valid` is what
  one more verified contribution is worth in future takes (parameter; by default the deposits it has
  seen taken-able per verified contribution). A sample that comes up while the price is too high is
  passed over; the next arrival is weighed at the price then (the deposit drops with the square
  root of the time since the last add).
* In a prediction market (a fixed stake, paid back with a share of the bounty to contributions that
  improve the model) it adds the samples the model currently gets wrong, the ones that can earn,
  when the stake is within `max_deposit`.
* Every time it could act and does not, it counts why (`reasons()`: no samples left, model agrees
  or disagrees, deposit above its cap, expected value below 0, fee above reward, ...), so a greedy
  agent that never acts says why in its summary.
* Settlement: stops contributing, keeps claiming; `next_wake` is its next claim moment.

Parameters: p_agree (0.95), value_per_valid (None: estimated), max_deposit (None: no cap),
tip_share (0.1), max_tip (50 gwei), base_tip (1 gwei), min_profit (0), max_in_flight (6), and the
claim loop's (see honest).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ..arrivals import Arrivals
from .base import Action, AddData, Mechanism, Observation, Policy, PolicyContext, PublicContribution, Wants
from .claims import ClaimLoop
from .params import ClaimParams, OptWei, Wei

GWEI = 10**9
REPORT_GAS = 120_000  # typical gas of a report (take)
ADD_GAS = 200_000
REFUND_GAS = 110_000


class GreedyParams(ClaimParams):
    p_agree: float = Field(0.95, ge=0, le=1)
    value_per_valid: OptWei = None
    max_deposit: OptWei = None
    tip_share: float = Field(0.1, ge=0)
    max_tip: Wei = 50 * GWEI
    base_tip: Wei = GWEI
    min_profit: Wei = 0
    max_in_flight: int = Field(6, ge=1)


class GreedyPolicy(Policy):
    name: ClassVar[str] = "greedy"
    role: ClassVar[str] = "opportunist"
    needs_public: ClassVar[bool] = True
    Params = GreedyParams

    def __init__(self, ctx: PolicyContext):
        super().__init__(ctx)
        p: GreedyParams = self.typed
        self.p = p
        self.p_agree = p.p_agree
        self.max_in_flight = p.max_in_flight
        self.arrivals = Arrivals.from_params(self.params)
        self.claims = ClaimLoop(p.claim_rules(min_reward_over_fee=p.min_profit), tip_for=self._tip_for)
        self._next = 0
        self._skips: dict[str, int] = {}

    # ---- what it needs to know ----------------------------------------------------------------

    def adding(self, obs: Observation) -> bool:
        return self._next < len(self.samples) and not obs.settling

    def wants(self, obs: Observation) -> Wants:
        assert self.claims is not None
        w = self.claims.wants(obs)
        if self.adding(obs):
            w.predictions.add(self.samples[self._next].data)
            w.num_valid = w.num_valid or obs.mechanism.claims == "deposit"
        return w

    # ---- decisions ----------------------------------------------------------------------------

    def _gas_price(self, obs: Observation, tip: int) -> int:
        return obs.base_fee + tip

    def _tip_for(self, obs: Observation, reward: int) -> int:
        extra = int(self.p.tip_share * reward / REPORT_GAS)
        return min(self.p.base_tip + extra, self.p.max_tip)

    def reward_of(self, obs: Observation, c: PublicContribution) -> int:
        """What a report of `c` would pay this agent now (0 if it would revert)."""
        assert self.claims is not None
        m = obs.mechanism
        left = obs.claimable.get(c.key, 0)
        if left <= 0:
            return 0
        t = obs.time - c.added_time
        if t >= m.any_address_claim_wait:
            return left
        if c.author == obs.address or t < m.refund_wait:
            return 0
        return self.claims.reward(obs, c, left, obs.predictions.get(c.data, c.label))

    def value_per_valid(self, obs: Observation) -> int:
        if self.p.value_per_valid is not None:
            return self.p.value_per_valid
        # Deposits of others the model currently rejects, spread over the verified contributions
        # that share them: what one more verified contribution would have been worth so far.
        rejectable = sum(c.deposit for c in obs.public
                         if c.author != obs.address and obs.predictions.get(c.data, c.label) != c.label)
        return rejectable // max((obs.total_good or 0) + 1, 1)

    def contribution_ev(self, obs: Observation, deposit: int, agrees: bool) -> float:
        p = self.p_agree if agrees else 1 - self.p_agree
        fees = (ADD_GAS + REFUND_GAS) * self._gas_price(obs, self.p.base_tip)
        return p * self.value_per_valid(obs) - (1 - p) * deposit - fees

    def _skip(self, reason: str) -> None:
        self._skips[reason] = self._skips.get(reason, 0) + 1

    def reasons(self) -> dict[str, int]:
        out = super().reasons()
        for k, v in self._skips.items():
            out[k] = out.get(k, 0) + v
        return out

    def decide(self, obs: Observation) -> list[Action]:
        assert self.claims is not None
        budget = self.max_in_flight - obs.in_flight
        actions: list[Action] = self.claims.decide(obs, max(budget, 0))
        budget -= len(actions)
        if not self.adding(obs):
            return actions
        if budget <= 0:
            self._skip("in-flight limit")
            return actions
        if self.arrivals.draw(obs.time, obs.block_time, self.rng, obs.load) <= 0:
            return actions  # no sample came up this block: not a decision
        s = self.samples[self._next]
        prediction = obs.predictions.get(s.data)
        if prediction is None:
            self._skip("model unanswered")
            return actions
        agrees = prediction == s.label
        deposit = obs.deposit_now()
        cap = self.p.max_deposit
        self._next += 1  # the sample is decided on now, used or not
        if cap is not None and deposit > cap:
            self._skip("deposit above max_deposit")
        elif obs.mechanism.kind == "prediction_market":
            # Only contributions that correct the model can earn a share of the bounty.
            if agrees:
                self._skip("market: model already right")
            else:
                actions.append(AddData(s, value=obs.mechanism.max_deposit))
        elif not agrees:
            self._skip("model disagrees (deposit likely lost)")
        elif self.contribution_ev(obs, deposit, agrees) <= 0:
            self._skip("expected value below 0")
        else:
            # Send the price seen plus a margin for adds landing first in the block.
            actions.append(AddData(s, value=obs.mechanism.max_deposit))
        return actions

    def public_horizon(self, mechanism: Mechanism) -> int:
        """Others' contributions matter only to its claims, once their refund wait has passed."""
        return mechanism.refund_wait

    # public_needed_from stays 0: its value of a verified contribution sums every deposit so far.

    def next_wake(self, obs: Observation) -> int | None:
        """Every block while it has samples to place; otherwise its next claim moment (its own
        refund, others' report windows, the any-address window), so idle days can be skipped."""
        assert self.claims is not None
        if self.adding(obs) or obs.in_flight:
            return None
        return self.claims.next_moment(obs)
