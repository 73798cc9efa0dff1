"""The invariant interface, the per-check context and the registry (built-ins + entry points).

An invariant is a property of the deployed system that must hold after every block. It is checked
incrementally: the monitor reads what changed since the last check once (`ctx.view`: the system's
events and the claims they stand for) and each invariant makes a few batched reads at the block,
never a rescan of the history per block.

Users add their own by subclassing `Invariant` and either calling `register(MyInvariant)` before
the run, naming `module.path:Class` in `telemetry.invariants.extra`, or declaring an entry point in
the `dcai.invariants` group of their package (`name = "module.path:Class"`).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

import structlog

from contracts.abi import ContractABI
from contracts.deploy import DeployedSystem
from contracts.rpc import RpcClient, RpcError

log = structlog.get_logger("dcai.invariants")

ENTRY_POINT_GROUP = "dcai.invariants"


class InvariantError(ValueError):
    pass


@dataclass(frozen=True)
class Violation:
    invariant: str
    block: int
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "block": self.block, "message": self.message, "details": self.details}


@dataclass(frozen=True)
class Contribution:
    """One AddData event: the data handler's key and what the event says."""

    key: bytes  # keccak256(abi.encodePacked(data, label, addedTime, author)); b"" for a market
    author: str
    label: int
    added_time: int
    deposit: int
    data: tuple[int, ...]
    block: int
    tx_hash: str


@dataclass(frozen=True)
class Claim:
    """A successful refund or report (take), from the mechanism's Refund / Report event and the
    call that emitted it. `key` is None when the call could not be decoded (a contract called the
    trainer): invariants then fall back to rereading what they track."""

    kind: str  # "refund" | "report"
    claimer: str
    amount: int  # wei paid (0 for the points mechanism)
    key: bytes | None
    author: str | None
    block: int
    tx_hash: str


@dataclass
class ChangeView:
    """What the system's events say happened in blocks (first, last], in chain order."""

    first: int  # exclusive
    last: int
    logs: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # name, args, raw log
    contributions: list[Contribution] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)

    @property
    def unattributed(self) -> bool:
        return any(c.key is None for c in self.claims)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [args for n, args, _ in self.logs if n == name]


class InvariantContext:
    """What an invariant sees: the chain client, the deployed system, the run's mechanism and model,
    the changes since the last check (`view`), every contribution so far (`contributions`, by key
    for trainers, in order for markets) and shared batched reads."""

    def __init__(self, client: RpcClient, system: DeployedSystem, mechanism: str, *, window: int = 512):
        self.client = client
        self.system = system
        self.mechanism = mechanism
        self.model_contract = system.model_contract
        self.window = window
        self.view = ChangeView(system.block, system.block)
        self.contributions: dict[bytes, Contribution] = {}
        self.market_contributions: list[Contribution] = []
        self.authors: list[str] = []  # every contribution's author, first appearance order
        self._author_set: set[str] = set()
        self._cache: dict[tuple[Any, ...], Any] = {}

    def new_check(self, view: ChangeView) -> None:
        self.view = view
        self._cache.clear()
        for c in view.contributions:
            if self.mechanism == "prediction_market":
                self.market_contributions.append(c)
            else:
                self.contributions[c.key] = c
            if c.author not in self._author_set:
                self._author_set.add(c.author)
                self.authors.append(c.author)

    async def calls(self, calls: Sequence[tuple[str, ContractABI, str, tuple[Any, ...]]], block: int) -> list[Any]:
        """View calls (address, abi, function, args) at `block` in one JSON-RPC batch, decoded."""
        if not calls:
            return []
        tag = hex(block)
        replies = await self.client.batch(
            [("eth_call", [{"to": to, "data": "0x" + abi.encode(fn, *args).hex()}, tag]) for to, abi, fn, args in calls])
        out = []
        for (_, abi, fn, _), r in zip(calls, replies):
            if isinstance(r, (RpcError, Exception)):
                raise r
            out.append(abi.fn(fn).decode(bytes.fromhex(r[2:])))
        return out

    async def balance(self, address: str, block: int) -> int:
        return int(await self.client.call("eth_getBalance", address, hex(block)), 16)

    async def contribution_states(self, keys: Sequence[bytes], block: int) -> dict[bytes, tuple[int, int, int, bool, bool]]:
        """The data handler's record (deposit, remainder, claims, author claimed, exists) of each key
        at `block`; shared by the invariants within one check."""
        missing = [k for k in dict.fromkeys(keys) if ("contribution", k, block) not in self._cache]
        if missing:
            abi = self.system.abis["DataHandler"]
            got = await self.calls([(self.system.data_handler, abi, "getContribution", (k,)) for k in missing], block)
            for k, v in zip(missing, got):
                self._cache[("contribution", k, block)] = tuple(v)
        return {k: self._cache[("contribution", k, block)] for k in keys}


def claim_style(mechanism: str) -> str:
    """The registered mechanism's `claims` ("deposit", "points", "none"); "" if it is not registered."""
    from ..mechanisms import mechanisms  # late: the registry loads plugins on first use

    cls = mechanisms().get(mechanism)
    return cls.claims if cls is not None else ""


class Invariant(ABC):
    """A property checked after every block. Subclasses set `name` (unique), may restrict
    `mechanisms` (incentive types) and `models` (model contract names), and implement `check`,
    which returns the violations found at `block` (an empty list when the property holds).
    `start` is awaited once before the first check, with the first block checked."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    mechanisms: ClassVar[frozenset[str] | None] = None  # None: every mechanism
    models: ClassVar[frozenset[str] | None] = None  # None: every model family
    # Mechanisms by what they allow (their `claims`: "deposit", "points", "none") rather than by name,
    # so a plugin mechanism gets the checks of its kind. None: no restriction.
    claim_styles: ClassVar[frozenset[str] | None] = None

    def applies(self, ctx: InvariantContext) -> bool:
        return ((self.mechanisms is None or ctx.mechanism in self.mechanisms)
                and (self.claim_styles is None or claim_style(ctx.mechanism) in self.claim_styles)
                and (self.models is None or ctx.model_contract in self.models))

    async def start(self, ctx: InvariantContext, block: int) -> None:  # noqa: B027 - optional hook
        """Read the baseline at `block` (before the first check covers it)."""

    @abstractmethod
    async def check(self, ctx: InvariantContext, block: int) -> list[Violation]:
        """The violations at `block`, given `ctx.view` (what changed since the previous check)."""

    def violation(self, block: int, message: str, **details: Any) -> Violation:
        return Violation(self.name, block, message, details)


InvariantFactory = Callable[[], Invariant]
_REGISTRY: dict[str, InvariantFactory] = {}
_BUILTINS: list[str] = []


def register(factory: InvariantFactory, name: str | None = None, *, builtin: bool = False) -> InvariantFactory:
    """Register an invariant class (or a no-argument factory) under `name` (default: its `name`).
    Usable as a class decorator."""
    key = name or getattr(factory, "name", "") or getattr(factory, "__name__", "")
    if not key:
        raise InvariantError(f"{factory!r}: an invariant needs a name")
    _REGISTRY[key] = factory
    if builtin and key not in _BUILTINS:
        _BUILTINS.append(key)
    return factory


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def builtin_names() -> list[str]:
    _load_builtins()
    return list(_BUILTINS)


def _load_builtins() -> None:
    from . import builtin  # noqa: F401 - registers the built-ins on import


def _import_path(path: str) -> InvariantFactory:
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise InvariantError(f"{path!r}: expected module.path:Class")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise InvariantError(f"{path!r}: cannot import ({type(e).__name__}: {e})") from None
    return obj  # type: ignore[no-any-return]


def available() -> dict[str, InvariantFactory]:
    """Built-ins, then the `dcai.invariants` entry points, then those registered at run time."""
    _load_builtins()
    found: dict[str, InvariantFactory] = {n: _REGISTRY[n] for n in _BUILTINS}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plug-in must not stop the run
            log.warning("invariant entry point failed to load", name=ep.name, value=ep.value,
                        error=f"{type(e).__name__}: {e}")
    found.update({n: f for n, f in _REGISTRY.items() if n not in found})
    return found


def resolve(only: Sequence[str] | None = None, skip: Sequence[str] = (), extra: Sequence[str] = ()) -> list[Invariant]:
    """Instances of the selected invariants (`only`: names or module:Class; default every available
    one), minus `skip`, plus `extra` import paths. Unknown names raise InvariantError."""
    table = available()
    chosen: list[InvariantFactory] = []
    for name in (list(only) if only is not None else list(table)):
        if name in skip:
            continue
        if name in table:
            chosen.append(table[name])
        elif ":" in name:
            chosen.append(_import_path(name))
        else:
            raise InvariantError(f"unknown invariant {name!r} (available: {', '.join(sorted(table))})")
    chosen.extend(_import_path(p) for p in extra)
    out: list[Invariant] = []
    for factory in chosen:
        inv = factory()
        if not isinstance(inv, Invariant):
            raise InvariantError(f"{factory!r} did not make an Invariant (got {type(inv).__name__})")
        out.append(inv)
    return out
