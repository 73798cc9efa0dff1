"""A shard's state saved between ticks, and a replacement shard brought back from it and the chain.

A shard actor can die (its process killed, its node lost). The orchestrator keeps each shard's last
snapshot, taken between ticks at every checkpoint; a replacement actor with the same configuration
derives the same keys from the seed, restores the snapshot, then *adopts* from the chain whatever
its agents sent after it: their transactions in later blocks and in the node's pool become ledger
records again (outcomes are read from receipts as usual), an `addData` becomes the agent's
contribution again, and the policy is told which samples it already used, so none is sent twice.

Keys are never part of a snapshot: wallets are rebuilt from the seed in the new process.
"""

from __future__ import annotations

import pickle
import time
from typing import TYPE_CHECKING, Any

from .ledger import LedgerRecord, TxStatus
from .policies.base import Contribution, ContributionState, Sample

if TYPE_CHECKING:
    from .shard import ShardCore

SNAPSHOT_VERSION = 1
# Trainer functions an agent calls, and the ledger's name for each.
ACTIONS = {"addData": "add", "refund": "refund", "report": "report", "predict": "spam", "collect": "collect"}


class SnapshotError(RuntimeError):
    pass


def snapshot(core: ShardCore, block: int) -> bytes:
    """Everything the shard knows, in one pickle so that shared objects stay shared (a pending
    entry and the ledger hold the same record; a pending entry and an agent the same contribution)."""
    from .shard import _Pending  # noqa: F401 - the restore side needs the same classes

    state = {
        "version": SNAPSHOT_VERSION,
        "block": block,
        "records": core.records,
        "agents": {a.id: (a.policy, a.contributions, a.in_flight, a.spent) for a in core.agents},
        "pending": {h: (p.record, p.agent.id, p.contribution, p.raw_args, p.target) for h, p in core.pending.items()},
        "by_nonce": core.by_nonce,
        "meta": core._meta,
        "public": core.public,
        "raw": core._raw,
        "last_block": core.last_block,
        "last_update": core.last_update,
        "acting": core.acting,
    }
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def restore(core: ShardCore, blob: bytes) -> int:
    """Put a snapshot's state into a freshly started shard (same configuration). Returns the
    snapshot's block."""
    from .shard import _Pending

    state = pickle.loads(blob)  # noqa: S301 - written by our own shard in this run, never external input
    if state.get("version") != SNAPSHOT_VERSION:
        raise SnapshotError(f"shard snapshot version {state.get('version')!r}, expected {SNAPSHOT_VERSION}")
    by_id = {a.id: a for a in core.agents}
    if set(by_id) != set(state["agents"]):
        raise SnapshotError("the snapshot's agents are not this shard's")
    for agent_id, (policy, contributions, in_flight, spent) in state["agents"].items():
        a = by_id[agent_id]
        a.policy, a.contributions, a.in_flight, a.spent = policy, contributions, in_flight, spent
    core.records = state["records"]
    core.pending = {h: _Pending(rec, by_id[aid], c, raw_args, target)
                    for h, (rec, aid, c, raw_args, target) in state["pending"].items()}
    core.by_nonce = state["by_nonce"]
    core._meta = state["meta"]
    core.public = state["public"]
    core._raw = state["raw"]
    core.last_block = state["last_block"]
    core.last_update = state["last_update"]
    core.acting = state["acting"]
    return int(state["block"])


async def adopt(core: ShardCore, from_block: int, head: int) -> dict[str, int]:
    """Find what this shard's agents sent after their snapshot (blocks `from_block`..`head`, then the
    pool) and take it back into the ledger as pending: the next block read settles it."""
    assert core.rpc is not None
    ours = {a.wallet.address.lower(): a for a in core.agents}
    known = {r.tx_hash for r in core.records}
    found: list[tuple[dict[str, Any], int]] = []
    for n in range(from_block, head + 1):
        b = await core.rpc.call("eth_getBlockByNumber", hex(n), True)
        if not b:
            break
        found.extend((tx, n) for tx in b["transactions"]
                     if tx["from"].lower() in ours and tx["hash"] not in known)
    pool = await core.rpc.call("txpool_content")
    for part in ("pending", "queued"):
        for sender, by_nonce in (pool.get(part) or {}).items():
            if sender.lower() in ours:
                found.extend((tx, -1) for tx in by_nonce.values() if tx["hash"] not in known)
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
    return {"adopted": len(found), "contributions": sum(len(v) for v in adopted.values())}


def _adopt_one(core: ShardCore, agent: Any, tx: dict[str, Any], from_block: int) -> Contribution | None:
    from .shard import _Pending

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
    core.records.append(record)
    core.pending[record.tx_hash] = _Pending(record, agent, c, (data, value, gas), None)
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
