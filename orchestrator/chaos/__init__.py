"""Chaos events: one class per event, registered by name.

An event is a pydantic model (its `at` block offset, its `event` name as a Literal, its own fields),
the node capabilities it needs, `apply(ctx)` doing it to the chain between two blocks and returning
what to record, and `label()` for logs and plots. Built-ins live in `orchestrator/chaos/builtin.py`;
plugins register the same way, in code (`register_chaos`) or by the entry-point group `dcai.chaos`
(`name = "package.module:EventClass"`). The scenario's `schedule.chaos` list is a discriminated
union (on `event`) of every registered class, so validation and `dcai schema` include plugins.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

from pydantic import Field

from orchestrator.schema_types import Blocks, Strict

ENTRY_POINT_GROUP = "dcai.chaos"

# What a node kind can do on request. Managed anvil has them all; an external node by URL none of
# the control ones (chaos against it is refused at validation, naming the capability).
CAPABILITIES = ("txpool", "state_dump", "mining_control", "time_travel", "reorg", "drop_tx",
                "base_fee_control", "gas_limit_control", "prune_history")
ANVIL_CAPABILITIES = frozenset(CAPABILITIES)
EXTERNAL_CAPABILITIES: frozenset[str] = frozenset()


def node_capabilities(chain: Any) -> frozenset[str]:
    """The capabilities of the node a chain config asks for (node kinds will declare their own)."""
    return EXTERNAL_CAPABILITIES if getattr(chain, "rpc_url", None) else ANVIL_CAPABILITIES


@dataclass
class ChaosContext:
    """What an event may touch: the run's collaborators at the block it is applied."""

    client: Any  # contracts.rpc.RpcClient
    head: Any  # agents.shard.BlockInfo: the block the agents just acted on
    start_block: int
    clock: Any  # orchestrator.run.clock.Clock: mining, block time, pauses
    pool: Any  # orchestrator.run.shards.ShardPool
    node: Any  # the managed node or None
    monitor: Any  # orchestrator.monitor.ChainMonitor
    recovery: Any  # orchestrator.run.recovery.Recovery: checkpoint and snapshot blocks
    rng: Any  # numpy Generator, seeded from the scenario: same seed, same choices


class ChaosEvent(Strict):
    """Something done to the chain at block `at` (offset from the start of the run)."""

    at: Blocks = Field(ge=0, description="block offset from the start of the run")
    event: str

    # Node capabilities the event needs, and the node methods behind them (for messages).
    needs: ClassVar[tuple[str, ...]] = ()
    primitive: ClassVar[str] = ""

    def check(self, scenario: Any) -> None:
        """Cross-field checks against the whole scenario; raise ValueError with the fix."""
        caps = node_capabilities(scenario.chain)
        missing = [c for c in self.needs if c not in caps]
        if missing:
            raise ValueError(
                f"schedule.chaos: event {self.event!r} needs {self.primitive or ', '.join(missing)}, which only a "
                f"node this run manages (anvil) offers (node capability {', '.join(repr(m) for m in missing)}); "
                "remove chain.rpc_url or the chaos events")

    async def apply(self, ctx: ChaosContext) -> dict[str, Any]:
        """Do the event now; return the fields to record with it."""
        raise NotImplementedError

    def label(self) -> str:
        return self.event


_REGISTRY: dict[str, type[ChaosEvent]] = {}
_listeners: list[Callable[[], None]] = []
_loaded_entry_points = False


def _name_of(cls: type[ChaosEvent]) -> str:
    ann = cls.model_fields["event"].annotation
    args = getattr(ann, "__args__", ())
    if len(args) != 1 or not isinstance(args[0], str):
        raise TypeError(f"chaos event {cls.__name__}: its `event` field must be a Literal of one name")
    return args[0]


def register_chaos(cls: type[ChaosEvent]) -> type[ChaosEvent]:
    """Register an event class (usable as a decorator). The scenario schema is rebuilt to include it."""
    if not (isinstance(cls, type) and issubclass(cls, ChaosEvent)):
        raise TypeError(f"{cls!r} is not a ChaosEvent subclass")
    _REGISTRY[_name_of(cls)] = cls
    for notify in _listeners:
        notify()
    return cls


def unregister_chaos(name: str) -> None:
    _REGISTRY.pop(name, None)
    for notify in _listeners:
        notify()


def on_change(listener: Callable[[], None]) -> None:
    """Called after every (un)registration: the scenario module rebuilds its union."""
    _listeners.append(listener)


def chaos_events() -> dict[str, type[ChaosEvent]]:
    _load()
    return dict(_REGISTRY)


def _load() -> None:
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    from . import builtin  # noqa: F401 - registers the built-in events

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
            _REGISTRY[_name_of(cls)] = cls
        except Exception as e:  # noqa: BLE001 - one broken plugin must not take the others down
            warnings.warn(f"chaos plugin {ep.name!r} ({ep.value}) could not be loaded: {type(e).__name__}: {e}",
                          stacklevel=2)
