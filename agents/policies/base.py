"""What a policy sees and what it may do. Policies are decision code only: no keys, no RPC.

Each block a policy first says what it needs to know beyond the basics (`wants`): the model's
prediction for some samples, the remaining deposit of some contributions, its own verified count,
the size of the pending pool. The shard answers with free calls (coalesced into batches, shared
between agents) and hands over an `Observation`; `decide` returns `Action`s. Randomness comes from
the generator the policy is given, seeded from the scenario seed and the agent id, so a run is
reproducible.
"""

from __future__ import annotations

import difflib
import importlib
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from .claims import ClaimLoop

FINISHED = 2**63 - 1  # next_wake value: this agent will never act again


class ContributionState(str, Enum):
    SUBMITTED = "submitted"  # addData sent, not yet mined
    ADDED = "added"  # on chain; deposit held
    REFUND_SENT = "refund_sent"
    REFUNDED = "refunded"  # refunded (deposit) or validated (points)
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
    add_tx: str = ""  # hash of the addData transaction that put it on chain (once mined)


@dataclass(frozen=True)
class PublicContribution:
    """A contribution anyone can see: rebuilt from the trainer's AddData events."""

    author: str
    data: tuple[int, ...]
    label: int
    added_time: int
    deposit: int
    block: int
    tx_hash: str = ""  # the addData transaction (claims record it as their target)
    index: int = field(default=-1, compare=False)  # its position in the shard's public list (-1: none)

    @property
    def key(self) -> tuple[str, int, int, tuple[int, ...]]:
        return (self.author, self.added_time, self.label, self.data)


@dataclass(frozen=True)
class Sample:
    data: tuple[int, ...]
    label: int


CLAIM_STYLES = frozenset({"deposit", "points", "none"})
BUILTIN_CLAIMS = {"stakeable": "deposit", "points": "points", "prediction_market": "none"}


@dataclass(frozen=True)
class Mechanism:
    """The incentive mechanism's public parameters."""

    kind: str  # the mechanism's registered name: "stakeable", "points", "prediction_market" or a plugin's
    cost_weight: int
    refund_wait: int
    owner_claim_wait: int
    any_address_claim_wait: int
    stake: int | None = None  # a fixed price per contribution (the market's stake, a plugin's flat bond)
    # Which claims exist, so policies act on what a mechanism allows rather than on its name:
    # "deposit": a deposit refunded to its author, taken by reporters, then by anyone (take-all);
    # "points": validation earns a point, a report blocks it, no ether moves; "none": agents never
    # claim (a prediction market settles itself). "" means: the built-in default for `kind`.
    claims: str = ""
    # "deposit": a take in the report window pays this share (basis points) of the initial deposit;
    # None: Stakeable's share, deposit * the reporter's verified count / the verified total.
    report_share_bps: int | None = None

    def __post_init__(self) -> None:
        if not self.claims:
            object.__setattr__(self, "claims", BUILTIN_CLAIMS.get(self.kind, "deposit"))
        if self.claims not in CLAIM_STYLES:
            raise ValueError(f"mechanism {self.kind!r}: claims {self.claims!r} is not one of {sorted(CLAIM_STYLES)}")

    @property
    def max_deposit(self) -> int:
        return self.stake if self.stake is not None else self.cost_weight * 3600

    def deposit_at(self, time: int, last_update: int) -> int:
        """The deposit an add mined at `time` pays (Stakeable's formula; a market's fixed stake)."""
        if self.stake is not None:
            return self.stake
        if self.cost_weight == 0:
            return 0
        return self.cost_weight * 3600 // math.isqrt(max(time - last_update, 1))


@dataclass
class Wants:
    predictions: set[tuple[int, ...]] = field(default_factory=set)  # samples to ask the model about
    claimable: list[PublicContribution] = field(default_factory=list)  # remaining deposit of these
    claimed: list[PublicContribution] = field(default_factory=list)  # whether this agent claimed these
    num_valid: bool = False  # this agent's verified count and the total (mechanism counters)
    pool: bool = False  # the node's pending-pool size

    def __bool__(self) -> bool:
        return bool(self.predictions or self.claimable or self.claimed or self.num_valid or self.pool)

    def merge(self, other: Wants) -> Wants:
        """Both sets of questions (the claim loop's and the policy's own)."""
        seen = {c.key for c in self.claimable}
        self.predictions |= other.predictions
        self.claimable += [c for c in other.claimable if c.key not in seen]
        seen = {c.key for c in self.claimed}
        self.claimed += [c for c in other.claimed if c.key not in seen]
        self.num_valid = self.num_valid or other.num_valid
        self.pool = self.pool or other.pool
        return self


@dataclass
class Observation:
    block: int
    time: int  # chain time of the latest block, seconds
    base_fee: int  # what the next block will charge
    block_time: int  # nominal seconds per block
    mechanism: Mechanism
    last_update: int  # when the last contribution was added (drives the deposit price)
    address: str
    in_flight: int  # this agent's transactions not yet final
    spent: int  # wei this agent has paid so far: deposits kept plus fees, minus what came back
    # Both index from the start of the run; long runs forget what is settled (agents/window.py).
    contributions: Sequence[Contribution]  # its own; a contribution's id is its index
    public: Sequence[PublicContribution]  # everyone's, in order of addition (shared; do not mutate)
    predictions: dict[tuple[int, ...], int] = field(default_factory=dict)
    claimable: dict[tuple[str, int, int, tuple[int, ...]], int] = field(default_factory=dict)
    claimed: dict[tuple[str, int, int, tuple[int, ...]], bool] = field(default_factory=dict)
    num_valid: int | None = None
    total_good: int | None = None
    pool_pending: int | None = None
    load: float = 1.0  # the current phase's multiplier of arrival rates
    # Settlement: the run has stopped taking contributions; agents only claim what they can.
    settling: bool = False
    # Keys of the contributions this agent has a claim (refund or report) in flight for.
    claims_in_flight: frozenset[tuple[str, int, int, tuple[int, ...]]] = frozenset()
    reserved: int = 0  # the most its in-flight transactions can still cost (value + gas limit * max fee)
    fee_cap: int = 0  # the max fee per gas its wallet would sign now (0: unknown)

    def deposit_now(self) -> int:
        """The deposit an add mined in the next block would pay."""
        return self.mechanism.deposit_at(self.time + self.block_time, self.last_update)


@dataclass(frozen=True)
class AddData:
    sample: Sample
    value: int  # wei sent; the excess over the deposit comes back in the same call
    tip: int | None = None  # override of the agent's priority fee for this transaction


@dataclass(frozen=True)
class Refund:
    contribution_id: int
    tip: int | None = None


@dataclass(frozen=True)
class Report:
    """Take (part of) someone's deposit, or under points block their validation."""

    target: PublicContribution
    tip: int | None = None


@dataclass(frozen=True)
class PredictTx:
    """Call the trainer's `predict` as a transaction: burns gas, changes nothing (spam)."""

    data: tuple[int, ...]
    tip: int | None = None


Action = AddData | Refund | Report | PredictTx


@dataclass
class PolicyContext:
    agent_id: int
    rng: np.random.Generator
    params: dict[str, Any]
    samples: list[Sample]
    n_classes: int = 2  # labels are 0 .. n_classes - 1
    dense: bool = False  # samples are fixed-point unit-norm vectors, not feature indices
    n_features: int = 0  # the model's input dimension / vocabulary (0: unknown)


class PolicyError(ValueError):
    pass


# What a participant is there for. Results use roles, never policy names: the honest-only baseline keeps
# the `honest` groups, attack cost counts the `attacker` groups, and every role but `honest` shares the
# blame for accuracy lost against that baseline. `opportunist`: plays the rules for its own gain
# (takes others' deposits, farms points) without aiming at the model. Other roles are allowed.
HONEST = "honest"
ATTACKER = "attacker"
OPPORTUNIST = "opportunist"
UNSPECIFIED = "unspecified"
KNOWN_ROLES = (HONEST, ATTACKER, OPPORTUNIST, UNSPECIFIED)


class Policy:
    """Base class. Subclasses set `name` and implement `decide`; `needs_public` asks the shard to
    keep the public list of contributions up to date."""

    name: ClassVar[str] = "policy"
    # A plugin that declares nothing is neither in the honest baseline nor counted as an attacker.
    role: ClassVar[str] = UNSPECIFIED
    needs_public: ClassVar[bool] = False
    # Plugins may declare their parameters either way: a pydantic model (`Params`, extra keys
    # forbidden), or a dict of defaults (`param_defaults`, unknown keys refused).
    Params: ClassVar[type[BaseModel] | None] = None
    param_defaults: ClassVar[dict[str, Any]] = {}
    budget: int | None = None  # wei: the shard sends nothing that could take spending past it
    claims: ClaimLoop | None = None

    def __init__(self, ctx: PolicyContext):
        self.agent_id = ctx.agent_id
        self.rng = ctx.rng
        problems = params_problems(type(self), ctx.params)
        if problems:
            raise PolicyError(f"policy {self.name!r}: " + "; ".join(f"{k}: {m}" for k, m in problems))
        self.typed: Any = None  # the validated Params instance, when the class declares a model
        if self.Params is not None:
            self.typed = self.Params.model_validate(ctx.params)
            self.params = self.typed.model_dump()
        else:
            self.params = {**self.param_defaults, **ctx.params}
        self.samples = list(ctx.samples)
        self.n_classes = ctx.n_classes
        self.dense = ctx.dense
        self.n_features = ctx.n_features

    def wrong_label(self, label: int) -> int:
        """A label other than `label`: the other class of two, else one drawn uniformly from the rest
        (binary runs draw nothing, so their random streams are what they always were)."""
        if self.n_classes <= 2:
            return 1 - label
        pick = int(self.rng.integers(self.n_classes - 1))
        return pick + (pick >= label)

    def wants(self, obs: Observation) -> Wants:
        return Wants()

    def decide(self, obs: Observation) -> list[Action]:
        raise NotImplementedError

    def next_wake(self, obs: Observation) -> int | None:
        """Earliest chain time this agent will want to act, None for every block, FINISHED for never.
        Lets the orchestrator skip idle time."""
        return None

    def public_horizon(self, mechanism: Mechanism) -> int:
        """Seconds after a contribution is added before its becoming public can change this agent's
        `next_wake` or decisions. While asleep (its wake later than that moment) the shard evaluates
        its wake again when one appears. 0 (the default): at once."""
        return 0

    def public_needed_from(self) -> int:
        """The lowest index of `obs.public` (indices count from the start of the run) this policy may
        still read. The shard forgets entries below every agent's, once settled deep enough
        (agents/shard_memory.py). 0, the default: the whole list, which the shard then keeps."""
        return 0

    def claims_need_from(self) -> int:
        """What the claim loop still needs of the public list: for policies whose only reader of it
        is their claim loop (`sys.maxsize`: nothing)."""
        if self.claims is None:
            return sys.maxsize
        cursor = self.claims.public_cursor()
        return sys.maxsize if cursor is None else cursor

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, **self.params}

    def claim_settled(self, key: tuple[str, int, int, tuple[int, ...]], action: str, ok: bool, reason: str,
                      time: int, last_window: bool) -> None:
        """A claim (refund or report) of this agent reached its final status."""
        if self.claims is not None:
            self.claims.settled(key, action, ok, reason, time, last_window)

    def reasons(self) -> dict[str, int]:
        """Counts of why the agent did not act when it could have (for its summary)."""
        return dict(self.claims.reasons) if self.claims is not None else {}

    def resume(self, adopted: list[Contribution]) -> None:
        """After a shard restart: these contributions were sent after the policy's last snapshot
        (found on chain or in the pool), so the samples they carry are used. Policies that walk
        their samples with a cursor (`_next`) move it past them; override for other bookkeeping."""
        cursor = getattr(self, "_next", None)
        if not isinstance(cursor, int) or not adopted:
            return
        used = {c.data for c in adopted}  # by data: attackers send their samples with other labels
        for i in range(cursor, len(self.samples)):
            if self.samples[i].data in used:
                self._next = i + 1


_BUILTIN = {
    "honest": "agents.policies.honest:HonestPolicy",
    "greedy": "agents.policies.greedy:GreedyPolicy",
    "adversarial": "agents.policies.adversarial:AdversarialPolicy",
    "karma_seeker": "agents.policies.karma_seeker:KarmaSeekerPolicy",
    "chain_attack": "agents.policies.chain_attacks:ChainAttackPolicy",
}


def builtin_policies() -> list[str]:
    return sorted(_BUILTIN)


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
            raise PolicyError(f"unknown policy {name!r}: use one of {builtin_policies()}, a name registered "
                              f"under the 'dcai.policies' entry point, or 'module.path:ClassName'")
        target = name
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise PolicyError(f"policy {name!r}: cannot import module {module_name!r}: {_one_line(e)}") from e
    except SyntaxError as e:
        where = f"{e.filename}:{e.lineno}" if e.filename else f"module {module_name!r}"
        raise PolicyError(f"policy {name!r}: plugin module {module_name!r} failed to import: SyntaxError in "
                          f"{where}: {e.msg}") from e
    except Exception as e:  # noqa: BLE001 - a plugin's own error (syntax, a raise at import) is the user's
        raise PolicyError(f"policy {name!r}: plugin module {module_name!r} failed to import: "
                          f"{type(e).__name__}: {_one_line(e)}") from e
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise PolicyError(f"policy {name!r}: {target} is not a subclass of agents.policies.base.Policy")
    return cls


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "..."


# Keys every group passes whatever its policy (the scenario's group fields).
COMMON_KEYS = ("rate", "arrival", "burst_size", "burst_every")


def params_problems(cls: type[Policy], params: dict[str, Any]) -> list[tuple[str, str]]:
    """What is wrong with `params` for this policy class, as (dotted key, message) pairs."""
    if cls.Params is not None:
        try:
            cls.Params.model_validate(params)
        except ValidationError as e:
            return [_explain(cls.Params, err) for err in e.errors()]
        return []
    if not cls.param_defaults:
        return []  # a plugin that declares nothing takes anything
    allowed = set(cls.param_defaults) | set(COMMON_KEYS)
    return [(k, _unknown_key(k, allowed)) for k in sorted(set(params) - allowed)]


def _unknown_key(key: str, allowed: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown parameter; {hint}allowed: {', '.join(sorted(allowed))}"


def _explain(model: type[BaseModel], err: Any) -> tuple[str, str]:
    loc = ".".join(str(x) for x in err.get("loc", ()))
    if err.get("type") == "extra_forbidden":
        return loc, _unknown_key(loc, set(model.model_fields))
    msg = str(err.get("msg", "invalid"))
    value = err.get("input")
    options = (err.get("ctx") or {}).get("expected")
    if err.get("type") == "literal_error" and options:
        choices = [o.strip(" '") for o in str(options).replace(" or ", ",").split(",") if o.strip(" '")]
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return loc, f"unknown {loc} {_short(value)}; {hint}expected one of: {', '.join(choices)}"
    return loc, f"{msg}, got {_short(value)}" if value is not None and not isinstance(value, dict) else msg


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def validate_params(policy: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """For scenario validation: the problems with a group's `params` for its policy, as
    (dotted key under the group's params, message); empty when they are fine. A policy that cannot
    be resolved is one problem at key ''."""
    try:
        cls = resolve_policy(policy)
    except PolicyError as e:
        return [("", str(e))]
    return params_problems(cls, params)


def group_role(policy: str, override: str | None = None) -> str:
    """A group's role: the scenario's `role` if it sets one, else what its policy class declares."""
    return override or resolve_policy(policy).role


# ---- small helpers shared by policies ---------------------------------------------------------


def age(obs: Observation, c: PublicContribution | Contribution) -> int:
    return obs.time - c.added_time
