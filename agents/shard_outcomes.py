"""Reading what happened to a shard's transactions: receipts of new blocks, the public list of
contributions from the trainer's AddData logs, revert reasons, transactions gone from the pool, and
each transaction's final status (with what it means for the agent's books and its policy's claims)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from eth_utils import to_checksum_address

from contracts.abi import ContractABI, decode_revert
from contracts.rpc import RpcError

from .coalescing import CoalescingRpc
from .ledger import LedgerRecord, TxStatus
from .policies.base import ContributionState, Mechanism, PublicContribution
from .shard_ledger import LedgerBook
from .shard_types import ShardConfig, _Pending
from .window import Window


class Outcomes:
    """Mixed into ShardCore."""

    config: ShardConfig
    rpc: CoalescingRpc | None
    trainer_abi: ContractABI
    mechanism: Mechanism
    errors: dict[bytes, tuple[str, list[str]]]
    _events: dict[bytes, ContractABI]
    _add_topic: str
    pending: dict[str, _Pending]
    ledger: LedgerBook
    by_nonce: dict[tuple[str, int], list[str]]
    public: Window[PublicContribution]
    needs_public: bool
    last_block: int
    _senders: dict[str, str]  # AddData sender topic -> address as the ABI spells it

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
        calls = [self.rpc.submit("eth_getBlockByNumber", hex(n), False) for n in numbers]
        if self.needs_public:
            topic = "0x" + self.trainer_abi.events_by_name["AddData"].topic.hex()
            calls.append(self.rpc.submit("eth_getLogs", {"address": self.config.trainer, "topics": [topic],
                                                       "fromBlock": hex(numbers[0]), "toBlock": hex(upto)}))
        results = await asyncio.gather(*calls)
        if self.needs_public:
            for log in sorted(results.pop(), key=lambda lg: (int(lg["blockNumber"], 16), int(lg["logIndex"], 16))):
                c = self._public_of(log, len(self.public))
                if c is not None:
                    self.public.append(c)
        ours: list[tuple[str, int]] = []
        read_upto = self.last_block
        for n, header in zip(numbers, results):
            if not header:
                break
            timestamp = int(header["timestamp"], 16)
            ours.extend((h, timestamp) for h in header.get("transactions", []) if h in self.pending)
            read_upto = n
        receipts = await asyncio.gather(*(self.rpc.submit("eth_getTransactionReceipt", h) for h, _ in ours))
        for (h, timestamp), receipt in zip(ours, receipts):
            p = self.pending.get(h)
            if p is not None and receipt is not None:
                await self._apply_receipt(p, receipt, timestamp)
        self.last_block = read_upto

    def _public_of(self, log: dict[str, Any], index: int = -1) -> PublicContribution | None:
        """An AddData log as a public contribution. Every built-in policy keeps this list, so it is read
        by hand (AddData(int64[] d, uint64 c, uint256 t, address indexed sender, uint256 cost): data
        words [offset of d, c, t, cost, len(d), d...]); the ABI decodes only each new sender's topic,
        so addresses keep the ABI's spelling."""
        topics = log.get("topics") or []
        if len(topics) < 2 or topics[0] != self._add_topic:
            return None
        sender = self._senders.get(topics[1])
        if sender is None and len(topics[1]) == 66 and topics[1].startswith("0x" + "0" * 24):
            # A clean address word: its checksummed spelling is what the ABI decode gives, for a
            # fraction of the cost (one of these per new sender).
            sender = self._senders[topics[1]] = to_checksum_address("0x" + topics[1][26:])
        if sender is None:
            decoded = self.trainer_abi.decode_log(log)
            if not decoded or decoded[0] != "AddData":
                return None
            sender = self._senders[topics[1]] = decoded[1]["sender"]
        # Every shard reads every contribution: the words are cut from the bytes (half the cost of
        # parsing each word's hex), the data words as signed int64 values.
        raw = bytes.fromhex(log["data"][2:])
        word = int.from_bytes
        n = word(raw[128:160], "big")
        data = tuple([word(raw[i:i + 32], "big", signed=True) for i in range(160, 160 + 32 * n, 32)])
        return PublicContribution(sender, data, word(raw[32:64], "big"), word(raw[64:96], "big"),
                                  word(raw[96:128], "big"), int(log["blockNumber"], 16),
                                  log.get("transactionHash") or "", index)

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
        self.ledger.set_status(r, status, reason)  # keeps the running counters, marks it for the driver
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
        found = await asyncio.gather(*(self.rpc.submit("eth_getTransactionByHash", h) for h in stale),
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
