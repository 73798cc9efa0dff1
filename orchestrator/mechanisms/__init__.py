"""Incentive mechanisms: one module each, registered by name.

A mechanism owns its scenario section (a pydantic config whose `type` names it), its contracts and
their deploy, the parameters the shards' agents need (`ShardParams`), what happens after the
schedule (`settle`: a prediction market's end, reveal, reward passes and collects) and what it
allows (idle-time warps, model families, which claims agents may make). A plugin's Solidity sources
live in its own folder (`sources`) and compile together with the built-in ones. Built-ins: `stakeable`, `points`, `prediction_market`;
plugins register in code (`register_mechanism`) or by the entry-point group `dcai.mechanisms`
(`name = "package.module:MechanismClass"`). The scenario's `incentive` section is a discriminated
union (on `type`) of every registered mechanism's config.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from agents.policies.base import CLAIM_STYLES
from orchestrator.scenario_locate import field_error
from orchestrator.scenario_types import DurationS, StrictModel as Strict, Wei

ENTRY_POINT_GROUP = "dcai.mechanisms"


class IncentiveConfig(Strict):
    """The `incentive` section; each mechanism subclasses it with `type: Literal["its name"]`."""

    type: str


class BuiltinIncentiveFields(IncentiveConfig):
    """The keys of the three built-in mechanisms. Each built-in accepts all of them (one base file
    can be swept over `incentive.type`); a key that does not apply to the chosen type is ignored."""

    bounty: Wei = Field(10**18, description="prediction_market: the provider's bounty")
    min_stake: Wei = Field(10**16, description="prediction_market: the stake sent with each contribution")
    portions: int = Field(4, ge=2, le=64, description="prediction_market: test-set portions committed by hash")
    min_contributions: int = Field(1, ge=1, description="prediction_market: contributions before it may end")
    cost_weight: Wei = Field(10**12, description="deposit per contribution scales with this (stakeable)")
    refund_wait: DurationS = Field(86_400, description="before a contributor may claim a refund")
    owner_claim_wait: DurationS = Field(
        8 * 86_400, description="before the owner may take a bad contribution's deposit"
    )
    any_address_claim_wait: DurationS = Field(
        9 * 86_400, description="before anyone may take a bad contribution's deposit"
    )

    @model_validator(mode="after")
    def _waits_in_order(self) -> BuiltinIncentiveFields:
        if not self.refund_wait <= self.owner_claim_wait <= self.any_address_claim_wait:
            # Blame the later wait of the first pair out of order if the file sets it, else the earlier.
            pair = (("refund_wait", "owner_claim_wait") if self.refund_wait > self.owner_claim_wait
                    else ("owner_claim_wait", "any_address_claim_wait"))
            blamed = pair[1] if pair[1] in self.model_fields_set else pair[0]
            raise field_error(
                (blamed,), "waits must satisfy refund_wait <= owner_claim_wait <= any_address_claim_wait "
                f"(got refund_wait={self.refund_wait}s, owner_claim_wait="
                f"{self.owner_claim_wait}s, any_address_claim_wait={self.any_address_claim_wait}s)")
        return self


@dataclass(frozen=True)
class ShardParams:
    """What the shards' agents are told about the mechanism (agents.shard.ShardConfig fields)."""

    mechanism: str
    cost_weight: int = 0
    refund_wait: int = 0
    owner_claim_wait: int | None = None
    any_address_claim_wait: int | None = None
    stake: int | None = None  # a fixed price per contribution (None: Stakeable's price from cost_weight)
    report_share_bps: int | None = None  # a take's fixed share of the deposit (None: Stakeable's share)


@dataclass
class DeployContext:
    """What a mechanism's deploy may use: set up by the run's world before any agent exists."""

    client: Any  # contracts.rpc.RpcClient
    tx: Any  # contracts.transact.Transactor of the funding account (the deployer)
    compiled: Any  # contracts.compiler.CompileResult
    model_spec: Any  # contracts.deploy.ModelSpec, trained before deploy
    dataset: Any  # orchestrator.datasets.Dataset
    test_rows: Any  # the held-out rows' indices
    scenario: Any


@dataclass
class SettleContext:
    """What a mechanism's settlement may use once the schedule has ended."""

    client: Any
    tx: Any
    pool: Any  # orchestrator.run.shards.ShardPool
    latest: Callable[[], Awaitable[Any]]  # the head as a BlockInfo
    step: Callable[[Any], Awaitable[tuple[Any, list[Any]]]]  # one block on: (new head, tick reports)


@dataclass
class Mechanism:
    """Base of every mechanism: subclass, set the class attributes, override what differs."""

    config: Any
    info: dict[str, Any] = field(default_factory=dict)  # recorded in summary.json (e.g. the market's round)

    name: ClassVar[str] = ""
    config_cls: ClassVar[type[IncentiveConfig]] = IncentiveConfig
    contracts: ClassVar[tuple[str, ...]] = ()  # Solidity contract names this mechanism deploys
    allows_warps: ClassVar[bool] = True  # idle chain time may be skipped to the agents' next wake
    models: ClassVar[tuple[str, ...] | None] = None  # model types it supports (None: every one)
    # Agents claim from the contract after the schedule (refunds, takes): the run settles them.
    agents_claim: ClassVar[bool] = True
    # Which claims the agents' policies may make (agents.policies.base.Mechanism.claims): "deposit"
    # (refund, report, take-all of a deposit held by the trainer), "points" (validate or block, no
    # ether) or "none". Trainer invariants (deposits backed, claims once) apply to "deposit" and "points".
    claims: ClassVar[str] = "deposit"
    # Folders of this mechanism's own Solidity sources, compiled with the built-in ones (which they
    # import by source name, e.g. `import {Ownable} from "Ownable.sol";`).
    sources: ClassVar[tuple[Path, ...]] = ()

    async def deploy(self, ctx: DeployContext) -> Any:
        """Deploy the system; returns a contracts.deploy.DeployedSystem."""
        raise NotImplementedError

    def shard_params(self) -> ShardParams:
        return ShardParams(mechanism=self.name)

    async def settle(self, ctx: SettleContext) -> None:
        """After the schedule (and the agents' own settlement): the mechanism's closing steps."""

    def deposit_holder(self, system: Any) -> str:
        """The contract holding the agents' deposits: its balance at the end is ether left locked."""
        return str(system.trainer)


_REGISTRY: dict[str, type[Mechanism]] = {}
_listeners: list[Callable[[], None]] = []
_loaded = False


def register_mechanism(cls: type[Mechanism]) -> type[Mechanism]:
    """Register a mechanism class (usable as a decorator); the scenario schema is rebuilt to include it."""
    _check(cls)
    _REGISTRY[cls.name] = cls
    for notify in _listeners:
        notify()
    return cls


def _check(cls: Any) -> None:
    """Refuse what could not run: the same checks for code registration and entry points."""
    if not (isinstance(cls, type) and issubclass(cls, Mechanism)) or not cls.name:
        raise TypeError(f"{cls!r} is not a Mechanism subclass with a name")
    if cls.claims not in CLAIM_STYLES:
        raise TypeError(f"mechanism {cls.name!r}: claims {cls.claims!r} is not one of {sorted(CLAIM_STYLES)}")
    if cls.config_cls.model_fields["type"].annotation is str:
        raise TypeError(f"mechanism {cls.name!r}: its config's `type` must be Literal[{cls.name!r}]")


def unregister_mechanism(name: str) -> None:
    _REGISTRY.pop(name, None)
    for notify in _listeners:
        notify()


def on_change(listener: Callable[[], None]) -> None:
    _listeners.append(listener)


def mechanisms() -> dict[str, type[Mechanism]]:
    _load()
    return dict(_REGISTRY)


def mechanism_for(config: IncentiveConfig) -> Mechanism:
    """The mechanism of a validated `incentive` section, ready to deploy."""
    return mechanisms()[config.type](config)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import market, points, stakeable  # noqa: F401 - register the built-ins

    builtins = set(_REGISTRY)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
            _check(cls)
            if cls.name in builtins:  # a scenario's `stakeable` must mean the shipped one everywhere
                raise ValueError(f"the name {cls.name!r} is a built-in mechanism's")
            _REGISTRY[cls.name] = cls
        except Exception as e:  # noqa: BLE001 - one broken plugin must not take the others down
            warnings.warn(f"mechanism plugin {ep.name!r} ({ep.value}) could not be loaded: "
                          f"{type(e).__name__}: {e}", stacklevel=2)
