"""One record per intended transaction, from intent to exactly one final status."""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Any


class TxStatus(str, Enum):
    PENDING = "pending"  # sent, fate not yet known: never final
    INCLUDED = "included"  # mined, succeeded
    REVERTED = "reverted"  # mined, reverted (reason recorded)
    REPLACED = "replaced"  # another transaction with the same nonce was mined instead
    DROPPED = "dropped"  # rejected at send, or vanished from the pool

    @property
    def final(self) -> bool:
        return self is not TxStatus.PENDING


@dataclass
class LedgerRecord:
    agent: int
    group: str
    policy: str
    action: str
    sender: str
    nonce: int
    tx_hash: str
    gas_limit: int
    max_fee: int
    max_priority_fee: int
    value: int  # wei sent with the transaction
    submitted_wall: float  # unix time when handed to the node
    submitted_block: int  # latest block the agent had seen
    status: TxStatus = TxStatus.PENDING
    included_block: int = -1
    included_time: int = -1  # chain time of the including block
    included_wall: float = float("nan")  # when the shard saw the receipt
    gas_used: int = 0
    effective_gas_price: int = 0
    deposit: int = 0  # wei kept by the trainer (addData)
    received: int = 0  # wei paid out to the sender (refund, report, excess)
    reason: str = ""
    replaces: str = ""  # hash of the transaction this one replaces (same nonce, higher fees)
    # Claims (refund, report/take, take-all): the addData transaction of the contribution claimed, the
    # join key with contributions.parquet's tx_hash. Empty for other actions or an unknown target.
    target_tx: str = ""

    @property
    def fee_paid(self) -> int:
        return self.gas_used * self.effective_gas_price


LEDGER_COLUMNS = [f.name for f in fields(LedgerRecord)]


def to_columns(records: list[LedgerRecord]) -> dict[str, list[Any]]:
    """Column lists (cheap to ship between Ray processes, direct to Arrow). Wei values become strings
    where they could exceed 64 bits."""
    cols: dict[str, list[Any]] = {name: [] for name in LEDGER_COLUMNS}
    for r in records:
        for name in LEDGER_COLUMNS:
            v = getattr(r, name)
            if isinstance(v, TxStatus):
                v = v.value
            cols[name].append(v)
    return cols
