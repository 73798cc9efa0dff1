"""Per-block chain records: what congestion and the fee market looked like, block by block."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any

from contracts.rpc import RpcClient, RpcError

ELASTICITY = 2
BASE_FEE_CHANGE_DENOMINATOR = 8


def next_base_fee(base_fee: int, gas_used: int, gas_limit: int) -> int:
    """The base fee EIP-1559 prescribes for the child of a block."""
    target = gas_limit // ELASTICITY
    if target == 0 or gas_used == target:
        return base_fee
    if gas_used > target:
        delta = max(base_fee * (gas_used - target) // target // BASE_FEE_CHANGE_DENOMINATOR, 1)
        return base_fee + delta
    delta = base_fee * (target - gas_used) // target // BASE_FEE_CHANGE_DENOMINATOR
    return base_fee - delta


@dataclass
class BlockRecord:
    number: int
    timestamp: int  # chain time
    wall: float  # when the monitor read it
    base_fee: int
    gas_used: int
    gas_limit: int
    tx_count: int
    pool_pending: int  # txpool at read time
    pool_queued: int
    expected_base_fee: int  # what EIP-1559 predicts from the parent (-1 for the first block seen)


BLOCK_COLUMNS = [f.name for f in fields(BlockRecord)]


class ChainMonitor:
    def __init__(self, client: RpcClient):
        self.client = client
        self.records: list[BlockRecord] = []
        self.last = -1
        self._parent: tuple[int, int, int] | None = None  # base fee, gas used, gas limit
        self.has_txpool = True
        self.reorged: list[BlockRecord] = []

    def rewind(self, first_replaced: int) -> None:
        """After a reorg: forget the replaced blocks (kept aside as `reorged`) and read them again."""
        keep = [r for r in self.records if r.number < first_replaced]
        self.reorged.extend(r for r in self.records if r.number >= first_replaced)
        self.records = keep
        self.last = first_replaced - 1
        parent = keep[-1] if keep else None
        self._parent = (parent.base_fee, parent.gas_used, parent.gas_limit) if parent else None

    async def read(self, upto: int) -> list[BlockRecord]:
        """Record every block after the last one recorded, up to `upto`."""
        if self.last < 0:
            self.last = upto - 1
        numbers = list(range(self.last + 1, upto + 1))
        if not numbers:
            return []
        calls: list[tuple[str, list[Any]]] = [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]
        if self.has_txpool:
            calls.append(("txpool_status", []))
        results = await self.client.batch(calls)
        pending = queued = -1
        if self.has_txpool:
            pool = results.pop()
            if isinstance(pool, RpcError):
                self.has_txpool = False
            else:
                pending, queued = int(pool["pending"], 16), int(pool["queued"], 16)
        wall = time.time()
        out = []
        for n, block in zip(numbers, results):
            if isinstance(block, Exception) or block is None:
                break
            base_fee = int(block.get("baseFeePerGas", "0x0"), 16)
            gas_used, gas_limit = int(block["gasUsed"], 16), int(block["gasLimit"], 16)
            expected = next_base_fee(*self._parent) if self._parent else -1
            rec = BlockRecord(
                number=n, timestamp=int(block["timestamp"], 16), wall=wall, base_fee=base_fee,
                gas_used=gas_used, gas_limit=gas_limit, tx_count=len(block.get("transactions", [])),
                pool_pending=pending, pool_queued=queued, expected_base_fee=expected,
            )
            self._parent = (base_fee, gas_used, gas_limit)
            self.records.append(rec)
            out.append(rec)
            self.last = n
        return out
