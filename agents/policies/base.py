"""What a policy sees and what it may do. Policies are decision code only: no keys, no RPC.

A policy gets an `Observation` each block and returns `Action`s. Randomness comes from the
generator it is given, seeded from the scenario seed and the agent id, so a run is reproducible.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import numpy as np


class ContributionState(str, Enum):
    SUBMITTED = "submitted"  # addData sent, not yet mined
    ADDED = "added"  # on chain; deposit held
    REFUND_SENT = "refund_sent"
    REFUNDED = "refunded"
    FAILED = "failed"  # addData reverted or dropped


@dataclass
class Contribution:
    """One of the agent's own contributions, as the agent knows it."""

    id: int
    data: tuple[int, ...]
    label: int
    state: ContributionState = ContributionState.SUBMITTED
    added_time: int = -1  # chain time of the including block (part of the contribution's key)
    deposit: int = 0
    refunded: int = 0
    last_check_time: int = -1  # when the policy last asked the model about it
    abandoned: bool = False  # the policy stopped trying to claim it


@dataclass(frozen=True)
class Sample:
    data: tuple[int, ...]
    label: int


@dataclass
class Observation:
    block: int
    time: int  # chain time of the latest block, seconds
    base_fee: int
    block_time: int  # nominal seconds per block
    max_deposit: int  # the highest deposit the mechanism can ask (sending it always suffices)
    refund_wait: int
    in_flight: int  # this agent's transactions not yet final
    contributions: list[Contribution]
    predictions: dict[int, int] = field(default_factory=dict)  # contribution id -> model's label now


@dataclass(frozen=True)
class AddData:
    sample: Sample
    value: int  # wei sent; the excess over the deposit comes back in the same call


@dataclass(frozen=True)
class Refund:
    contribution_id: int


Action = AddData | Refund


@dataclass
class PolicyContext:
    agent_id: int
    rng: np.random.Generator
    params: dict[str, Any]
    samples: list[Sample]


class Policy:
    """Base class. Subclasses set `name` and implement `decide`."""

    name: ClassVar[str] = "policy"

    def __init__(self, ctx: PolicyContext):
        self.agent_id = ctx.agent_id
        self.rng = ctx.rng
        self.params = dict(ctx.params)
        self.samples = list(ctx.samples)

    def wants_predictions(self, obs: Observation) -> list[int]:
        """Contribution ids whose current model prediction the policy needs this block (a free call)."""
        return []

    def decide(self, obs: Observation) -> list[Action]:
        raise NotImplementedError

    def next_wake(self, obs: Observation) -> int | None:
        """Earliest chain time this agent will want to act, or None if it wants every block.
        `FINISHED` means it will never act again. Lets the orchestrator skip idle time."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, **self.params}


FINISHED = 2**63 - 1


class PolicyError(ValueError):
    pass


_BUILTIN = {
    "honest": "agents.policies.honest:HonestPolicy",
}


def resolve_policy(name: str) -> type[Policy]:
    """A built-in name, a name registered under the `dcai.policies` entry-point group, or
    `module.path:ClassName`."""
    target = _BUILTIN.get(name)
    if target is None and ":" not in name:
        from importlib.metadata import entry_points

        for ep in entry_points(group="dcai.policies"):
            if ep.name == name:
                target = ep.value
                break
    if target is None:
        if ":" not in name:
            known = sorted(_BUILTIN)
            raise PolicyError(f"unknown policy {name!r}: use one of {known}, a name registered under the "
                              f"'dcai.policies' entry point, or 'module.path:ClassName'")
        target = name
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise PolicyError(f"policy {name!r}: cannot import module {module_name!r}: {e}") from e
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise PolicyError(f"policy {name!r}: {target} is not a subclass of agents.policies.base.Policy")
    return cls
