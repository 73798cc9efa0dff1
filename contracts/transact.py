"""Cold-path transactions (deployment, funding, set-up): sign, send, wait for the receipt.

The hot path lives in `agents.wallet`; this module serves one sender doing a few sequential steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .rpc import RpcClient, RpcError
from .signing import LocalAccount, SignedTx, sign_eip1559

GAS_PAD = 1.25  # an exact estimate was seen to be dropped under congestion (stack-facts.md)


class TransactionFailed(RuntimeError):
    def __init__(self, what: str, receipt: dict[str, Any] | None, reason: str = ""):
        super().__init__(f"{what} failed{': ' + reason if reason else ''}")
        self.receipt = receipt
        self.reason = reason


def fee_caps(base_fee: int, tip: int, headroom: int = 3) -> tuple[int, int]:
    """(maxPriorityFeePerGas, maxFeePerGas): room for several full blocks of base-fee growth, since
    anvil silently drops a pooled transaction whose cap falls below the base fee."""
    return tip, base_fee * headroom + tip


async def wait_receipt(
    client: RpcClient,
    tx_hash: str,
    *,
    timeout_s: float = 120.0,
    poll_s: float = 0.05,
    mine: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Poll for a receipt. `mine` is called between polls on a node that only mines on demand."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        receipt = await client.call("eth_getTransactionReceipt", tx_hash)
        if receipt is not None:
            return receipt
        if loop.time() > deadline:
            raise TimeoutError(f"no receipt for {tx_hash} after {timeout_s:.0f} s")
        if mine is not None:
            await mine()
        else:
            await asyncio.sleep(poll_s)


class Transactor:
    """Sequential sender for one account with a locally kept nonce."""

    def __init__(
        self,
        client: RpcClient,
        account: LocalAccount,
        chain_id: int,
        *,
        tip: int = 1_000_000_000,
        mine: Callable[[], Awaitable[None]] | None = None,
    ):
        self.client = client
        self.account = account
        self.chain_id = chain_id
        self.tip = tip
        self.mine = mine
        self.nonce: int | None = None
        self.gas_used = 0
        self.sent = 0

    async def base_fee(self) -> int:
        block = await self.client.get_block("latest")
        return int(block.get("baseFeePerGas", "0x0"), 16) if block else 0

    async def estimate(self, to: str | None, data: bytes, value: int = 0) -> int:
        tx: dict[str, str] = {"from": self.account.address, "data": "0x" + data.hex(), "value": hex(value)}
        if to:
            tx["to"] = to
        return int(await self.client.call("eth_estimateGas", tx), 16)

    async def sign(self, to: str | None, data: bytes, value: int = 0, gas: int | None = None,
                   base_fee: int | None = None) -> SignedTx:
        """Sign the next transaction. Pass `base_fee` when signing many at once (one block read)."""
        if self.nonce is None:
            self.nonce = await self.client.nonce(self.account.address)
        if gas is None:
            gas = int(await self.estimate(to, data, value) * GAS_PAD)
        tip, cap = fee_caps(base_fee if base_fee is not None else await self.base_fee(), self.tip)
        tx = sign_eip1559(
            self.account,
            chain_id=self.chain_id,
            nonce=self.nonce,
            max_priority_fee=tip,
            max_fee=cap,
            gas=gas,
            to=bytes.fromhex(to[2:]) if to else None,
            value=value,
            data=data,
        )
        self.nonce += 1
        self.sent += 1
        return tx

    async def send(
        self, to: str | None, data: bytes = b"", value: int = 0, gas: int | None = None, what: str = "transaction"
    ) -> dict[str, Any]:
        """Send and wait; raise TransactionFailed on revert. Returns the receipt."""
        try:
            tx = await self.sign(to, data, value, gas)
        except RpcError as e:  # estimateGas runs the call: a revert shows here first
            raise TransactionFailed(what, None, e.message) from e
        try:
            await self.client.call("eth_sendRawTransaction", tx.raw_hex)
        except RpcError:
            self.nonce = None  # resync on the next send
            raise
        receipt = await wait_receipt(self.client, tx.hash_hex, mine=self.mine)
        self.gas_used += int(receipt["gasUsed"], 16)
        if receipt.get("status") != "0x1":
            raise TransactionFailed(what, receipt)
        return receipt

    async def wait_all(self, hashes: list[str], timeout_s: float = 120.0) -> list[dict[str, Any]]:
        """Receipts of many transactions, polled together in JSON-RPC batches."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        found: dict[str, dict[str, Any]] = {}
        while True:
            missing = [h for h in hashes if h not in found]
            if not missing:
                return [found[h] for h in hashes]
            for h, r in zip(missing, await self.client.batch([("eth_getTransactionReceipt", [h]) for h in missing])):
                if isinstance(r, dict):
                    found[h] = r
            if len(found) == len(hashes):
                continue
            if loop.time() > deadline:
                raise TimeoutError(f"{len(hashes) - len(found)} receipts missing after {timeout_s:.0f} s")
            if self.mine is not None:
                await self.mine()
            else:
                await asyncio.sleep(0.05)

    async def send_many(self, txs: list[SignedTx]) -> list[dict[str, Any]]:
        """Send pre-signed transactions in one batch, then wait for all receipts."""
        results = await self.client.batch([("eth_sendRawTransaction", [t.raw_hex]) for t in txs])
        for r in results:
            if isinstance(r, RpcError):
                self.nonce = None
                raise r
        receipts = await self.wait_all([t.hash_hex for t in txs])
        for t, r in zip(txs, receipts):
            self.gas_used += int(r["gasUsed"], 16)
            if r.get("status") != "0x1":
                raise TransactionFailed(f"transaction {t.hash_hex}", r)
        return receipts
