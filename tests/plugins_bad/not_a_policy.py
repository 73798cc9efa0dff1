"""A policy plugin whose class does not derive from agents.policies.base.Policy."""


class Bot:
    def decide(self, obs):  # type: ignore[no-untyped-def]
        return []
