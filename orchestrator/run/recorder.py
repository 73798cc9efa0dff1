"""The one place a run's happenings are written down: the state the summary is built from, the live
telemetry and the log, updated together so the three never disagree."""

from __future__ import annotations

import time
from typing import Any

import structlog

from .. import logs

from .ledger_stream import LedgerStream
from .state import RunState

log = structlog.get_logger("dcai.run")

MAX_TICK_ERRORS = 100  # kept in the summary; every one is logged
MAX_WARNINGS = 100  # distinct policy warnings kept in the summary; each logged once


class Recorder:
    def __init__(self, state: RunState, telemetry: Any, ledger: LedgerStream | None = None):
        self.state = state
        self.telemetry = telemetry
        self.ledger = ledger  # the ledger log on disk: every tick's rows, flushed as they come

    def event(self, kind: str, head_number: int, *, telemetry_kind: str | None = None, log_level: str = "info",
              **fields: Any) -> dict[str, Any]:
        """An event at a block (chaos, restarts, settlement): into state.events, telemetry and the log."""
        record = {"event": kind, "block": head_number, "offset": head_number - self.state.start_block,
                  "wall": time.time(), **fields}
        self.state.events.append(record)
        payload = {k: v for k, v in record.items() if k != "event"}
        if telemetry_kind == "chaos":
            self.telemetry.event("chaos", **payload, chaos=kind)
        else:
            self.telemetry.event(telemetry_kind or kind, **payload)
        getattr(log, log_level)(telemetry_kind or kind,
                                **{("chaos" if k == "event" else k): v for k, v in record.items() if k != "wall"})
        return record

    def notice(self, kind: str, **fields: Any) -> None:
        """A moment worth telling live watchers and the log, not an event on the run's time axes."""
        self.telemetry.event(kind, **fields)
        log.info(kind, **fields)

    def warp(self, head: Any, to: int) -> None:
        self.state.warps.append({"block": head.number, "from": head.timestamp, "to": to})
        log.info("skipping idle chain time", block=head.number, seconds=to - head.timestamp)
        self.telemetry.event("warp", block=head.number, seconds=to - head.timestamp)

    def blocks(self, records: list[Any]) -> None:
        for rec in records:
            self.telemetry.block(rec)

    def accuracy(self, rec: Any) -> None:
        self.telemetry.accuracy(rec)
        log.debug("model evaluated", block=rec.block, accuracy=rec.accuracy)

    def reports(self, reports: list[Any]) -> None:
        """A tick's reports: ledger rows (to disk first), transaction counters, per-group counts, the
        shards' errors and their policies' warnings."""
        s = self.state
        by_group: dict[str, dict[str, int]] = {}
        for r in reports:
            for w in getattr(r, "warnings", ()):
                text = logs.redact_text(w)
                if text not in s.warnings and len(s.warnings) < MAX_WARNINGS:
                    s.warnings.append(text)
                    log.warning("policy warning", block=r.block, shard=r.shard_id, warning=text)
            if self.ledger is not None:
                self.ledger.append(r.ledger)
            s.sent += r.sent
            s.included += r.included
            s.reverted += r.reverted
            s.dropped += r.dropped
            for e in r.errors:
                if len(s.tick_errors) < MAX_TICK_ERRORS:
                    s.tick_errors.append(logs.redact_text(f"block {r.block} shard {r.shard_id}: {e}"))
                log.warning("shard error", block=r.block, shard=r.shard_id, error=e)
            for group, counts in r.by_group.items():
                g = by_group.setdefault(group, {})
                for k, v in counts.items():
                    g[k] = g.get(k, 0) + v
        if reports:
            self.telemetry.counters(by_group, block=reports[0].block)

    def status(self, state: str, **fields: Any) -> None:
        self.telemetry.status({"state": state, **fields})
