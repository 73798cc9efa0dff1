"""The streaming ledger's column builder (agents/shard_ledger.columns) gives exactly
agents.ledger.to_columns' lists, whatever the records hold."""

from __future__ import annotations

from agents.ledger import LedgerRecord, TxStatus, to_columns
from agents.shard_ledger import LedgerBook, columns


def _records() -> list[LedgerRecord]:
    out = []
    for i, status in enumerate(TxStatus):
        r = LedgerRecord(i, f"g{i % 2}", "honest", "add", f"0x{i:040x}", i, f"0x{i:064x}", 150_000, 2 * 10**9,
                         10**9, 3600 + i, 1.5 + i, 7 + i)
        r.status = status
        r.included_block, r.gas_used, r.effective_gas_price, r.received = 9 + i, 120_000, 10**9, 10**30 + i
        r.reason = "why" if i % 2 else ""
        out.append(r)
    return out


def test_same_columns_as_to_columns() -> None:
    recs = _records()
    assert columns(recs) == to_columns(recs)
    assert columns(recs)["status"] == [s.value for s in TxStatus]
    assert columns([]) == to_columns([])
    assert columns(recs[:1]) == to_columns(recs[:1])


def test_take_emits_the_changed_records() -> None:
    book = LedgerBook(stream=True)
    recs = _records()
    for r in recs:
        book.add(r)
    cols, forgotten = book.take(safe_block=-10)
    assert cols == to_columns(recs) and forgotten == []
    book.set_status(recs[0], TxStatus.DROPPED, "gone")
    cols, _ = book.take(safe_block=-10)
    assert cols == to_columns([recs[0]])
