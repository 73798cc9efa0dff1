"""The node's transaction pool as the shard sees it, on nodes with and without txpool_* methods.

anvil and geth answer txpool_status / txpool_content; Hardhat has neither. There the pending block
(`eth_getBlockByNumber("pending")`, which both node kinds build from their pool) stands in: it
holds what would be mined next, so it misses transactions that do not fit into one block and those
queued behind a nonce gap. The first refusal of a txpool method is remembered: no failing call per
block afterwards.
"""

from __future__ import annotations

from typing import Any, Protocol

from contracts.rpc import RpcError

TXPOOL = "txpool"
PENDING_BLOCK = "pending_block"


class _Rpc(Protocol):
    async def call(self, method: str, *params: Any) -> Any: ...


class PoolView:
    def __init__(self) -> None:
        self.has_txpool: bool | None = None  # None: not asked yet

    @property
    def source(self) -> str:
        return PENDING_BLOCK if self.has_txpool is False else TXPOOL

    async def _txpool(self, rpc: _Rpc, method: str) -> Any | None:
        if self.has_txpool is False:
            return None
        try:
            out = await rpc.call(method)
        except RpcError:
            self.has_txpool = False  # the node answered, without the method: it has no txpool
            return None
        self.has_txpool = True
        return out

    async def pending_count(self, rpc: _Rpc) -> int:
        status = await self._txpool(rpc, "txpool_status")
        if status is not None:
            return int(status["pending"], 16)
        return int(await rpc.call("eth_getBlockTransactionCountByNumber", "pending"), 16)

    async def transactions(self, rpc: _Rpc) -> list[dict[str, Any]]:
        """Every pooled transaction (full objects) this view can see."""
        content = await self._txpool(rpc, "txpool_content")
        if content is not None:
            return [tx for part in ("pending", "queued") for by_nonce in (content.get(part) or {}).values()
                    for tx in by_nonce.values()]
        block = await rpc.call("eth_getBlockByNumber", "pending", True)
        return list(block["transactions"]) if block else []
