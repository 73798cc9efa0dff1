"""`InvariantMonitor`: run the invariants that apply to a run after every block, record violations.

The run loop makes one call per block it reads: `violations = await monitor.check(block)`. The
first call covers everything since the system was deployed (a catch-up in chunked log reads), the
next ones only the blocks since the previous call. When the chain under the monitor changed (a
reorg, a node restored from a checkpoint: the last checked block's hash differs, or the head went
back) the monitor starts over from deployment at the next call, so no invariant compares against
blocks that no longer exist.

A violation is logged, published as a telemetry event (`invariant_violation`, also counted in the
Prometheus metrics) and kept for the summary; `on_violation(block, violations)` (e.g. save a replay
bundle up to that block) runs as a background task the run does not wait for until `finish()`.
An invariant that raises is reported as a monitor error and, after three in a row, switched off:
a monitor never costs the run anything but its reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from contracts.deploy import DeployedSystem
from contracts.rpc import RpcClient

from .base import Invariant, InvariantContext, Violation
from .chainview import read_changes

log = structlog.get_logger("dcai.invariants")

MAX_RECORDED = 1_000  # violations kept in full; beyond, only counted
MAX_FAILURES = 3  # consecutive errors before an invariant is switched off

OnViolation = Callable[[int, list[Violation]], Awaitable[Any]]


class InvariantMonitor:
    def __init__(self, client: RpcClient, system: DeployedSystem, mechanism: str, invariants: Sequence[Invariant],
                 *, window: int = 512, telemetry: Any = None, on_violation: OnViolation | None = None):
        self.client = client
        self.system = system
        self.mechanism = mechanism
        self.window = window
        self.telemetry = telemetry
        self.on_violation = on_violation
        self.invariants = [inv for inv in invariants if inv.applies(self._new_context())]
        self.skipped = [inv.name for inv in invariants if inv not in self.invariants]
        self.ctx = self._new_context()
        self.last = -1
        self._last_hash: str | None = None
        self._started = False
        self.violations: list[Violation] = []
        self.counts: dict[str, int] = {inv.name: 0 for inv in self.invariants}
        self.checks = 0
        self.restarts = 0
        self.errors: list[str] = []
        self.disabled: list[str] = []
        self._failures: dict[str, int] = {}
        self.first_violation_block: int | None = None
        self.bundles: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.check_s = 0.0

    def _new_context(self) -> InvariantContext:
        return InvariantContext(self.client, self.system, self.mechanism, window=self.window)

    @property
    def names(self) -> list[str]:
        return [inv.name for inv in self.invariants]

    async def check(self, block: int) -> list[Violation]:
        """Check every applicable invariant at `block` (covering the blocks since the last call)."""
        t0 = time.perf_counter()
        try:
            return await self._check(block)
        except Exception as e:  # noqa: BLE001 - a monitor failure must not fail the run
            self._error(f"block {block}: {type(e).__name__}: {e}")
            return []
        finally:
            self.check_s += time.perf_counter() - t0

    async def _check(self, block: int) -> list[Violation]:
        if not self.invariants:
            return []
        if self._started and (block < self.last or not await self._same_chain()):
            self._restart()
        if self._started and block <= self.last:
            return []
        first = self.last if self._started else self.system.block
        view = await read_changes(self.client, self.system, self.mechanism, first, block)
        self.ctx.new_check(view)
        if not self._started:
            for inv in self.invariants:
                await self._run(inv, inv.start(self.ctx, block), block)
            self._started = True
        found: list[Violation] = []
        for inv in list(self.invariants):
            result = await self._run(inv, inv.check(self.ctx, block), block)
            if result:
                found.extend(result)
        head = await self.client.get_block(block)
        self._last_hash = head["hash"] if head else None
        self.last = block
        self.checks += 1
        if found:
            self._record(block, found)
        return found

    async def _run(self, inv: Invariant, coro: Awaitable[Any], block: int) -> Any:
        try:
            result = await coro
        except Exception as e:  # noqa: BLE001 - see _check
            n = self._failures[inv.name] = self._failures.get(inv.name, 0) + 1
            self._error(f"{inv.name} at block {block}: {type(e).__name__}: {e}")
            if n >= MAX_FAILURES:
                self.invariants.remove(inv)
                self.disabled.append(inv.name)
                log.error("invariant switched off after repeated errors", invariant=inv.name)
            return None
        self._failures[inv.name] = 0
        return result

    async def _same_chain(self) -> bool:
        if self._last_hash is None:
            return True
        b = await self.client.get_block(self.last)
        return b is not None and b["hash"] == self._last_hash

    def _restart(self) -> None:
        """The chain changed under us: start over from deployment with fresh invariants."""
        log.info("chain changed under the invariant monitor: starting over", last_checked=self.last)
        self.restarts += 1
        self.invariants = [type(inv)() for inv in self.invariants]
        self.ctx = self._new_context()
        self._started = False
        self.last = -1
        self._last_hash = None

    def _record(self, block: int, found: list[Violation]) -> None:
        if self.first_violation_block is None:
            self.first_violation_block = block
        for v in found:
            self.counts[v.invariant] = self.counts.get(v.invariant, 0) + 1
            if len(self.violations) < MAX_RECORDED:
                self.violations.append(v)
            log.error("invariant violated", invariant=v.invariant, block=v.block, message=v.message)
            if self.telemetry is not None:
                self.telemetry.event("invariant_violation", invariant=v.invariant, block=v.block, message=v.message)
        if self.on_violation is not None:
            task = asyncio.ensure_future(self.on_violation(block, found))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _error(self, message: str) -> None:
        if len(self.errors) < 100:
            self.errors.append(message)
        log.warning("invariant monitor error", error=message)

    async def finish(self) -> None:
        """Wait for the violation hooks still running (bundles need the node: call before teardown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def summary(self) -> dict[str, Any]:
        """The `invariants` section of summary.json."""
        return {
            "checked": self.names,
            "not_applicable": self.skipped,
            "disabled_after_errors": self.disabled,
            "checks": self.checks,
            "last_block_checked": self.last,
            "restarts": self.restarts,
            "check_s": round(self.check_s, 3),
            "violations_total": sum(self.counts.values()),
            "violations_by_invariant": dict(self.counts),
            "first_violation_block": self.first_violation_block,
            "violations": [v.as_dict() for v in self.violations],
            "bundles": list(self.bundles),
            "errors": list(self.errors),
        }
