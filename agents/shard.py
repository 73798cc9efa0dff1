"""A shard: many agents as asyncio tasks in one process (a Ray actor), over one connection pool.

Each block the orchestrator calls `tick`: the shard reads the receipts of the blocks it has not
seen (one eth_getBlockReceipts per block, coalesced), settles its transactions, replaces the ones
stuck too long, then every agent steps concurrently: the policy says what it needs to know, the
shard answers with free calls shared between agents, the policy decides, the wallet signs and the
shard sends. Calls made in the same loop turn travel as one JSON-RPC batch. The tick returns once
every agent has handed its transactions to the node, so in driven mode the orchestrator can mine
right after. Keys are derived here from the seed and never leave the process.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from contracts.abi import ContractABI, decode_revert
from contracts.rpc import RpcClient, RpcError
from contracts.signing import LocalAccount, derive_key

from . import gas as gas_limits
from . import shard_recovery
from .coalescing import CoalescingRpc
from .ledger import LedgerRecord, TxStatus, to_columns
from .policies.base import (
    FINISHED,
    Action,
    AddData,
    Contribution,
    ContributionState,
    Mechanism,
    Observation,
    Policy,
    PolicyContext,
    PredictTx,
    PublicContribution,
    Refund,
    Report,
    Sample,
    resolve_policy,
)
from .wallet import FeeStance, Wallet


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
    # The model behind the trainer: gas limits depend on its family and class count, and policies
    # that pick a wrong label or make up inputs need the classes and the input form.
    model_contract: str = "SparsePerceptron"
    n_classes: int = 2
    n_features: int = 0  # 0: unknown
    # Keep each transaction's signed bytes until the node's next state dump covers it: after a node
    # crash they are re-broadcast as they were (same hash), never signed anew.
    keep_raw: bool = False


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
    errors: list[str] = field(default_factory=list)
    by_group: dict[str, dict[str, int]] = field(default_factory=dict)  # cumulative counts per group
    warnings: list[str] = field(default_factory=list)  # what a policy cannot do on this node (once each)


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
        self.contributions: list[Contribution] = []
        self.in_flight = 0
        self.spent = 0
        self.reserved = 0  # worst-case cost of its pending transactions (value + gas limit * max fee)
        self.claims_in_flight: set[tuple[str, int, int, tuple[int, ...]]] = set()

    def new_contribution(self, sample: Sample) -> Contribution:
        c = Contribution(len(self.contributions), sample.data, sample.label)
        self.contributions.append(c)
        return c

    def by_id(self, cid: int) -> Contribution:
        return self.contributions[cid]  # ids are list positions


class ShardCore:
    """The shard's logic, usable directly in tests; `make_actor_class` gives its Ray actor form."""

    def __init__(self, config: ShardConfig):
        self.config = config
        self.abis = {name: ContractABI(abi) for name, abi in config.abis.items()}
        self.trainer_abi = self.abis["CollaborativeTrainer"]
        self.handler_abi = self.abis.get("DataHandler")
        self.incentive_abi = next((a for n, a in self.abis.items()
                                   if n not in ("CollaborativeTrainer", "DataHandler") and "numValid" in
                                   {f.name for f in a.functions.values()}), None)
        self.errors: dict[bytes, tuple[str, list[str]]] = {}
        self._events: dict[bytes, ContractABI] = {}  # topic -> abi, across every contract of the system
        for a in self.abis.values():
            self.errors.update(a.errors)
            self._events.update({t: a for t in a.events})
        self.trainer_bytes = bytes.fromhex(config.trainer[2:])
        self._add_topic = "0x" + self.trainer_abi.events_by_name["AddData"].topic.hex()
        self.mechanism = Mechanism(
            kind=config.mechanism, cost_weight=config.cost_weight, refund_wait=config.refund_wait,
            owner_claim_wait=config.owner_claim_wait if config.owner_claim_wait is not None else config.refund_wait,
            any_address_claim_wait=(config.any_address_claim_wait if config.any_address_claim_wait is not None
                                    else config.refund_wait),
            stake=config.stake,
        )
        self.agents: list[Agent] = []
        for spec in config.agents:
            account = LocalAccount.from_key(derive_key(config.seed, spec.agent_id))
            rng = np.random.default_rng([config.seed, spec.agent_id])
            samples = [Sample(tuple(d), int(y)) for d, y in spec.samples]
            policy = resolve_policy(spec.policy)(PolicyContext(
                spec.agent_id, rng, spec.params, samples, n_classes=config.n_classes,
                dense=config.model_contract.startswith("Dense"), n_features=config.n_features))
            fees = spec.fees or config.fees
            if config.unique_tips:
                fees = replace(fees, tip=fees.tip + spec.agent_id)
            self.agents.append(Agent(spec, Wallet(account, config.chain_id), policy, fees))
        self._agent_by_address = {a.wallet.address: a for a in self.agents}
        self._meta: dict[str, tuple[Contribution | None, tuple[bytes, int, int], PublicContribution | None]] = {}
        self.needs_public = any(getattr(a.policy, "needs_public", False) for a in self.agents)
        self.public: list[PublicContribution] = []
        self.records: list[LedgerRecord] = []
        self.pending: dict[str, _Pending] = {}
        self.by_nonce: dict[tuple[str, int], list[str]] = {}
        self._raw: dict[str, str] = {}  # tx hash -> signed bytes (hex), while a crash could lose it
        self.last_block = -1
        self.last_update = 0
        self.acting = True
        self.settling = False  # settlement: agents stop adding and only claim
        self._warned: set[str] = set()
        self.client: RpcClient | None = None
        self.rpc: CoalescingRpc | None = None
        self._cache: dict[Any, asyncio.Future[Any]] = {}
        self.cpu_s = 0.0  # inside ticks: the agents' own work
        self._cpu_start = time.process_time()  # whole process, Ray's threads included

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> list[str]:
        """Open the connection pool, learn the current block and nonces. Returns the agents'
        addresses (for funding)."""
        self.client = RpcClient(self.config.rpc_url, max_connections=8)
        self.rpc = CoalescingRpc(self.client)
        self.last_block = await self.client.block_number()
        await self._resync_nonces(force=True)
        return [a.wallet.address for a in self.agents]

    def addresses(self) -> list[str]:
        return [a.wallet.address for a in self.agents]

    async def stop_acting(self, settle: bool = False) -> None:
        """End the run's acting phase. settle=True: agents stop adding data but keep their claim loops
        (each reports its next claim moment as next_wake, FINISHED once nothing is left to claim);
        settle=False: every agent stops at once."""
        if settle:
            self.settling = True
        else:
            self.acting = False

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    # ---- the per-block step ----------------------------------------------------------------

    async def tick(self, block: BlockInfo) -> TickReport:
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        report = TickReport(self.config.shard_id, block.number)
        before = self._status_counts()
        self._cache = {}
        try:
            await self._read_blocks(block.number)
            await self._check_stale(block.number)
            await self._replace_stuck(block, report)
            await self._resync_nonces()
            if self.acting:
                if self.incentive_abi is not None and self.mechanism.cost_weight:
                    self.last_update = int(await self._view(self.config.incentive, self.incentive_abi,
                                                            "lastUpdateTime"))
                await asyncio.gather(*(self._step(a, block, report) for a in self.agents))
        except Exception as e:  # noqa: BLE001 - reported, the run goes on
            report.errors.append(f"{type(e).__name__}: {e}")
        after = self._status_counts()
        report.included = after[TxStatus.INCLUDED] - before[TxStatus.INCLUDED]
        report.reverted = after[TxStatus.REVERTED] - before[TxStatus.REVERTED]
        report.dropped = after[TxStatus.DROPPED] - before[TxStatus.DROPPED]
        report.replaced = after[TxStatus.REPLACED] - before[TxStatus.REPLACED]
        report.in_flight = len(self.pending)
        report.by_group = self._group_counts()
        report.warnings = self._policy_warnings()
        wakes = [a.policy.next_wake(self._observe(a, block)) for a in self.agents] if self.acting else [FINISHED]
        report.next_wake = None if any(w is None for w in wakes) else min(w for w in wakes if w is not None)
        report.finished = report.next_wake == FINISHED and not self.pending
        report.step_ms = (time.perf_counter() - wall0) * 1000
        self.cpu_s += time.process_time() - cpu0
        return report

    def _group_counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.records:
            g = out.setdefault(r.group, {"sent": 0, **{s.value: 0 for s in TxStatus}})
            g["sent"] += 1
            g[r.status.value] += 1
        return out

    def _status_counts(self) -> dict[TxStatus, int]:
        counts = {s: 0 for s in TxStatus}
        for r in self.records:
            counts[r.status] += 1
        return counts

    def _observe(self, agent: Agent, block: BlockInfo) -> Observation:
        return Observation(
            block=block.number, time=block.timestamp, base_fee=block.base_fee, block_time=block.block_time or self.config.block_time,
            mechanism=self.mechanism, last_update=self.last_update, address=agent.wallet.address,
            in_flight=agent.in_flight, spent=agent.spent, contributions=agent.contributions, public=self.public,
            load=block.load, settling=self.settling, claims_in_flight=frozenset(agent.claims_in_flight),
            reserved=agent.reserved, fee_cap=agent.fees.price(block.base_fee)[1],
        )

    def _policy_warnings(self) -> list[str]:
        """What policies said they cannot do on this node (e.g. no txpool methods), once each."""
        out = []
        for a in self.agents:
            for w in getattr(a.policy, "warnings", ()):
                if w not in self._warned:
                    self._warned.add(w)
                    out.append(w)
        return out

    # Free calls, each made once per tick however many agents ask (futures shared through the cache).

    def _shared(self, key: Any, make: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        fut = self._cache.get(key)
        if fut is None:
            fut = asyncio.ensure_future(make())
            self._cache[key] = fut
        return fut

    async def _view(self, to: str, abi: ContractABI, fn: str, *args: Any) -> Any:
        assert self.rpc is not None
        f = abi.fn(fn)
        out = await self.rpc.call("eth_call", {"to": to, "data": "0x" + f.encode(*args).hex()}, "latest")
        return f.decode(bytes.fromhex(out[2:]))

    async def _answer(self, agent: Agent, obs: Observation) -> None:
        wants = agent.policy.wants(obs)
        if not wants:
            return
        jobs: list[tuple[str, Any, asyncio.Future[Any]]] = []
        for data in wants.predictions:
            jobs.append(("p", data, self._shared(("predict", data), lambda d=data: self._view(
                self.config.trainer, self.trainer_abi, "predict", list(d)))))
        if self.handler_abi is not None and self.config.data_handler:
            for c in wants.claimable:
                jobs.append(("c", c.key, self._shared(("claimable", c.key), lambda c=c: self._view(
                    self.config.data_handler, self.handler_abi, "getClaimableAmount", list(c.data), c.label,
                    c.added_time, c.author))))
            for c in wants.claimed:
                jobs.append(("h", c.key, self._shared(("claimed", c.key, obs.address), lambda c=c: self._view(
                    self.config.data_handler, self.handler_abi, "hasClaimed", list(c.data), c.label,
                    c.added_time, c.author, obs.address))))
        if wants.num_valid and self.incentive_abi is not None:
            jobs.append(("v", None, self._shared(("numValid", obs.address), lambda: self._view(
                self.config.incentive, self.incentive_abi, "numValid", obs.address))))
            jobs.append(("t", None, self._shared(("totalGood",), lambda: self._view(
                self.config.incentive, self.incentive_abi, "totalGoodDataCount"))))
        if wants.pool:
            assert self.rpc is not None
            jobs.append(("q", None, self._shared(("pool",), lambda: self.rpc.call("txpool_status"))))  # type: ignore[union-attr]
        results = await asyncio.gather(*(j[2] for j in jobs), return_exceptions=True)
        for (kind, key, _), r in zip(jobs, results):
            if isinstance(r, BaseException):
                continue  # unanswered: the policy sees nothing for it this block
            if kind == "p":
                obs.predictions[key] = int(r)
            elif kind == "c":
                obs.claimable[key] = int(r)
            elif kind == "h":
                obs.claimed[key] = bool(r)
            elif kind == "v":
                obs.num_valid = int(r)
            elif kind == "t":
                obs.total_good = int(r)
            elif kind == "q":
                obs.pool_pending = int(r["pending"], 16)

    async def _step(self, agent: Agent, block: BlockInfo, report: TickReport) -> None:
        obs = self._observe(agent, block)
        await self._answer(agent, obs)
        actions = agent.policy.decide(obs)
        sends = []
        queued = 0
        for action in actions:
            if len(self.pending) + len(sends) >= self.config.max_in_flight:
                break  # back-pressure: the policy will decide again next block
            if agent.wallet.needs_resync:
                break
            cost = self._worst_cost(agent, action, block)
            budget = getattr(agent.policy, "budget", None)
            if budget is not None and agent.spent + agent.reserved + queued + cost > budget:
                refused = getattr(agent.policy, "refused", None)
                if refused is not None:
                    refused(action, "budget")
                continue
            queued += cost  # reserved only once sent, below: count it for this block's later actions
            job = self._prepare(agent, action, block)
            if job is not None:
                sends.append(self._send(*job, report=report))
        if sends:
            await asyncio.gather(*sends)

    def _gas_of(self, action: Action) -> tuple[int, int]:
        """(gas limit, value) an action would be sent with."""
        model, k = self.config.model_contract, self.config.n_classes
        if isinstance(action, AddData):
            return gas_limits.add_data_gas(len(action.sample.data), model, k), action.value
        if isinstance(action, Refund):
            return 0, 0  # the contribution's size is known only to the agent: see _affordable
        if isinstance(action, Report):
            return gas_limits.report_gas(len(action.target.data), model, k), 0
        if isinstance(action, PredictTx):
            return gas_limits.predict_gas(len(action.data), model, k), 0
        raise TypeError(f"unknown action {action!r}")

    def _worst_cost(self, agent: Agent, action: Action, block: BlockInfo) -> int:
        """The most an action can cost its sender: value + gas limit * max fee (a policy's budget must
        hold even if everything pending costs that)."""
        gas, value = self._gas_of(action)
        if isinstance(action, Refund):
            c = agent.by_id(action.contribution_id)
            gas = gas_limits.refund_gas(len(c.data), self.config.model_contract, self.config.n_classes)
        stance = replace(agent.fees, tip=action.tip) if action.tip is not None else agent.fees
        return value + gas * stance.price(block.base_fee)[1]

    def _prepare(self, agent: Agent, action: Action, block: BlockInfo
                 ) -> tuple[Agent, str, bytes, int, int, BlockInfo, Contribution | None, PublicContribution | None,
                            int | None] | None:
        t = self.trainer_abi
        model, k = self.config.model_contract, self.config.n_classes
        if isinstance(action, AddData):
            c = agent.new_contribution(action.sample)
            return (agent, "add", t.encode("addData", list(c.data), c.label), action.value,
                    gas_limits.add_data_gas(len(c.data), model, k), block, c, None, action.tip)
        if isinstance(action, Refund):
            c = agent.by_id(action.contribution_id)
            if c.state is not ContributionState.ADDED:
                return None
            c.state = ContributionState.REFUND_SENT
            return (agent, "refund", t.encode("refund", list(c.data), c.label, c.added_time), 0,
                    gas_limits.refund_gas(len(c.data), model, k), block, c, None, action.tip)
        if isinstance(action, Report):
            g = action.target
            return (agent, "report", t.encode("report", list(g.data), g.label, g.added_time, g.author), 0,
                    gas_limits.report_gas(len(g.data), model, k), block, None, g, action.tip)
        if isinstance(action, PredictTx):
            return (agent, "spam", t.encode("predict", list(action.data)), 0,
                    gas_limits.predict_gas(len(action.data), model, k), block, None, None, action.tip)
        raise TypeError(f"unknown action {action!r}")

    async def _send(self, agent: Agent, kind: str, data: bytes, value: int, gas: int, block: BlockInfo,
                    c: Contribution | None, target: PublicContribution | None, tip: int | None, *,
                    report: TickReport, nonce: int | None = None, replaces: _Pending | None = None,
                    fees: FeeStance | None = None) -> None:
        assert self.rpc is not None
        stance = fees or (replace(agent.fees, tip=tip) if tip is not None else agent.fees)
        if nonce is None:
            tx, nonce, tip_used, max_fee = agent.wallet.sign(
                to=self.trainer_bytes, data=data, value=value, gas=gas, base_fee=block.base_fee, fees=stance)
        else:
            tx, nonce, tip_used, max_fee = agent.wallet.sign_at(
                nonce, to=self.trainer_bytes, data=data, value=value, gas=gas, base_fee=block.base_fee, fees=stance)
        record = LedgerRecord(
            agent=agent.id, group=agent.group, policy=agent.policy.name, action=kind,
            sender=agent.wallet.address, nonce=nonce, tx_hash=tx.hash_hex, gas_limit=gas, max_fee=max_fee,
            max_priority_fee=tip_used, value=value, submitted_wall=time.time(), submitted_block=block.number,
            replaces=replaces.record.tx_hash if replaces else "",
            target_tx=(c.add_tx if kind == "refund" and c is not None else target.tx_hash if target is not None else ""),
        )
        self.records.append(record)
        claim_key = (None if kind not in ("refund", "report") else target.key if target is not None
                     else (agent.wallet.address, c.added_time, c.label, c.data) if c is not None else None)
        reserved = value + gas * max_fee
        agent.reserved += reserved
        if claim_key is not None:
            agent.claims_in_flight.add(claim_key)
        self.pending[tx.hash_hex] = _Pending(record, agent, c, (data, value, gas), target, reserved, claim_key)
        self._meta[tx.hash_hex] = (c, (data, value, gas), target)
        self.by_nonce.setdefault((agent.wallet.address, nonce), []).append(tx.hash_hex)
        agent.in_flight += 1
        report.sent += 1
        if self.config.keep_raw:
            self._raw[tx.hash_hex] = tx.raw_hex
        try:
            await self.rpc.call("eth_sendRawTransaction", tx.raw_hex)
        except RpcError as e:
            # The node refused it: final. A refused replacement leaves the original in charge.
            self._finish(tx.hash_hex, TxStatus.DROPPED, reason=f"rejected at send: {e.message}")
            if replaces is None:
                agent.wallet.invalidate_nonce()
        except Exception:  # noqa: BLE001 - no answer: its fate is unknown until looked up
            agent.wallet.invalidate_nonce()

    # ---- receipts and outcomes -------------------------------------------------------------

    async def _read_blocks(self, upto: int) -> None:
        """Settle our transactions mined in the blocks not yet read. Each block's hash list says which
        are ours; only their receipts are fetched (a whole block's receipts cost the node more per
        receipt the bigger the block, and every shard would ask for all of them). The public list
        of contributions comes from the trainer's AddData logs, filtered by the node."""
        assert self.rpc is not None
        numbers = list(range(self.last_block + 1, upto + 1))
        if not numbers:
            return
        if not self.pending and not self.needs_public:
            self.last_block = upto
            return
        calls = [self.rpc.call("eth_getBlockByNumber", hex(n), False) for n in numbers]
        if self.needs_public:
            topic = "0x" + self.trainer_abi.events_by_name["AddData"].topic.hex()
            calls.append(self.rpc.call("eth_getLogs", {"address": self.config.trainer, "topics": [topic],
                                                       "fromBlock": hex(numbers[0]), "toBlock": hex(upto)}))
        results = await asyncio.gather(*calls)
        if self.needs_public:
            for log in sorted(results.pop(), key=lambda lg: (int(lg["blockNumber"], 16), int(lg["logIndex"], 16))):
                decoded = self.trainer_abi.decode_log(log)
                if decoded and decoded[0] == "AddData":
                    a = decoded[1]
                    self.public.append(PublicContribution(
                        a["sender"], tuple(int(x) for x in a["d"]), int(a["c"]), int(a["t"]), int(a["cost"]),
                        int(log["blockNumber"], 16), log.get("transactionHash") or ""))
        ours: list[tuple[str, int]] = []
        read_upto = self.last_block
        for n, header in zip(numbers, results):
            if not header:
                break
            timestamp = int(header["timestamp"], 16)
            ours.extend((h, timestamp) for h in header.get("transactions", []) if h in self.pending)
            read_upto = n
        receipts = await asyncio.gather(*(self.rpc.call("eth_getTransactionReceipt", h) for h, _ in ours))
        for (h, timestamp), receipt in zip(ours, receipts):
            p = self.pending.get(h)
            if p is not None and receipt is not None:
                await self._apply_receipt(p, receipt, timestamp)
        self.last_block = read_upto

    async def _apply_receipt(self, p: _Pending, receipt: dict[str, Any], timestamp: int) -> None:
        r = p.record
        r.included_block = int(receipt["blockNumber"], 16)
        r.included_time = timestamp
        r.included_wall = time.time()
        r.gas_used = int(receipt["gasUsed"], 16)
        r.effective_gas_price = int(receipt.get("effectiveGasPrice", "0x0"), 16)
        c = p.contribution
        if receipt.get("status") == "0x1":
            for log in receipt.get("logs", []):
                topics = log.get("topics")
                if topics and topics[0] == self._add_topic and r.action == "add" and c is not None:
                    # AddData(int64[] d, uint64 c, uint256 t, address indexed sender, uint256 cost): the
                    # data words are [offset of d, c, t, cost, ...]; read t and cost without a full decode.
                    data = log["data"]
                    c.added_time = int(data[2 + 128:2 + 192], 16)
                    r.deposit = c.deposit = int(data[2 + 192:2 + 256], 16)
                    r.received = r.value - r.deposit
                    c.state = ContributionState.ADDED
                    c.add_tx = r.tx_hash
                    continue
                topic = bytes.fromhex(topics[0][2:]) if topics else b""
                abi = self._events.get(topic)
                decoded = abi.decode_log(log) if abi else None
                if decoded is None:
                    continue
                name, args = decoded
                if name == "AddData" and r.action == "add" and c is not None:
                    r.deposit = int(args["cost"])
                    r.received = r.value - r.deposit
                    c.added_time = int(args["t"])
                    c.deposit = r.deposit
                    c.state = ContributionState.ADDED
                    c.add_tx = r.tx_hash
                elif name == "Refund" and r.action == "refund" and c is not None:
                    r.received = int(args.get("amount", 0))
                    c.refunded = r.received
                    c.state = ContributionState.REFUNDED
                elif name == "Report" and r.action == "report":
                    r.received = int(args.get("amount", 0))
                elif name == "Collected" and r.action == "collect":
                    r.received = int(args.get("amount", 0))
            self._finish(r.tx_hash, TxStatus.INCLUDED)
        else:
            # Out of gas leaves at most 1/64 of the limit unused (EIP-150); no replay can say more.
            if r.gas_used >= r.gas_limit - r.gas_limit // 64:
                r.reason = f"out of gas (used {r.gas_used} of {r.gas_limit})"
            else:
                r.reason = await self._revert_reason(r, receipt)
            if c is not None:
                c.state = ContributionState.FAILED if r.action == "add" else ContributionState.ADDED
            self._finish(r.tx_hash, TxStatus.REVERTED)

    async def _revert_reason(self, r: LedgerRecord, receipt: dict[str, Any]) -> str:
        """Re-run the call against the state before its block (an approximation when other
        transactions of the same block changed that state)."""
        assert self.rpc is not None
        tx = await self.rpc.call("eth_getTransactionByHash", r.tx_hash)
        if not tx:
            return "reverted"
        try:
            await self.rpc.call(
                "eth_call",
                {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"], "gas": tx["gas"]},
                hex(int(receipt["blockNumber"], 16) - 1),
            )
        except RpcError as e:
            return decode_revert(e.data if isinstance(e.data, str) else None, self.errors) if e.data else e.message
        except Exception as e:  # noqa: BLE001
            return f"reverted (reason unavailable: {type(e).__name__})"
        return "reverted (succeeds when replayed alone: depended on the block's other transactions)"

    def _finish(self, tx_hash: str, status: TxStatus, reason: str = "") -> None:
        p = self.pending.pop(tx_hash, None)
        if p is None:
            return
        r = p.record
        r.status = status
        if reason:
            r.reason = reason
        p.agent.in_flight -= 1
        p.agent.reserved -= p.reserved
        if p.claim_key is not None and status is not TxStatus.REPLACED:
            self._claim_settled(p, status)
        if status in (TxStatus.INCLUDED, TxStatus.REVERTED):
            p.agent.spent += r.gas_used * r.effective_gas_price
            if status is TxStatus.INCLUDED:
                p.agent.spent += r.value - r.received
            # Every other transaction of this sender and nonce can never be mined now.
            for other in self.by_nonce.pop((r.sender, r.nonce), []):
                if other != tx_hash:
                    self._finish(other, TxStatus.REPLACED, reason=f"nonce {r.nonce} used by {tx_hash}")
            return
        siblings = [h for h in self.by_nonce.get((r.sender, r.nonce), []) if h in self.pending]
        if status is TxStatus.DROPPED and not siblings:
            c = p.contribution
            if c is not None and r.action == "add":
                c.state = ContributionState.FAILED
            elif c is not None and c.state is ContributionState.REFUND_SENT:
                c.state = ContributionState.ADDED

    def _claim_settled(self, p: _Pending, status: TxStatus) -> None:
        """Tell the policy how its claim ended (unless a sibling of the same nonce is still pending)."""
        assert p.claim_key is not None
        r = p.record
        if status is TxStatus.DROPPED and any(h in self.pending for h in self.by_nonce.get((r.sender, r.nonce), [])):
            return
        p.agent.claims_in_flight.discard(p.claim_key)
        added = p.claim_key[1]
        when = r.included_time if r.included_time >= 0 else added
        last_window = when - added >= self.mechanism.any_address_claim_wait
        p.agent.policy.claim_settled(p.claim_key, r.action, status is TxStatus.INCLUDED, r.reason, when,
                                     last_window)

    async def _replace_stuck(self, block: BlockInfo, report: TickReport) -> None:
        """Re-send transactions pending too long with the same nonce and fees raised enough for the
        node's replacement rule; whichever is mined first settles the other."""
        after = self.config.replace_after_blocks
        if after <= 0 or not self.acting or block.fill > 0.9:
            # Behind full blocks a transaction is queued, not stuck: outbidding everyone else in the
            # same queue is a policy's choice (a tip per action), not the wallet's.
            return
        stuck = [p for p in self.pending.values()
                 if block.number - p.record.submitted_block >= after and not p.record.replaces
                 and not any(self.pending[h].record.replaces == p.record.tx_hash
                             for h in self.by_nonce.get((p.record.sender, p.record.nonce), []) if h in self.pending)]
        if not stuck:
            return
        jobs = []
        for p in stuck:
            r = p.record
            bump = self.config.replacement_bump
            stance = replace(p.agent.fees, tip=max(int(r.max_priority_fee * bump) + 1, p.agent.fees.tip),
                             floor=int(r.max_fee * bump) + 1, cap=None)
            data, value, gas = p.raw_args
            budget = getattr(p.agent.policy, "budget", None)
            if budget is not None and (p.agent.spent + p.agent.reserved + value + gas * stance.price(block.base_fee)[1]
                                       > budget):
                continue  # the original stays in charge: a costlier copy could break the budget
            jobs.append(self._send(p.agent, r.action, data, value, gas, block, p.contribution, p.target, None,
                                   report=report, nonce=r.nonce, replaces=p, fees=stance))
        await asyncio.gather(*jobs)

    async def _check_stale(self, current: int, *, force: bool = False, only: list[str] | None = None) -> None:
        """Look up transactions unseen for too long (or those in `only`): gone from the node means
        dropped."""
        assert self.rpc is not None
        if only is not None:
            stale = [h for h in only if h in self.pending]
        else:
            stale = [h for h, p in self.pending.items()
                     if force or current - p.record.submitted_block >= self.config.drop_after_blocks]
        if not stale:
            return
        found = await asyncio.gather(*(self.rpc.call("eth_getTransactionByHash", h) for h in stale),
                                     return_exceptions=True)
        for h, tx in zip(stale, found):
            p = self.pending.get(h)
            if p is None or isinstance(tx, BaseException):
                continue
            if tx is None:
                self._finish(h, TxStatus.DROPPED, reason="vanished from the node's pool")
                p.agent.wallet.invalidate_nonce()
            elif tx.get("blockNumber"):
                receipt = await self.rpc.call("eth_getTransactionReceipt", h)
                if receipt:
                    header = await self.rpc.call("eth_getBlockByNumber", receipt["blockNumber"], False)
                    await self._apply_receipt(p, receipt, int(header["timestamp"], 16))
            elif force:
                self._finish(h, TxStatus.DROPPED, reason="still pending when the run ended")
                p.agent.wallet.invalidate_nonce()

    async def market_collect(self, block: BlockInfo) -> int:
        """Prediction market, collect phase: every agent with a balance withdraws it (a `collect`
        transaction each, in the ledger like any other)."""
        balances = await asyncio.gather(*(self._view(self.config.trainer, self.trainer_abi, "claimableBalance",
                                                     a.wallet.address) for a in self.agents))
        await self._resync_nonces()
        report = TickReport(self.config.shard_id, block.number)
        sends = [self._send(a, "collect", self.trainer_abi.encode("collect"), 0, 150_000, block, None, None, None,
                            report=report)
                 for a, bal in zip(self.agents, balances) if int(bal) > 0 and not a.wallet.needs_resync]
        await asyncio.gather(*sends)
        return len(sends)

    async def notify_dropped(self, hashes: list[str], block: BlockInfo) -> int:
        """The orchestrator removed these transactions from the node's pool (chaos): settle ours at
        once, and resync the senders' nonces before they send again."""
        ours = [h for h in hashes if h in self.pending]
        for h in ours:
            p = self.pending[h]
            self._finish(h, TxStatus.DROPPED, reason="dropped from the pool (chaos)")
            p.agent.wallet.invalidate_nonce()
        return len(ours)

    def target_tx_of(self, action: str, args: list[Any], c: Contribution | None) -> str:
        """The addData transaction a claim sent by one of our agents targets (decoded `args` of the
        call), for records rebuilt from the chain: the join key with the contributions table."""
        if action == "refund":
            return c.add_tx if c is not None else ""
        if action == "report" and len(args) >= 4:
            key = (str(args[3]).lower(), int(args[2]), int(args[1]), tuple(int(x) for x in args[0]))
            for p in self.public:
                if (p.author.lower(), p.added_time, p.label, p.data) == key:
                    return p.tx_hash
        return ""

    def snapshot(self, block: int) -> bytes:
        """This shard's state between ticks (no keys), for a replacement if this actor dies."""
        return shard_recovery.snapshot(self, block)

    async def restore(self, blob: bytes, head: int) -> dict[str, int]:
        """Replacement shard: take the dead one's snapshot, then adopt from the chain what its
        agents sent after it (agents/shard_recovery.py)."""
        block = shard_recovery.restore(self, blob)
        return await shard_recovery.adopt(self, block + 1, head)

    def checkpoint(self, block: int) -> int:
        """The node's state up to `block` is safe in a dump: signed bytes of transactions settled
        at or before it are no longer needed. Returns how many are still kept."""
        settled = {r.tx_hash for r in self.records
                   if r.tx_hash in self._raw and r.tx_hash not in self.pending
                   and (r.status in (TxStatus.DROPPED, TxStatus.REPLACED) or 0 <= r.included_block <= block)}
        for h in settled:
            del self._raw[h]
        return len(self._raw)

    async def notify_restart(self, first_lost: int) -> dict[str, int]:
        """The node died and came back from a dump that ends at block `first_lost - 1`: the blocks
        after it and the whole pool are gone. Outcomes read from lost blocks are undone; every
        transaction whose fate is now unknown is looked up (it may sit in a restored block whose
        receipt we had not read yet), and the rest are re-broadcast with their original signed
        bytes, in nonce order per sender. What the node refuses is dropped, with the reason."""
        assert self.rpc is not None
        undone = self._undo_from(first_lost)
        unknown = list(self.pending)
        found = await asyncio.gather(*(self.rpc.call("eth_getTransactionByHash", h) for h in unknown))
        lost: list[str] = []
        for h, tx in zip(unknown, found):
            if tx is not None and tx.get("blockNumber"):
                continue  # mined in a restored block: the next block read settles it
            lost.append(h)
        by_sender: dict[str, list[_Pending]] = {}
        for h in lost:
            p = self.pending[h]
            by_sender.setdefault(p.record.sender, []).append(p)
        resent = refused = 0

        async def rebroadcast(pends: list[_Pending]) -> None:
            nonlocal resent, refused
            gap: str | None = None  # once a nonce is lost, the sender's later ones could never run
            # The highest fee first at each nonce: a lower sibling is then refused as underpriced.
            for p in sorted(pends, key=lambda q: (q.record.nonce, -q.record.max_fee)):
                h = p.record.tx_hash
                if h not in self.pending:
                    continue
                raw = self._raw.get(h)
                reason = gap or (None if raw is not None else "lost with the node (no signed copy kept)")
                if reason is None:
                    try:
                        await self.rpc.call("eth_sendRawTransaction", raw)
                        resent += 1
                        continue
                    except RpcError as e:
                        reason = f"lost with the node, refused on re-broadcast: {e.message}"
                siblings = [x for x in self.by_nonce.get((p.record.sender, p.record.nonce), [])
                            if x != h and x in self.pending]
                self._finish(h, TxStatus.DROPPED, reason=reason)
                p.agent.wallet.invalidate_nonce()
                refused += 1
                if not siblings and gap is None:
                    gap = f"lost with the node: nonce {p.record.nonce} before it was not restored"

        await asyncio.gather(*(rebroadcast(v) for v in by_sender.values()))
        return {"undone": len(undone), "resent": resent, "refused": refused}

    async def notify_reorg(self, first_replaced: int) -> int:
        """Blocks from `first_replaced` on were replaced. Outcomes read from them no longer hold:
        those transactions become pending again and are looked up at once (a reorg drops them from
        anvil, so most end `dropped` and their senders resync their nonces)."""
        undone = self._undo_from(first_replaced)
        if undone:
            await self._check_stale(first_replaced, only=undone)
        return len(undone)

    def _undo_from(self, first_replaced: int) -> list[str]:
        """Forget every outcome read from blocks `first_replaced` and later: pending again."""
        undone: list[str] = []
        for r in self.records:
            if r.included_block < first_replaced or r.status not in (TxStatus.INCLUDED, TxStatus.REVERTED):
                continue
            agent = self._agent_by_address[r.sender]
            if r.status is TxStatus.INCLUDED:
                agent.spent -= r.value - r.received
            agent.spent -= r.gas_used * r.effective_gas_price
            r.status, r.included_block, r.included_time, r.gas_used = TxStatus.PENDING, -1, -1, 0
            r.effective_gas_price, r.deposit, r.received, r.reason = 0, 0, 0, ""
            r.included_wall = float("nan")
            agent.in_flight += 1
            c, raw_args, target = self._meta[r.tx_hash]
            if c is not None and r.action == "add":
                c.state, c.added_time, c.deposit, c.add_tx = ContributionState.SUBMITTED, -1, 0, ""
            elif c is not None and r.action == "refund":
                c.state, c.refunded = ContributionState.REFUND_SENT, 0
            self.pending[r.tx_hash] = _Pending(r, agent, c, raw_args, target)
            self.by_nonce.setdefault((r.sender, r.nonce), []).append(r.tx_hash)
            undone.append(r.tx_hash)
        self.public = [c for c in self.public if c.block < first_replaced]
        self.last_block = min(self.last_block, first_replaced - 1)
        return undone

    async def _resync_nonces(self, force: bool = False) -> None:
        assert self.rpc is not None
        agents = [a for a in self.agents if force or a.wallet.needs_resync]
        # Only once nothing of theirs is in flight: a pending transaction would make the count ambiguous.
        agents = [a for a in agents if force or a.in_flight == 0]
        if not agents:
            return
        nonces = await asyncio.gather(
            *(self.rpc.call("eth_getTransactionCount", a.wallet.address, "pending") for a in agents)
        )
        for a, n in zip(agents, nonces):
            a.wallet.set_nonce(int(n, 16))

    # ---- results ---------------------------------------------------------------------------

    async def finalize(self, last_block: int) -> dict[str, list[Any]]:
        """Read the last receipts, settle what is left, and return the ledger as columns."""
        await self._read_blocks(last_block)
        if self.pending:
            await self._check_stale(last_block, force=True)
        return to_columns(self.records)

    def stats(self) -> dict[str, Any]:
        return {
            "shard": self.config.shard_id,
            "agents": len(self.agents),
            "records": len(self.records),
            "pending": len(self.pending),
            "public_contributions": len(self.public),
            "cpu_s": self.cpu_s,
            "process_cpu_s": time.process_time() - self._cpu_start,
            "rpc_batches": self.rpc.batches if self.rpc else 0,
            "http_requests": self.client.requests if self.client else 0,
            "rpc": self.client.stats() if self.client else {},
            "pid": os.getpid(),
            "ray_node": _ray_node_id(),
        }

    def agent_summaries(self) -> list[dict[str, Any]]:
        return [{"agent": a.id, "group": a.group, "policy": a.policy.name, "address": a.wallet.address,
                 "spent": a.spent, "contributions": len(a.contributions), "reasons": a.policy.reasons()}
                for a in self.agents]


def _ray_node_id() -> str | None:
    """The Ray node this shard runs on (None outside Ray): shows where a cluster placed it."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - informative only
        return None


def make_actor_class(num_cpus: float = 1.0) -> Any:
    """The Ray actor form of a shard (imported lazily so tests of the core need no Ray)."""
    import ray

    return ray.remote(num_cpus=num_cpus)(ShardCore)
