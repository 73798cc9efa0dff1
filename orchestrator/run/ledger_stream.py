"""The run's ledger on disk while it goes: every tick's ledger rows (from the shards' reports) are
appended to `<results>/ledger.arrows` and flushed, so a run killed at any moment keeps every
transaction handed over before its last flush. At the end the ledger tables are written from this
log (orchestrator/run/collect.py); readers fall back to it when ledger.parquet is missing
(orchestrator/report_folder.py). Format and reading: orchestrator/ledger_log.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.ledger import LEDGER_COLUMNS, LedgerRecord

from ..ledger_log import RecordLog, read_columns, schema_of
from ..report_folder import LEDGER_LOG  # one name for the writer and the readers


class LedgerStream:
    """One run's ledger log. The file is created at the first rows (a run that sent nothing has none)."""

    def __init__(self, path: Path):
        self.path = path
        self._log: RecordLog | None = None
        self.rows = 0

    def append(self, columns: Mapping[str, Sequence[Any]] | None) -> int:
        if not columns or not columns.get("tx_hash"):
            return 0
        if self._log is None:
            self._log = RecordLog(self.path, schema_of(LedgerRecord))
        n = self._log.append(columns)
        self.rows += n
        return n

    def extend(self, parts: Sequence[Mapping[str, Sequence[Any]] | None]) -> int:
        return sum(self.append(p) for p in parts)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def read(self) -> dict[str, list[Any]]:
        """The ledger as columns: each transaction's last row, wei amounts as ints."""
        return read_columns(self.path) if self.path.exists() else {name: [] for name in LEDGER_COLUMNS}

    def discard(self) -> None:
        """Once ledger.parquet is written the log says nothing more: remove it (it can be large)."""
        self.close()
        self.path.unlink(missing_ok=True)


__all__ = ["LEDGER_LOG", "LedgerStream"]
