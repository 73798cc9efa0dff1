"""A shard: many agents as asyncio tasks in one process (a Ray actor), over one connection pool.

Each block the orchestrator calls `tick`: the shard reads the receipts of the blocks it has not
seen (one eth_getBlockReceipts per block, coalesced), settles its transactions, replaces the ones
stuck too long, then every agent steps concurrently: the policy says what it needs to know, the
shard answers with free calls shared between agents, the policy decides, the wallet signs and the
shard sends. Calls made in the same loop turn travel as one JSON-RPC batch. The tick returns once
every agent has handed its transactions to the node, so in driven mode the orchestrator can mine
right after. Keys are derived here from the seed and never leave the process.

The shard's parts: its data (shard_types.py), the free calls answering policies (shard_calls.py),
reading outcomes (shard_outcomes.py), faults and recovery (shard_faults.py, shard_recovery.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from typing import Any

import numpy as np

from contracts.abi import ContractABI
from contracts.rpc import RpcClient, RpcError
from contracts.signing import LocalAccount, derive_key

from . import shard_memory, shard_recovery
from .coalescing import CoalescingRpc
from .ledger import LedgerRecord, TxStatus
from .shard_ledger import LATENCY_BUCKETS, LedgerBook, columns  # noqa: F401 - LATENCY_BUCKETS: re-exported (Prometheus)
from .pool import PoolView
from .policies.base import (
    FINISHED,
    Contribution,
    Mechanism,
    Observation,
    PolicyContext,
    PublicContribution,
    Sample,
    resolve_policy,
)
from .shard_abi import Encoders
from .shard_calls import FreeCalls
from .shard_dispatch import EarlyCoalescingRpc
from .shard_faults import Faults
from .shard_outcomes import Outcomes
from .shard_prepare import Prepare
from .shard_types import Agent, AgentSpec, BlockInfo, ShardConfig, TickReport, _Pending
from .shard_wake import WakeSchedule
from .wallet import FeeStance, Wallet
from .window import Window


class ShardCore(FreeCalls, Outcomes, Faults, Prepare):
    """The shard's logic, usable directly in tests; `make_actor_class` gives its Ray actor form."""

    def __init__(self, config: ShardConfig):
        self.config = config
        self.abis = {name: ContractABI(abi) for name, abi in config.abis.items()}
        self.trainer_abi = self.abis["CollaborativeTrainer"]
        self._calldata = Encoders(self.trainer_abi)  # byte-identical to trainer_abi.encode, ~10x cheaper
        self._gas_limits: dict[tuple[str, int], int] = {}  # (operation, n indices) -> limit: see _gas
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
            stake=config.stake, claims=config.claims, report_share_bps=config.report_share_bps,
        )
        self.agents: list[Agent] = []
        self._agent_by_address: dict[str, Agent] = {}
        self._wakes = WakeSchedule(0)
        self._maybe_unsynced: set[int] | None = None  # see tick
        self._add_agents(config.agents)
        self._meta: dict[str, tuple[Contribution | None, tuple[bytes, int, int], PublicContribution | None]] = {}
        self.needs_public = any(getattr(a.policy, "needs_public", False) for a in self.agents)
        self.public: Window[PublicContribution] = Window()  # forgets what is settled (shard_memory.py)
        self._public_forget_at = shard_memory.PUBLIC_MIN_KEPT
        self._senders: dict[str, str] = {}
        # The ledger's live records and running counters (agents/shard_ledger.py); `records` is its
        # dict of them, tx hash -> record.
        self.ledger = LedgerBook(stream=config.stream_ledger)
        self._checkpoint_block: int | None = None  # the node's last state dump (Faults.checkpoint)
        self.pending: dict[str, _Pending] = {}
        self.by_nonce: dict[tuple[str, int], list[str]] = {}
        self._raw: dict[str, str] = {}  # tx hash -> signed bytes (hex), while a crash could lose it
        self.last_block = -1
        self.last_update = 0
        self.acting = True
        self.settling = False  # settlement: agents stop adding and only claim
        self._warned: set[str] = set()
        self._decided = 0  # sends decided so far in the current tick (the shard-wide cap counts them)
        self.client: RpcClient | None = None
        self.rpc: CoalescingRpc | None = None
        self._cache: dict[Any, asyncio.Future[Any]] = {}
        self._pool = PoolView()  # txpool methods, or the pending block where the node has none
        self.cpu_s = 0.0  # inside ticks: the agents' own work
        self._cpu_start = time.process_time()  # whole process, Ray's threads included

    def _add_agents(self, specs: list[AgentSpec]) -> list[Agent]:
        config = self.config
        added = []
        for spec in specs:
            account = LocalAccount.from_key(derive_key(config.seed, spec.agent_id))
            rng = np.random.default_rng([config.seed, spec.agent_id])
            samples = [Sample(tuple(d), int(y)) for d, y in spec.samples]
            policy = resolve_policy(spec.policy)(PolicyContext(
                spec.agent_id, rng, spec.params, samples, n_classes=config.n_classes,
                dense=config.model_contract.startswith("Dense"), n_features=config.n_features))
            fees = spec.fees or config.fees
            if config.unique_tips:
                fees = replace(fees, tip=fees.tip + spec.agent_id)
            a = Agent(spec, Wallet(account, config.chain_id), policy, fees)
            a.slot = len(self.agents)
            if a.wallet.address in self._agent_by_address:
                raise ValueError(f"agent {spec.agent_id}: its address is already one of this shard's agents")
            self.agents.append(a)
            self._agent_by_address[a.wallet.address] = a
            added.append(a)
        self._wakes.grow([a.policy.public_horizon(self.mechanism) for a in added])
        return added

    async def add_agents(self, specs: list[AgentSpec]) -> list[str]:
        """More agents in a started shard (they step from the next tick). Returns their addresses,
        for funding. Used to grow a population in steps (benchmarks/scale.py)."""
        added = self._add_agents(specs)
        self.needs_public = self.needs_public or any(getattr(a.policy, "needs_public", False) for a in added)
        if self.rpc is not None:
            nonces = await asyncio.gather(*(self.rpc.submit("eth_getTransactionCount", a.wallet.address, "pending")
                                            for a in added))
            for a, n in zip(added, nonces):
                a.wallet.set_nonce(int(n, 16))
        return [a.wallet.address for a in added]

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> list[str]:
        """Open the connection pool, learn the current block and nonces. Returns the agents'
        addresses (for funding)."""
        self.client = RpcClient(self.config.rpc_url, max_connections=8)
        # Batches that fill up while a tick signs leave at once (agents/shard_dispatch.py).
        self.rpc = EarlyCoalescingRpc(self.client, self.config.rpc_url, max_connections=8)
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
        if isinstance(self.rpc, EarlyCoalescingRpc):
            await self.rpc.close()
        if self.client is not None:
            await self.client.close()

    # ---- the per-block step ----------------------------------------------------------------

    async def tick(self, block: BlockInfo) -> TickReport:
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        report = TickReport(self.config.shard_id, block.number)
        due: list[int] = []
        agents_s = 0.0
        before = dict(self.ledger.totals)
        self._cache = {}
        # Wallets a nonce error may have touched since the last tick: the agents stepped then, and those
        # with a transaction in flight (their outcomes come in now). None: every agent.
        unsynced = self._maybe_unsynced
        if unsynced is not None:
            unsynced = unsynced | {p.agent.slot for p in self.pending.values()}
        update: asyncio.Future[Any] | None = None
        if self.acting and self.incentive_abi is not None and self.mechanism.cost_weight:
            # Asked in the same batch as the new blocks, not after their receipts: one round trip less
            # per tick. The same value: it is the state at the tick's block (nothing is mined during a
            # driven tick; with interval mining, a block mined meanwhile could land either side anyway).
            update = asyncio.ensure_future(self._view(self.config.incentive, self.incentive_abi, "lastUpdateTime"))
            update.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even if unused
        try:
            await self._read_blocks(block.number)
            await self._check_stale(block.number)
            await self._replace_stuck(block, report)
            await self._resync_nonces(among=unsynced)
            if self.acting:
                if update is not None:
                    self.last_update = int(await update)
                t = time.perf_counter()
                due = self._wakes.due(block.timestamp, self._wake_context(block), self.public,
                                      {p.agent.slot for p in self.pending.values()})
                self._decided = 0
                decided = await asyncio.gather(*(self._step(self.agents[i], block, report) for i in due))
                # Signed, recorded and sent in the order of `due`, whatever order the agents' answers
                # came back in (a turn's calls may leave in several batches): the same ledger for a seed.
                await self._send_all([job for jobs in decided for job in jobs])
                agents_s = time.perf_counter() - t
        except Exception as e:  # noqa: BLE001 - reported, the run goes on
            report.errors.append(f"{type(e).__name__}: {e}")
        after = self.ledger.totals  # running counters: a tick costs the same at the millionth transaction
        report.included = after[TxStatus.INCLUDED] - before[TxStatus.INCLUDED]
        report.reverted = after[TxStatus.REVERTED] - before[TxStatus.REVERTED]
        report.dropped = after[TxStatus.DROPPED] - before[TxStatus.DROPPED]
        report.replaced = after[TxStatus.REPLACED] - before[TxStatus.REPLACED]
        report.in_flight = len(self.pending)
        report.by_group = self.ledger.group_counts()
        report.warnings = self._policy_warnings(due)
        t = time.perf_counter()
        report.next_wake = self._next_wakes(block, due) if self.acting else FINISHED
        self._maybe_unsynced = set(due) | (unsynced or set())
        report.stepped = len(due)
        report.agents_ms = (agents_s + time.perf_counter() - t) * 1000
        report.finished = report.next_wake == FINISHED and not self.pending
        if self.ledger.stream:
            report.ledger = self.take_ledger()
        report.step_ms = (time.perf_counter() - wall0) * 1000
        self.cpu_s += time.process_time() - cpu0
        return report

    @property
    def records(self) -> dict[str, LedgerRecord]:
        """The ledger records this shard still holds (all of them unless the ledger streams)."""
        return self.ledger.records

    def _wake_context(self, block: BlockInfo) -> tuple[object, ...]:
        """What moves every agent's wake at once: a change steps them all (shard_wake.py)."""
        return (self.acting, self.settling, block.load, block.block_time or self.config.block_time)

    def _next_wakes(self, block: BlockInfo, stepped: list[int]) -> int | None:
        """Evaluate the wake of the agents stepped this tick, and of those asleep whose wake a new
        public contribution may bring forward; the shard's next wake is then the earliest."""
        again = self._wakes.stale_by_public(self.public, set(stepped))
        for i in (stepped if not again else sorted({*stepped, *again})):
            a = self.agents[i]
            self._wakes.set(i, a.policy.next_wake(self._observe(a, block)), a.wants_pool)
        return self._wakes.next_wake()

    def take_ledger(self) -> dict[str, list[Any]]:
        """What changed in the ledger since the last call, as columns, for the driver's log; final
        records deep enough that no reorg (`reorg_depth`) or node restart (the last state dump) can
        reopen them are forgotten here, with what the shard kept beside them."""
        safe = self.last_block - self.config.reorg_depth
        if self._checkpoint_block is not None:
            safe = min(safe, self._checkpoint_block)
        cols, forgotten = self.ledger.take(safe)
        settled: list[tuple[Agent, Contribution]] = []
        for r in forgotten:
            meta = self._meta.pop(r.tx_hash, None)
            if meta is not None and (c := shard_memory.settled_contribution(r, meta[0])) is not None:
                settled.append((self._agent_by_address[r.sender], c))
            self._raw.pop(r.tx_hash, None)
            same_nonce = self.by_nonce.get((r.sender, r.nonce))
            if same_nonce is not None and r.tx_hash in same_nonce:  # a dropped one keeps its entry
                same_nonce.remove(r.tx_hash)
                if not same_nonce:
                    del self.by_nonce[(r.sender, r.nonce)]
        shard_memory.forget_contributions(settled)
        if self.public.kept >= self._public_forget_at:
            shard_memory.forget_public(self, safe)
            self._public_forget_at = max(shard_memory.PUBLIC_MIN_KEPT, 2 * self.public.kept)
        return cols

    def _observe(self, agent: Agent, block: BlockInfo) -> Observation:
        return Observation(
            block=block.number, time=block.timestamp, base_fee=block.base_fee,
            block_time=block.block_time or self.config.block_time,
            mechanism=self.mechanism, last_update=self.last_update, address=agent.wallet.address,
            in_flight=agent.in_flight, spent=agent.spent, contributions=agent.contributions, public=self.public,
            load=block.load, settling=self.settling, claims_in_flight=frozenset(agent.claims_in_flight),
            reserved=agent.reserved, fee_cap=agent.fees.price(block.base_fee)[1],
        )

    def _policy_warnings(self, stepped: list[int]) -> list[str]:
        """What policies said they cannot do on this node (e.g. no txpool methods) or with their
        parameters (an arrival rate above the in-flight limit), once each: only the agents stepped
        this tick can have found something new."""
        out = []
        for a in (self.agents[i] for i in stepped):
            arrivals = getattr(a.policy, "arrivals", None)
            said = getattr(arrivals, "warnings", None)
            for w in (*getattr(a.policy, "warnings", ()), *(said or ())):
                if w not in self._warned:
                    self._warned.add(w)
                    out.append(w)
            if said:
                said.clear()  # taken: one string per agent of a large population adds up
        return out


    async def _step(self, agent: Agent, block: BlockInfo, report: TickReport
                    ) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """The agent's decision this block, as the sends it makes (`_send_all` jobs, sent by the tick)."""
        obs = self._observe(agent, block)
        await self._answer(agent, obs)
        actions = agent.policy.decide(obs)
        sends: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        queued = 0
        for action in actions:
            if len(self.pending) + self._decided + len(sends) >= self.config.max_in_flight:
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
                sends.append((job, {"report": report}))
        self._decided += len(sends)  # counted against the shard's cap by the agents deciding after it
        return sends

    async def _send_all(self, jobs: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
        """Sign, record and send transactions (positional and keyword arguments of `_submit`) in
        their order, then await the node's answers together and settle each."""
        if not jobs:
            return
        submitted = [self._submit(*args, **kw) for args, kw in jobs]
        outcomes = await asyncio.gather(*(fut for _, fut in submitted), return_exceptions=True)
        for (sent, _), outcome in zip(submitted, outcomes):
            self._submitted(sent, outcome)

    def _submitted(self, sent: tuple[str, Agent, _Pending | None], outcome: object) -> None:
        """What the node's answer to eth_sendRawTransaction means for the transaction and its wallet."""
        tx_hash, agent, replaces = sent
        if isinstance(outcome, RpcError):
            # The node refused it: final. A refused replacement leaves the original in charge.
            self._finish(tx_hash, TxStatus.DROPPED, reason=f"rejected at send: {outcome.message}")
            if replaces is None:
                agent.wallet.invalidate_nonce()
        elif isinstance(outcome, asyncio.CancelledError):
            raise outcome
        elif isinstance(outcome, BaseException):
            agent.wallet.invalidate_nonce()  # no answer: its fate is unknown until looked up

    def _submit(self, agent: Agent, kind: str, data: bytes, value: int, gas: int, block: BlockInfo,
                c: Contribution | None, target: PublicContribution | None, tip: int | None, *,
                report: TickReport, nonce: int | None = None, replaces: _Pending | None = None,
                fees: FeeStance | None = None) -> tuple[tuple[str, Agent, _Pending | None], asyncio.Future[Any]]:
        assert self.rpc is not None
        stance = fees or (replace(agent.fees, tip=tip) if tip is not None else agent.fees)
        if nonce is None:
            tx, nonce, tip_used, max_fee = agent.wallet.sign(
                to=self.trainer_bytes, data=data, value=value, gas=gas, base_fee=block.base_fee, fees=stance)
        else:
            tx, nonce, tip_used, max_fee = agent.wallet.sign_at(
                nonce, to=self.trainer_bytes, data=data, value=value, gas=gas, base_fee=block.base_fee, fees=stance)
        tx_hash, raw_hex = tx.hash_hex, tx.raw_hex  # properties that build a new string each time
        record = LedgerRecord(
            agent=agent.id, group=agent.group, policy=agent.policy.name, action=kind,
            sender=agent.wallet.address, nonce=nonce, tx_hash=tx_hash, gas_limit=gas, max_fee=max_fee,
            max_priority_fee=tip_used, value=value, submitted_wall=time.time(), submitted_block=block.number,
            replaces=replaces.record.tx_hash if replaces else "",
            target_tx=(c.add_tx if kind == "refund" and c is not None else target.tx_hash if target is not None else ""),
        )
        self.ledger.add(record)
        claim_key = (None if kind not in ("refund", "report") else target.key if target is not None
                     else (agent.wallet.address, c.added_time, c.label, c.data) if c is not None else None)
        reserved = value + gas * max_fee
        agent.reserved += reserved
        if claim_key is not None:
            agent.claims_in_flight.add(claim_key)
        self.pending[tx_hash] = _Pending(record, agent, c, (data, value, gas), target, reserved, claim_key)
        self._meta[tx_hash] = (c, (data, value, gas), target)
        self.by_nonce.setdefault((agent.wallet.address, nonce), []).append(tx_hash)
        agent.in_flight += 1
        report.sent += 1
        if self.config.keep_raw:
            self._raw[tx_hash] = raw_hex
        return (tx_hash, agent, replaces), self.rpc.submit("eth_sendRawTransaction", raw_hex)


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
            jobs.append(((p.agent, r.action, data, value, gas, block, p.contribution, p.target, None),
                         {"report": report, "nonce": r.nonce, "replaces": p, "fees": stance}))
        await self._send_all(jobs)


    async def market_collect(self, block: BlockInfo) -> int:
        """Prediction market, collect phase: every agent with a balance withdraws it (a `collect`
        transaction each, in the ledger like any other)."""
        balances = await asyncio.gather(*(self._view(self.config.trainer, self.trainer_abi, "claimableBalance",
                                                     a.wallet.address) for a in self.agents))
        await self._resync_nonces()
        report = TickReport(self.config.shard_id, block.number)
        sends = [((a, "collect", self.trainer_abi.encode("collect"), 0, 150_000, block, None, None, None),
                  {"report": report})
                 for a, bal in zip(self.agents, balances) if int(bal) > 0 and not a.wallet.needs_resync]
        await self._send_all(sends)
        self._maybe_unsynced = None  # any agent may have sent
        return len(sends)


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

    async def restore(self, blob: bytes, head: int) -> dict[str, Any]:
        """Replacement shard: take the dead one's snapshot, then adopt from the chain what its
        agents sent after it (agents/shard_recovery.py)."""
        block = shard_recovery.restore(self, blob)
        self._wakes.wake_all()  # the policies are the snapshot's: every stored wake is another's
        self._maybe_unsynced = None
        return await shard_recovery.adopt(self, block + 1, head, self._pool)


    # Faults settle or undo transactions between ticks, for agents that may be asleep: every agent
    # steps and every wallet is looked at next tick (rare events; O(agents) once).
    def _after_fault(self) -> None:
        self._wakes.wake_all()
        self._maybe_unsynced = None

    async def notify_dropped(self, hashes: list[str], block: BlockInfo) -> int:
        self._after_fault()
        return await super().notify_dropped(hashes, block)

    async def notify_restart(self, first_lost: int) -> dict[str, int]:
        self._after_fault()
        return await super().notify_restart(first_lost)

    async def notify_reorg(self, first_replaced: int) -> int:
        self._after_fault()
        return await super().notify_reorg(first_replaced)

    async def _resync_nonces(self, force: bool = False, among: set[int] | None = None) -> None:
        """Read the nonce of wallets that lost track of theirs (all with `force`); `among`: only these
        agent slots can have (see tick), None: look at every agent."""
        assert self.rpc is not None
        pool = self.agents if among is None or force else [self.agents[i] for i in sorted(among)]
        agents = [a for a in pool if force or a.wallet.needs_resync]
        # Only once nothing of theirs is in flight: a pending transaction would make the count ambiguous.
        agents = [a for a in agents if force or a.in_flight == 0]
        if not agents:
            return
        nonces = await asyncio.gather(
            *(self.rpc.submit("eth_getTransactionCount", a.wallet.address, "pending") for a in agents)
        )
        for a, n in zip(agents, nonces):
            a.wallet.set_nonce(int(n, 16))

    # ---- results ---------------------------------------------------------------------------

    async def finalize(self, last_block: int) -> dict[str, list[Any]]:
        """Read the last receipts, settle what is left, and return the ledger as columns (a streaming
        shard: only what its ticks have not handed out yet)."""
        await self._read_blocks(last_block)
        if self.pending:
            await self._check_stale(last_block, force=True)
        if self.ledger.stream:
            return self.take_ledger()  # the rest went out with the ticks
        return columns(list(self.records.values()))

    def stats(self) -> dict[str, Any]:
        return {
            "shard": self.config.shard_id,
            "agents": len(self.agents),
            "records": len(self.records),  # held now: a streaming shard forgets settled ones
            "records_retired": self.ledger.retired,
            "pending": len(self.pending),
            "public_contributions": len(self.public),
            "public_kept": self.public.kept,  # the rest was settled and forgotten
            "contributions_kept": sum(a.contributions.kept for a in self.agents),
            "cpu_s": self.cpu_s,
            "process_cpu_s": time.process_time() - self._cpu_start,
            "rpc_batches": self.rpc.batches if self.rpc else 0,
            "http_requests": self._rpc_stats().get("http_requests", 0),
            "rpc": self._rpc_stats(),
            "pid": os.getpid(),
            "ray_node": _ray_node_id(),
            # Where policies' pool questions were answered: txpool, pending_block (no txpool
            # methods on this node), or None if no policy asked.
            "pool_source": self._pool.source if self._pool.has_txpool is not None else None,
        }

    def _rpc_stats(self) -> dict[str, Any]:
        """The connection's counters, the dispatch helper's included."""
        if isinstance(self.rpc, EarlyCoalescingRpc):
            return self.rpc.stats()
        return self.client.stats() if self.client else {}

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


__all__ = ["Agent", "AgentSpec", "BlockInfo", "ShardConfig", "ShardCore", "TickReport", "_Pending", "make_actor_class"]
