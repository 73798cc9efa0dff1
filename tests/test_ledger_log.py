"""The on-disk record log: latest row per transaction, readable after a crash cut it short."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agents.ledger import LEDGER_COLUMNS, LedgerRecord, TxStatus, to_columns
from orchestrator.ledger_log import RecordLog, read_log, schema_of


def record(i: int, status: TxStatus = TxStatus.PENDING, block: int = -1) -> LedgerRecord:
    return LedgerRecord(agent=i % 3, group="honest", policy="honest", action="add", sender=f"0x{i:040x}", nonce=i,
                        tx_hash=f"0x{i:064x}", gas_limit=200_000, max_fee=3 * 10**9, max_priority_fee=10**9 + i,
                        value=10**19 + i, submitted_wall=1.5, submitted_block=7, status=status,
                        included_block=block, deposit=10**19 + i)


def test_latest_row_wins_in_first_seen_order(tmp_path: Path) -> None:
    log = RecordLog(tmp_path / "ledger.arrows", schema_of(LedgerRecord))
    log.append(to_columns([record(1), record(2)]))
    log.append(to_columns([record(3), record(1, TxStatus.INCLUDED, 9)]))
    log.append(to_columns([record(1, TxStatus.PENDING)]))  # a reorg reopened it
    log.append(to_columns([record(2, TxStatus.DROPPED)]))
    log.close()
    table, complete = read_log(tmp_path / "ledger.arrows")
    assert complete and table.column_names == LEDGER_COLUMNS
    rows = table.to_pylist()
    assert [r["tx_hash"] for r in rows] == [f"0x{i:064x}" for i in (1, 2, 3)]
    assert [r["status"] for r in rows] == ["pending", "dropped", "pending"]
    assert int(rows[0]["value"]) == 10**19 + 1  # wei beyond 64 bits stays exact


def test_a_cut_batch_loses_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "ledger.arrows"
    log = RecordLog(path, schema_of(LedgerRecord))
    log.append(to_columns([record(i) for i in range(10)]))
    size = path.stat().st_size
    log.append(to_columns([record(i) for i in range(10, 20)]))
    log.close()
    with open(path, "r+b") as fh:
        fh.truncate(size + (path.stat().st_size - size) // 2)
    table, complete = read_log(path)
    assert not complete and table.num_rows == 10


def test_empty_log_is_a_valid_empty_table(tmp_path: Path) -> None:
    log = RecordLog(tmp_path / "l.arrows", schema_of(LedgerRecord))  # never closed: as after a crash
    table, _ = read_log(tmp_path / "l.arrows")
    assert table.num_rows == 0 and table.column_names == LEDGER_COLUMNS
    log.close()


def test_mismatched_columns_are_refused(tmp_path: Path) -> None:
    log = RecordLog(tmp_path / "l.arrows", schema_of(LedgerRecord))
    cols = to_columns([record(1)])
    cols["nonce"] = []
    with pytest.raises(ValueError, match="column 'nonce' has 0 rows, expected 1"):
        log.append(cols)
    log.close()


def test_sigkill_keeps_every_flushed_row(tmp_path: Path) -> None:
    """A writer process killed with SIGKILL mid-stream: every batch it reported as flushed is on disk."""
    path = tmp_path / "ledger.arrows"
    child = textwrap.dedent(f"""
        import sys
        from agents.ledger import LedgerRecord, to_columns
        from orchestrator.ledger_log import RecordLog, schema_of
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_ledger_log import record
        log = RecordLog(__import__("pathlib").Path({str(path)!r}), schema_of(LedgerRecord))
        i = 0
        while True:
            log.append(to_columns([record(i + k) for k in range(50)]))
            i += 50
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout is not None
    flushed = 0
    while flushed < 2_000:
        line = proc.stdout.readline()
        assert line, "writer died before writing"
        flushed = int(line)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    table, _ = read_log(path)
    assert table.num_rows >= flushed
    assert table.column("tx_hash").to_pylist()[:flushed] == [f"0x{i:064x}" for i in range(flushed)]
