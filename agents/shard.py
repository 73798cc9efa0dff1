"""A shard: many agents as asyncio tasks in one process (a Ray actor), over one connection pool.

Each block the orchestrator calls `tick`: the shard first reads the receipts of the blocks it has not
seen (one eth_getBlockReceipts per block, coalesced), then every agent steps concurrently: observe,
decide, sign, send. Calls made by agents in the same loop turn travel as one JSON-RPC batch. The
tick returns once every agent has handed its transactions to the node, so in driven mode the
orchestrator can mine right after. Keys are derived here from the seed and never leave the process.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from contracts.abi import ContractABI, decode_revert
from contracts.rpc import RpcClient, RpcError
from contracts.signing import LocalAccount, derive_key

from . import gas as gas_limits
from .coalescing import CoalescingRpc
from .ledger import LedgerRecord, TxStatus, to_columns
from .policies.base import (
    FINISHED,
    AddData,
    Contribution,
    ContributionState,
    Observation,
    Policy,
    PolicyContext,
    Refund,
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


@dataclass
class ShardConfig:
    shard_id: int
    rpc_url: str
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
    # Add the agent id (in wei) to each agent's tip: blocks ordered by fee then have one fixed order of
    # senders whatever order the shards' sends arrive in, so a driven run replays identically.
    unique_tips: bool = False


@dataclass(frozen=True)
class BlockInfo:
    number: int
    timestamp: int
    base_fee: int


@dataclass
class TickReport:
    shard_id: int
    block: int
    sent: int = 0
    included: int = 0
    reverted: int = 0
    dropped: int = 0
    in_flight: int = 0
    next_wake: int | None = None
    finished: bool = False
    step_ms: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    record: LedgerRecord
    agent: Agent
    contribution: Contribution


class Agent:
    def __init__(self, spec: AgentSpec, wallet: Wallet, policy: Policy):
        self.spec = spec
        self.id = spec.agent_id
        self.group = spec.group
        self.wallet = wallet
        self.policy = policy
        self.contributions: list[Contribution] = []
        self.in_flight = 0
        self._next_contribution = 0

    def new_contribution(self, sample: Sample) -> Contribution:
        c = Contribution(self._next_contribution, sample.data, sample.label)
        self._next_contribution += 1
        self.contributions.append(c)
        return c

    def by_id(self, cid: int) -> Contribution:
        return self.contributions[cid]  # ids are list positions


class ShardCore:
    """The shard's logic, usable directly in tests; `AgentShard` is its Ray actor form."""

    def __init__(self, config: ShardConfig):
        self.config = config
        self.abis = {name: ContractABI(abi) for name, abi in config.abis.items()}
        self.trainer_abi = self.abis["CollaborativeTrainer"]
        self.errors: dict[bytes, tuple[str, list[str]]] = {}
        for a in self.abis.values():
            self.errors.update(a.errors)
        self._events = {}  # topic -> abi, across every contract of the system
        for a in self.abis.values():
            self._events.update({t: a for t in a.events})
        self.trainer_bytes = bytes.fromhex(config.trainer[2:])
        self.agents: list[Agent] = []
        for spec in config.agents:
            account = LocalAccount.from_key(derive_key(config.seed, spec.agent_id))
            rng = np.random.default_rng([config.seed, spec.agent_id])
            samples = [Sample(tuple(d), int(y)) for d, y in spec.samples]
            policy = resolve_policy(spec.policy)(PolicyContext(spec.agent_id, rng, spec.params, samples))
            self.agents.append(Agent(spec, Wallet(account, config.chain_id), policy))
        self.records: list[LedgerRecord] = []
        self.pending: dict[str, _Pending] = {}
        self.last_block = -1
        self.acting = True
        self.client: RpcClient | None = None
        self.rpc: CoalescingRpc | None = None
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

    async def stop_acting(self) -> None:
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
        try:
            await self._read_blocks(block.number)
            await self._check_stale(block.number)
            await self._resync_nonces()
            if self.acting:
                await asyncio.gather(*(self._step(a, block, report) for a in self.agents))
        except (RpcError, OSError, Exception) as e:  # noqa: BLE001 - reported, the run goes on
            report.errors.append(f"{type(e).__name__}: {e}")
        after = self._status_counts()
        report.included = after[TxStatus.INCLUDED] - before[TxStatus.INCLUDED]
        report.reverted = after[TxStatus.REVERTED] - before[TxStatus.REVERTED]
        report.dropped = after[TxStatus.DROPPED] - before[TxStatus.DROPPED]
        report.in_flight = len(self.pending)
        wakes = [self._wake(a, block) for a in self.agents] if self.acting else [FINISHED]
        report.next_wake = None if any(w is None for w in wakes) else min(wakes)
        report.finished = report.next_wake == FINISHED and not self.pending
        report.step_ms = (time.perf_counter() - wall0) * 1000
        self.cpu_s += time.process_time() - cpu0
        return report

    def _wake(self, agent: Agent, block: BlockInfo) -> int | None:
        return agent.policy.next_wake(self._observe(agent, block))

    def _status_counts(self) -> dict[TxStatus, int]:
        counts = {s: 0 for s in TxStatus}
        for r in self.records:
            counts[r.status] += 1
        return counts

    def _observe(self, agent: Agent, block: BlockInfo) -> Observation:
        return Observation(
            block=block.number,
            time=block.timestamp,
            base_fee=block.base_fee,
            block_time=self.config.block_time,
            max_deposit=self.config.cost_weight * 3600,
            refund_wait=self.config.refund_wait,
            in_flight=agent.in_flight,
            contributions=agent.contributions,
        )

    async def _step(self, agent: Agent, block: BlockInfo, report: TickReport) -> None:
        assert self.rpc is not None
        obs = self._observe(agent, block)
        wanted = agent.policy.wants_predictions(obs)
        if wanted:
            fn = self.trainer_abi.fn("predict")
            calls = [
                self.rpc.call("eth_call", {"to": self.config.trainer,
                                           "data": "0x" + fn.encode(list(agent.by_id(cid).data)).hex()}, "latest")
                for cid in wanted
            ]
            results = await asyncio.gather(*calls, return_exceptions=True)
            for cid, r in zip(wanted, results):
                if isinstance(r, str):
                    obs.predictions[cid] = fn.decode(bytes.fromhex(r[2:]))
        actions = agent.policy.decide(obs)
        sends = []
        for action in actions:
            if len(self.pending) >= self.config.max_in_flight:
                break  # back-pressure: the policy will decide again next block
            if agent.wallet.needs_resync:
                break
            sends.append(self._submit(agent, action, block, report))
        if sends:
            await asyncio.gather(*sends)

    async def _submit(self, agent: Agent, action: AddData | Refund, block: BlockInfo, report: TickReport) -> None:
        assert self.rpc is not None
        if isinstance(action, AddData):
            c = agent.new_contribution(action.sample)
            data = self.trainer_abi.encode("addData", list(c.data), c.label)
            gas = gas_limits.add_data_gas(len(c.data))
            value, kind = action.value, "add"
        else:
            c = agent.by_id(action.contribution_id)
            if c.state is not ContributionState.ADDED:
                return
            c.state = ContributionState.REFUND_SENT
            data = self.trainer_abi.encode("refund", list(c.data), c.label, c.added_time)
            gas = gas_limits.refund_gas(len(c.data))
            value, kind = 0, "refund"
        fees = self.config.fees
        if self.config.unique_tips:
            fees = replace(fees, tip=fees.tip + agent.id)
        tx, nonce, tip, max_fee = agent.wallet.sign(
            to=self.trainer_bytes, data=data, value=value, gas=gas, base_fee=block.base_fee, fees=fees
        )
        record = LedgerRecord(
            agent=agent.id, group=agent.group, policy=agent.policy.name, action=kind,
            sender=agent.wallet.address, nonce=nonce, tx_hash=tx.hash_hex, gas_limit=gas, max_fee=max_fee,
            max_priority_fee=tip, value=value, submitted_wall=time.time(), submitted_block=block.number,
        )
        self.records.append(record)
        self.pending[tx.hash_hex] = _Pending(record, agent, c)
        agent.in_flight += 1
        report.sent += 1
        try:
            await self.rpc.call("eth_sendRawTransaction", tx.raw_hex)
        except Exception as e:  # noqa: BLE001 - the node refused it: final, and the nonce is suspect
            self._finish(tx.hash_hex, TxStatus.DROPPED, reason=f"rejected at send: {e}")
            agent.wallet.invalidate_nonce()

    # ---- receipts and outcomes -------------------------------------------------------------

    async def _read_blocks(self, upto: int) -> None:
        assert self.rpc is not None
        numbers = list(range(self.last_block + 1, upto + 1))
        if not numbers:
            return
        if not self.pending:
            self.last_block = upto
            return
        calls = []
        for n in numbers:
            calls.append(self.rpc.call("eth_getBlockReceipts", hex(n)))
            calls.append(self.rpc.call("eth_getBlockByNumber", hex(n), False))
        results = await asyncio.gather(*calls)
        for i, n in enumerate(numbers):
            receipts, header = results[2 * i], results[2 * i + 1]
            timestamp = int(header["timestamp"], 16) if header else -1
            for receipt in receipts or []:
                p = self.pending.get(receipt["transactionHash"])
                if p is not None:
                    await self._apply_receipt(p, receipt, timestamp)
            self.last_block = n

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
                topic = bytes.fromhex(log["topics"][0][2:]) if log.get("topics") else b""
                abi = self._events.get(topic)
                decoded = abi.decode_log(log) if abi else None
                if decoded is None:
                    continue
                name, args = decoded
                if name == "AddData" and r.action == "add":
                    r.deposit = int(args["cost"])
                    r.received = r.value - r.deposit
                    c.added_time = int(args["t"])
                    c.deposit = r.deposit
                    c.state = ContributionState.ADDED
                elif name == "Refund" and r.action == "refund":
                    r.received = int(args["amount"])
                    c.refunded = r.received
                    c.state = ContributionState.REFUNDED
            self._finish(r.tx_hash, TxStatus.INCLUDED)
        else:
            # Out of gas leaves at most 1/64 of the limit unused (EIP-150); no replay can say more.
            if r.gas_used >= r.gas_limit - r.gas_limit // 64:
                r.reason = f"out of gas (used {r.gas_used} of {r.gas_limit})"
            else:
                r.reason = await self._revert_reason(r, receipt)
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
        p.record.status = status
        if reason:
            p.record.reason = reason
        p.agent.in_flight -= 1
        if status is TxStatus.DROPPED:
            if p.record.action == "add":
                p.contribution.state = ContributionState.FAILED
            elif p.contribution.state is ContributionState.REFUND_SENT:
                p.contribution.state = ContributionState.ADDED

    async def _check_stale(self, current: int, *, force: bool = False) -> None:
        """Look up transactions unseen for too long: gone from the node means dropped."""
        assert self.rpc is not None
        stale = [h for h, p in self.pending.items()
                 if force or current - p.record.submitted_block >= self.config.drop_after_blocks]
        if not stale:
            return
        found = await asyncio.gather(*(self.rpc.call("eth_getTransactionByHash", h) for h in stale),
                                     return_exceptions=True)
        for h, tx in zip(stale, found):
            p = self.pending.get(h)
            if p is None or isinstance(tx, Exception):
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
            "cpu_s": self.cpu_s,
            "process_cpu_s": time.process_time() - self._cpu_start,
            "rpc_batches": self.rpc.batches if self.rpc else 0,
            "http_requests": self.client.requests if self.client else 0,
        }


def make_actor_class(num_cpus: float = 1.0) -> Any:
    """The Ray actor form of a shard (imported lazily so tests of the core need no Ray)."""
    import ray

    return ray.remote(num_cpus=num_cpus)(ShardCore)
