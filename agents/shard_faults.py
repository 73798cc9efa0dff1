"""A shard under faults: transactions dropped from the pool by chaos, a node that restarted from a
dump (outcomes read from lost blocks undone, the rest re-broadcast with their original signed bytes),
reorgs, and the checkpoints that say which signed bytes may be forgotten."""

from __future__ import annotations

import asyncio

from contracts.rpc import RpcError

from .coalescing import CoalescingRpc
from .ledger import LedgerRecord, TxStatus
from .policies.base import Contribution, ContributionState, PublicContribution
from .shard_ledger import LedgerBook
from .shard_types import Agent, BlockInfo, _Pending
from .window import Window


class Faults:
    """Mixed into ShardCore."""

    rpc: CoalescingRpc | None
    pending: dict[str, _Pending]
    by_nonce: dict[tuple[str, int], list[str]]
    ledger: LedgerBook
    _checkpoint_block: int | None
    public: Window[PublicContribution]
    last_block: int
    _raw: dict[str, str]
    _meta: dict[str, tuple[Contribution | None, tuple[bytes, int, int], PublicContribution | None]]
    _agent_by_address: dict[str, Agent]

    def _finish(self, tx_hash: str, status: TxStatus, reason: str = "") -> None: ...

    async def _check_stale(self, current: int, *, force: bool = False, only: list[str] | None = None) -> None: ...

    async def notify_dropped(self, hashes: list[str], block: BlockInfo) -> int:
        """The orchestrator removed these transactions from the node's pool (chaos): settle ours at
        once, and resync the senders' nonces before they send again."""
        ours = [h for h in hashes if h in self.pending]
        for h in ours:
            p = self.pending[h]
            self._finish(h, TxStatus.DROPPED, reason="dropped from the pool (chaos)")
            p.agent.wallet.invalidate_nonce()
        return len(ours)

    def checkpoint(self, block: int) -> int:
        """The node's state up to `block` is safe in a dump: signed bytes of transactions settled
        at or before it are no longer needed. Returns how many are still kept."""
        self._checkpoint_block = block  # a streaming ledger forgets nothing a restart from it could reopen
        records = self.ledger.records
        settled = [h for h in self._raw if h not in self.pending and _settled_by(records.get(h), block)]
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
        found = await asyncio.gather(*(self.rpc.submit("eth_getTransactionByHash", h) for h in unknown))
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
        # Only records still held: a streaming ledger forgets none a reorg within `reorg_depth` or a
        # restart from the last dump can reach.
        for r in list(self.ledger.records.values()):
            if r.included_block < first_replaced or r.status not in (TxStatus.INCLUDED, TxStatus.REVERTED):
                continue
            agent = self._agent_by_address[r.sender]
            if r.status is TxStatus.INCLUDED:
                agent.spent -= r.value - r.received
            agent.spent -= r.gas_used * r.effective_gas_price
            self.ledger.reopen(r)
            agent.in_flight += 1
            c, raw_args, target = self._meta[r.tx_hash]
            if c is not None and r.action == "add":
                c.state, c.added_time, c.deposit, c.add_tx = ContributionState.SUBMITTED, -1, 0, ""
            elif c is not None and r.action == "refund":
                c.state, c.refunded = ContributionState.REFUND_SENT, 0
            self.pending[r.tx_hash] = _Pending(r, agent, c, raw_args, target)
            self.by_nonce.setdefault((r.sender, r.nonce), []).append(r.tx_hash)
            undone.append(r.tx_hash)
        n = len(self.public)
        while n > self.public.start and self.public[n - 1].block >= first_replaced:
            n -= 1
        self.public.truncate(n)
        self.last_block = min(self.last_block, first_replaced - 1)
        return undone


def _settled_by(r: LedgerRecord | None, block: int) -> bool:
    """Whether a transaction's signed bytes are no longer needed once the node's state up to `block`
    is in a dump (a record already forgotten was settled deeper than any dump the shard was told of)."""
    return r is None or r.status in (TxStatus.DROPPED, TxStatus.REPLACED) or 0 <= r.included_block <= block
