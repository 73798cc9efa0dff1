"""A user policy living outside the package, named in a scenario as `plugin_policies:OneShotPolicy`."""

from __future__ import annotations

from typing import ClassVar

from agents.policies.base import FINISHED, Action, AddData, Observation, Policy


class OneShotPolicy(Policy):
    """Adds each of its samples once, one per block, labelled as the dataset says; never claims."""

    name: ClassVar[str] = "one_shot"

    def __init__(self, ctx):  # type: ignore[no-untyped-def]
        super().__init__(ctx)
        self._next = 0

    def decide(self, obs: Observation) -> list[Action]:
        if self._next >= len(self.samples) or obs.in_flight:
            return []
        s = self.samples[self._next]
        self._next += 1
        return [AddData(s, value=obs.mechanism.max_deposit)]

    def next_wake(self, obs: Observation) -> int | None:
        return FINISHED if self._next >= len(self.samples) and not obs.in_flight else None


class BurstPolicy(Policy):
    """Sends `burst` gas-burning calls (the trainer's predict as a transaction) in its first block,
    all in flight at once, then stops: a load generator for nonce and scale tests."""

    name: ClassVar[str] = "burst"

    def __init__(self, ctx):  # type: ignore[no-untyped-def]
        super().__init__(ctx)
        self.burst = int(self.params.get("burst", 3))
        self.done = False

    def decide(self, obs: Observation) -> list[Action]:
        if self.done:
            return []
        self.done = True
        from agents.policies.base import PredictTx

        return [PredictTx((self.agent_id % 50, 50 + k)) for k in range(self.burst)]

    def next_wake(self, obs: Observation) -> int | None:
        return FINISHED if self.done and not obs.in_flight else None
