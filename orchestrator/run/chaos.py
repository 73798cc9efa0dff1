"""The scenario's chaos schedule during a run: which events are due, applied through the registry's
classes with the run's collaborators, each recorded with its block."""

from __future__ import annotations

from typing import Any

from agents.shard import BlockInfo

from ..chaos import ChaosContext, ChaosEvent
from .recorder import Recorder


class ChaosSchedule:
    def __init__(self, events: list[ChaosEvent], recorder: Recorder, make_context: Any):
        self.left = sorted(events, key=lambda e: e.at)
        self.recorder = recorder
        self.make_context = make_context  # head -> ChaosContext

    @property
    def pending(self) -> bool:
        return bool(self.left)

    async def apply_due(self, head: BlockInfo, offset: int) -> None:
        """After the agents sent this block's transactions, before the next block: a dropped
        transaction is one that was really pending, a fee shock hits the next block."""
        while self.left and self.left[0].at <= offset:
            ev = self.left.pop(0)
            ctx: ChaosContext = self.make_context(head)
            fields = await ev.apply(ctx)
            self.recorder.event(ev.event, head.number, telemetry_kind="chaos", **fields)
