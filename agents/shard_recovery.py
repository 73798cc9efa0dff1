"""A shard's state saved between ticks, and a replacement shard brought back from it and the chain.

A shard actor can die (its process killed, its node lost). The orchestrator keeps each shard's last
snapshot, taken between ticks at every checkpoint; a replacement actor with the same configuration
derives the same keys from the seed, restores the snapshot, then *adopts* from the chain whatever
its agents sent after it: their transactions in later blocks and in the node's pool become ledger
records again (outcomes are read from receipts as usual), an `addData` becomes the agent's
contribution again, and the policy is told which samples it already used, so none is sent twice.

On a node without txpool methods (Hardhat) the pool is read from the pending block instead
(agents/pool.py): what sits behind a nonce gap or beyond one block's worth is not adopted, and
`adopt` says so in its answer (`pool_source`), which the run keeps with the shard restart.

This module knows the shard only through `RecoverableShard` (what it reads and writes), so the shard
imports it and not the other way round.

Keys are never part of a snapshot: wallets are rebuilt from the seed in the new process.
"""

from __future__ import annotations

import pickle
import time
from typing import Any, Protocol

from contracts.abi import ContractABI

from .ledger import LedgerRecord, TxStatus
from .shard_ledger import LedgerBook
from .shard_types import _Pending as Pending
from .policies.base import Contribution, ContributionState, PublicContribution, Sample
from .pool import PENDING_BLOCK, PoolView

SNAPSHOT_VERSION = 2  # 2: the ledger book (live records and counters), settling, pending's reservations
# Trainer functions an agent calls, and the ledger's name for each.
ACTIONS = {"addData": "add", "refund": "refund", "report": "report", "predict": "spam", "collect": "collect"}


class SnapshotError(RuntimeError):
    pass


class RecoverableShard(Protocol):
    """What of a shard (agents/shard.py `ShardCore`) a snapshot holds and an adoption touches."""

    agents: list[Any]
    ledger: LedgerBook
    pending: dict[str, Pending]
    by_nonce: dict[tuple[str, int], list[str]]
    _meta: dict[str, tuple[Contribution | None, tuple[bytes, int, int], PublicContribution | None]]
    public: list[PublicContribution]
    _raw: dict[str, str]
    last_block: int
    last_update: int
    acting: bool
    settling: bool
    rpc: Any
    trainer_abi: ContractABI

    async def _resync_nonces(self, force: bool = False) -> None: ...


def snapshot(core: RecoverableShard, block: int) -> bytes:
    """Everything the shard knows, in one pickle so that shared objects stay shared (a pending
    entry and the ledger hold the same record; a pending entry and an agent the same contribution).
    A streaming ledger holds only the records not yet settled deep: the rest are in the driver's
    log on disk, and the counters carry on from the book's."""
    state = {
        "version": SNAPSHOT_VERSION,
        "block": block,
        "ledger": core.ledger,
        "agents": {a.id: (a.policy, a.contributions, a.in_flight, a.spent) for a in core.agents},
        "pending": {h: (p.record, p.agent.id, p.contribution, p.raw_args, p.target, p.reserved, p.claim_key)
                    for h, p in core.pending.items()},
        "by_nonce": core.by_nonce,
        "meta": core._meta,
        "public": core.public,
        "raw": core._raw,
        "last_block": core.last_block,
        "last_update": core.last_update,
        "acting": core.acting,
        "settling": core.settling,
    }
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def restore(core: RecoverableShard, blob: bytes) -> int:
    """Put a snapshot's state into a freshly started shard (same configuration). Returns the
    snapshot's block."""
    state = pickle.loads(blob)  # noqa: S301 - written by our own shard in this run, never external input
    if state.get("version") != SNAPSHOT_VERSION:
        raise SnapshotError(f"shard snapshot version {state.get('version')!r}, expected {SNAPSHOT_VERSION}")
    by_id = {a.id: a for a in core.agents}
    if set(by_id) != set(state["agents"]):
        raise SnapshotError("the snapshot's agents are not this shard's")
    for agent_id, (policy, contributions, in_flight, spent) in state["agents"].items():
        a = by_id[agent_id]
        a.policy, a.contributions, a.in_flight, a.spent = policy, contributions, in_flight, spent
    core.ledger = state["ledger"]
    core.pending = {h: Pending(rec, by_id[aid], c, raw_args, target, reserved, claim_key)
                    for h, (rec, aid, c, raw_args, target, reserved, claim_key) in state["pending"].items()}
    # What pending transactions hold against budgets and which claims are in flight follow from them.
    for p in core.pending.values():
        p.agent.reserved += p.reserved
        if p.claim_key is not None:
            p.agent.claims_in_flight.add(p.claim_key)
    core.by_nonce = state["by_nonce"]
    core._meta = state["meta"]
    core.public = state["public"]
    core._raw = state["raw"]
    core.last_block = state["last_block"]
    core.last_update = state["last_update"]
    core.acting = state["acting"]
    core.settling = state["settling"]  # a shard replaced during settlement goes on claiming, not adding
    return int(state["block"])


async def adopt(core: RecoverableShard, from_block: int, head: int, pool: PoolView | None = None) -> dict[str, Any]:
    """Find what this shard's agents sent after their snapshot (blocks `from_block`..`head`, then the
    pool) and take it back into the ledger as pending: the next block read settles it. The answer
    counts what was adopted and names where the pool was read (`txpool` or `pending_block`)."""
    assert core.rpc is not None
    ours = {a.wallet.address.lower(): a for a in core.agents}
    known = set(core.ledger.records)  # forgotten ones are settled below the snapshot's block
    found: list[tuple[dict[str, Any], int]] = []
    for n in range(from_block, head + 1):
        b = await core.rpc.call("eth_getBlockByNumber", hex(n), True)
        if not b:
            break
        found.extend((tx, n) for tx in b["transactions"]
                     if tx["from"].lower() in ours and tx["hash"] not in known)
    pool = pool or PoolView()
    seen = {tx["hash"] for tx, _ in found}
    for tx in await pool.transactions(core.rpc):
        if tx["from"].lower() in ours and tx["hash"] not in known and tx["hash"] not in seen:
            found.append((tx, -1))
    adopted: dict[int, list[Contribution]] = {}
    for tx, _block in sorted(found, key=lambda f: (f[0]["from"].lower(), int(f[0]["nonce"], 16))):
        agent = ours[tx["from"].lower()]
        c = _adopt_one(core, agent, tx, from_block)
        if c is not None:
            adopted.setdefault(agent.id, []).append(c)
    for a in core.agents:
        if a.id in adopted:
            a.policy.resume(adopted[a.id])
    # Read every block after the snapshot again: adopted transactions and the snapshot's pending
    # ones mined since are settled from their receipts.
    core.last_block = min(core.last_block, from_block - 1)
    await core._resync_nonces(force=True)
    out: dict[str, Any] = {"adopted": len(found), "contributions": sum(len(v) for v in adopted.values()),
                           "pool_source": pool.source}
    if pool.source == PENDING_BLOCK:
        out["note"] = ("the node has no txpool methods: the pool was read from its pending block, so "
                       "transactions behind a nonce gap or beyond one block's worth were not adopted")
    return out


def _adopt_one(core: RecoverableShard, agent: Any, tx: dict[str, Any], from_block: int) -> Contribution | None:
    data = bytes.fromhex(tx["input"][2:])
    fn = next((f for f in core.trainer_abi.functions.values() if f.selector == data[:4]), None)
    action = ACTIONS.get(fn.name, fn.name) if fn else "unknown"
    args = _decode_args(fn, data) if fn else []
    c: Contribution | None = None
    if action == "add" and len(args) >= 2:
        c = agent.new_contribution(Sample(tuple(int(x) for x in args[0]), int(args[1])))
    elif action == "refund" and len(args) >= 3:
        key = (tuple(int(x) for x in args[0]), int(args[1]), int(args[2]))
        c = next((x for x in agent.contributions if (x.data, x.label, x.added_time) == key), None)
        if c is not None:
            c.state = ContributionState.REFUND_SENT
    value = int(tx["value"], 16)
    gas = int(tx["gas"], 16)
    record = LedgerRecord(
        agent=agent.id, group=agent.group, policy=agent.policy.name, action=action, sender=agent.wallet.address,
        nonce=int(tx["nonce"], 16), tx_hash=tx["hash"], gas_limit=gas,
        max_fee=int(tx.get("maxFeePerGas") or tx.get("gasPrice") or "0x0", 16),
        max_priority_fee=int(tx.get("maxPriorityFeePerGas") or "0x0", 16), value=value,
        submitted_wall=time.time(), submitted_block=from_block - 1, reason="adopted after a shard restart",
        target_tx=core.target_tx_of(action, args, c),
    )
    record.status = TxStatus.PENDING
    core.ledger.add(record)  # counted and handed to the driver (it supersedes the dead shard's row)
    reserved = value + gas * record.max_fee
    agent.reserved += reserved
    core.pending[record.tx_hash] = Pending(record, agent, c, (data, value, gas), None, reserved)
    core._meta[record.tx_hash] = (c, (data, value, gas), None)
    core.by_nonce.setdefault((record.sender, record.nonce), []).append(record.tx_hash)
    agent.in_flight += 1
    return c if action == "add" else None


def _decode_args(fn: Any, data: bytes) -> list[Any]:
    from eth_abi import decode as abi_decode

    try:
        return list(abi_decode(fn.input_types, data[4:]))
    except Exception:  # noqa: BLE001 - an input we cannot read is still a transaction to account for
        return []
