"""A policy that fails by leaking: its first decision raises an exception quoting every secret it can
reach (the funder's key and an RPC URL with credentials, both from the environment). The secrets
test runs it to check that the console of the failing run still shows none of them."""

from __future__ import annotations

import os
from typing import ClassVar

from agents.policies.base import Action, Observation, Policy


class LeakyPolicy(Policy):
    name: ClassVar[str] = "leaky"

    def decide(self, obs: Observation) -> list[Action]:
        print(f"leaky policy sees {os.environ.get('DCAI_TEST_RPC_URL')}", flush=True)  # a worker's stdout
        raise RuntimeError(f"leaky policy gives up: key {os.environ.get('DCAI_FUNDER_KEY')} "
                           f"url {os.environ.get('DCAI_TEST_RPC_URL')}")
