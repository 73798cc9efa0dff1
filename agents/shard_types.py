"""The shard's data: what an agent is given, how a shard is configured, what a tick reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .ledger import LedgerRecord
from .policies.base import Contribution, Policy, PublicContribution, Sample
from .wallet import FeeStance, Wallet
from .window import Window


@dataclass
class AgentSpec:
    agent_id: int
    group: str
    policy: str
    params: dict[str, Any]
    samples: list[tuple[tuple[int, ...], int]]
    fees: FeeStance | None = None  # None: the shard's default stance


@dataclass
class ShardConfig:
    shard_id: int
    rpc_url: str | list[str]  # several: endpoints of one chain, in this shard's order of preference
    chain_id: int
    seed: int
    trainer: str
    incentive: str
    abis: dict[str, list[dict[str, Any]]]  # contract name -> ABI (trainer, incentive, model, handler)
    cost_weight: int
    refund_wait: int
    block_time: int
    agents: list[AgentSpec]
    fees: FeeStance = field(default_factory=FeeStance)
    max_in_flight: int = 2_000  # back-pressure: pending transactions per shard
    drop_after_blocks: int = 20  # a transaction unseen this long is looked up, and dropped if gone
    replace_after_blocks: int = 8  # a transaction still pending this long is re-sent with higher fees
    replacement_bump: float = 1.125  # fee factor of a replacement (nodes ask at least +10%)
    # Add the agent id (in wei) to each agent's tip: blocks ordered by fee then have one fixed order of
    # senders whatever order the shards' sends arrive in, so a driven run replays identically.
    unique_tips: bool = False
    data_handler: str = ""
    mechanism: str = "stakeable"
    owner_claim_wait: int | None = None
    any_address_claim_wait: int | None = None
    stake: int | None = None  # prediction_market: the stake sent with each contribution
    claims: str = ""  # which claims the mechanism allows (agents.policies.base.Mechanism); "": by name
    report_share_bps: int | None = None  # a take's fixed share of the deposit (None: Stakeable's)
    # The model behind the trainer: gas limits depend on its family and class count, and policies
    # that pick a wrong label or make up inputs need the classes and the input form.
    model_contract: str = "SparsePerceptron"
    n_classes: int = 2
    n_features: int = 0  # 0: unknown
    # Keep each transaction's signed bytes until the node's next state dump covers it: after a node
    # crash they are re-broadcast as they were (same hash), never signed anew.
    keep_raw: bool = False
    # Stream the ledger: each tick hands what changed to the driver (TickReport.ledger), which appends
    # it to the results folder, and the shard forgets final records once `reorg_depth` blocks deep
    # (and covered by the node's last state dump, if any): memory stays flat however long the run.
    # Off, every record stays until `finalize` (shards driven directly, as in unit tests).
    stream_ledger: bool = False
    reorg_depth: int = 64  # blocks below the head a reorg may still replace (the deepest chaos reorg)


@dataclass(frozen=True)
class BlockInfo:
    number: int
    timestamp: int
    base_fee: int  # what the next block will charge
    load: float = 1.0  # the schedule's current multiplier of arrival rates
    fill: float = 0.0  # gas used / gas limit of this block
    # Seconds per block from now on, as the run's clock has it (a block_time chaos event changes it);
    # 0: not given, the shard's configured block time.
    block_time: int = 0


@dataclass
class TickReport:
    shard_id: int
    block: int
    sent: int = 0
    included: int = 0
    reverted: int = 0
    dropped: int = 0
    replaced: int = 0
    in_flight: int = 0
    next_wake: int | None = None
    finished: bool = False
    step_ms: float = 0.0
    stepped: int = 0  # agents stepped this tick (those due: see shard_wake.py)
    agents_ms: float = 0.0  # of step_ms: choosing, stepping and re-scheduling agents
    errors: list[str] = field(default_factory=list)
    by_group: dict[str, dict[str, int]] = field(default_factory=dict)  # cumulative counts per group
    warnings: list[str] = field(default_factory=list)  # what a policy cannot do on this node (once each)
    # Streaming shards: ledger rows new or changed since the last tick (columns as agents.ledger.to_columns).
    ledger: dict[str, list[Any]] | None = None


@dataclass
class _Pending:
    record: LedgerRecord
    agent: Agent
    contribution: Contribution | None
    raw_args: tuple[bytes, int, int]  # calldata, value, gas: what a replacement re-sends
    target: PublicContribution | None = None
    reserved: int = 0  # its worst-case cost, counted against the sender's budget while pending
    claim_key: tuple[str, int, int, tuple[int, ...]] | None = None  # refunds and reports: what they claim


class Agent:
    def __init__(self, spec: AgentSpec, wallet: Wallet, policy: Policy, fees: FeeStance):
        self.spec = spec
        self.id = spec.agent_id
        self.group = spec.group
        self.wallet = wallet
        self.policy = policy
        self.fees = fees
        # Ids are indices; refunded or failed ones are forgotten once settled deep (shard_memory.py).
        self.contributions: Window[Contribution] = Window()
        self.in_flight = 0
        self.spent = 0
        self.reserved = 0  # worst-case cost of its pending transactions (value + gas limit * max fee)
        self.claims_in_flight: set[tuple[str, int, int, tuple[int, ...]]] = set()
        self.slot = -1  # its position in the shard's agent list (the wake schedule's key)
        self.wants_pool = False  # asked for the node's pending pool at its last step: stepped every block

    def new_contribution(self, sample: Sample) -> Contribution:
        c = Contribution(len(self.contributions), sample.data, sample.label)
        self.contributions.append(c)
        return c

    def by_id(self, cid: int) -> Contribution | None:
        """Its contribution `cid`; None once settled and forgotten (nothing more can be done with it)."""
        return self.contributions.get(cid)
