"""The run: one scenario in, one results folder out.

The world is set up (node, contracts, dataset, model, shards, funded wallets), then the loop runs
block by block: tick every shard (agents observe, decide, sign and send), apply the chaos due,
evaluate and checkpoint, check for the end, and move to the next block (skipping idle chain time
when every agent waits). After the schedule, agents settle their claims (unless `schedule.settle`
is false) and the mechanism settles its own. Whatever happens, the results folder is written from
a `RunResult` and the node is stopped. Collaborators: world.py, clock.py, shards.py, recovery.py,
chaos.py, recorder.py, collect.py, and the mechanism (orchestrator/mechanisms/).
"""

from __future__ import annotations

import asyncio
import math
import signal
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from agents.policies.base import HONEST
from agents.shard import BlockInfo, TickReport

from .. import logs
from ..chaos import ChaosContext
from ..mechanisms import SettleContext
from ..scenario import Scenario
from ..telemetry import Telemetry
from .chaos import ChaosSchedule
from .collect import collect, write_results
from .ledger_stream import LEDGER_LOG, LedgerStream
from .progress import Progress
from .recorder import Recorder
from .recovery import Recovery
from .shards import ShardPool
from .state import RunResult, RunState
from .world import World

log = structlog.get_logger("dcai.run")

DRAIN_BLOCKS = 60  # without settlement: blocks allowed for in-flight transactions to settle
# Settlement ends early when this many blocks pass with no transaction moving and no idle time to
# skip: agents that keep waking with nothing to send would otherwise hold the run to its cap.
SETTLE_STALL_BLOCKS = 100


class Run:
    def __init__(self, scenario: Scenario, *, results_root: Path | None = None, run_id: str | None = None,
                 progress: bool | None = None, source: str | None = None, honest_only: bool = False,
                 ray_address: str | None = None, shards: int | None = None, shard_cpus: float = 1.0,
                 report: bool = True):
        self.scenario = scenario
        self.write_report = report  # report.html at the end (sweeps may skip it: seconds per run)
        self.honest_only = honest_only  # the counterfactual: same seed, same honest agents, nobody else
        self.source = source
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.run_id = run_id or f"{scenario.name}-{stamp}-s{scenario.seed}"
        root = results_root if results_root is not None else Path(scenario.outputs.dir)
        self.run_dir = (root / self.run_id).resolve()
        self.show_progress = scenario.outputs.progress if progress is None else progress
        self.state = RunState()
        self.telemetry = Telemetry(self.run_id, scenario.telemetry, endpoint_file=self.run_dir / "telemetry.json")
        self.recorder = Recorder(self.state, self.telemetry, LedgerStream(self.run_dir / LEDGER_LOG))
        from ..invariants.wiring import make_metrics  # Prometheus /metrics, fed by the telemetry calls

        self.metrics = make_metrics(self)
        self.invariants: Any = None  # the InvariantMonitor, once the system is deployed
        # Shards and Ray CPUs per shard (None: one shard per cluster CPU). Runs sharing one cluster
        # (sweeps) pass their share, or their shards could wait on each other's CPUs for ever.
        self.pool = ShardPool(shards, shard_cpus, ray_address)
        self.world = World(scenario, self.run_dir, self.state, self.pool, honest_only, source or "<scenario>")
        self.result = RunResult(self.run_id, self.run_dir, scenario, self.state)
        self.recovery: Recovery | None = None
        self._chaos_rng = np.random.default_rng([scenario.seed, 0xC4A05])
        self._stop_requested = False
        self._in_setup = True
        self._resume: asyncio.Event | None = None
        self.acting = True
        self.settling = False
        self._warped = False  # the last move to a new block skipped idle time
        self._settle_idle = 0  # blocks of settlement in a row with nothing moving

    # What tests and tools look at while a run goes.
    node = property(lambda self: self.world.node)
    client = property(lambda self: self.world.client)
    monitor = property(lambda self: self.world.monitor)
    funding = property(lambda self: self.world.funding)
    system = property(lambda self: self.world.system)

    # ---- entry point ------------------------------------------------------------------------

    def execute(self) -> Path:
        """Run to completion (or interruption) and write the results folder. Returns its path."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        sc = self.scenario
        logs.register_scenario_secrets(sc)  # error texts from shards and nodes are redacted against these
        if (sc.evaluation.baseline == "counterfactual" and not self.honest_only
                and any(g.resolved_role() != HONEST for g in sc.agents)):
            self.pool.ensure_ray()  # one Ray for both runs
            self.result.baseline_dir = Run(
                sc, results_root=self.run_dir, run_id="baseline", progress=self.show_progress, source=self.source,
                honest_only=True, ray_address=self.pool.ray_address, shards=self.pool.count,
                shard_cpus=self.pool.cpus, report=self.write_report).execute()
        logs.configure(self.run_dir / "run.log.jsonl", console=True)
        previous = signal.getsignal(signal.SIGINT)
        try:
            asyncio.run(self._main())
            # Interrupted during set-up: there is nothing to plot, and the user asked to stop now.
            if self.write_report and not (self._in_setup and self.state.status == "interrupted"):
                try:
                    from ..report import write_report

                    log.info("report written", path=str(write_report(self.run_dir)))
                except Exception:  # noqa: BLE001 - the report must never cost a run its results
                    log.exception("could not write the report")
        finally:
            if threading.current_thread() is threading.main_thread():  # signal.signal fails elsewhere
                signal.signal(signal.SIGINT, previous)
            logs.close()
        return self.run_dir

    def _on_sigint(self, main_task: asyncio.Task[Any] | None) -> None:
        # During set-up (compile, deploy, funding) stop at once; in the loop, the first Ctrl-C stops
        # at the next block and writes what we have, a second one cancels now.
        if (self._in_setup or self._stop_requested) and main_task is not None:
            main_task.cancel()
        self._stop_requested = True
        log.warning("interrupt received: " + ("stopping set-up" if self._in_setup else "stopping after this block"))
        if self._resume is not None:
            self._resume.set()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self._on_sigint, asyncio.current_task())
        except (NotImplementedError, RuntimeError):
            pass
        t0, cpu0 = time.time(), time.process_time()
        try:
            self._resume = asyncio.Event()
            self._resume.set()
            self.telemetry.on_control(self._on_control)
            if self.metrics is not None:
                self.metrics.start()
            await self.telemetry.start()
            self.recorder.status("starting", scenario=self.scenario.name, seed=self.scenario.seed,
                                 started_at=time.time(), duration_blocks=self.scenario.schedule.duration,
                                 baseline=self.honest_only)
            await self.world.build(self._chaos_rng)
            from ..invariants.wiring import make_monitor

            self.invariants = make_monitor(self)
            self._in_setup = False
            self.state.status = "running"
            self.recorder.status("running")
            await self._loop()
            assert self.world.mechanism is not None
            if not self._stop_requested:
                await self.world.mechanism.settle(self._settle_context())
            self.state.status = "interrupted" if self._stop_requested else "completed"
        except asyncio.CancelledError:
            self.state.status = "interrupted"
            self.state.error = "cancelled"
            if self._in_setup:
                self.state.error, self.state.ended_because = None, "interrupted during set-up"
        except Exception as e:
            self.state.status = "failed"
            self.state.error = logs.redact_text(f"{type(e).__name__}: {e}")
            log.exception("run failed")
        finally:
            self.state.driver_cpu_s = time.process_time() - cpu0
            self.state.phase_times["total_s"] = time.time() - t0
            await self._finish()
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError):
                pass
        log.info("run finished", status=self.state.status, results=str(self.run_dir))

    # ---- the loop -----------------------------------------------------------------------------

    async def _loop(self) -> BlockInfo:
        head = await self._begin()
        with Progress(self.show_progress, self.scenario.schedule.duration) as bar:
            while True:
                try:
                    head = await self._before_tick(head)
                    reports = await self.pool.tick(head, self.recovery.replace_shard)  # type: ignore[union-attr]
                    self.recorder.reports(reports)
                    if self.acting:
                        await self.chaos.apply_due(head, head.number - self.state.start_block)
                    await self._evaluate_and_checkpoint(head)
                    in_flight = sum(r.in_flight for r in reports)
                    bar.update(head.number - self.state.start_block, self.state, self._accuracy(), in_flight)
                    if await self._end_check(head, reports, in_flight):
                        break
                    head = await self._next_block(head, reports)
                except Exception:
                    # A dead managed node comes back from its last state dump; anything else is fatal.
                    if not await self.recovery.node_lost():  # type: ignore[union-attr]
                        raise
                    head = await self.recovery.recover_node(self.monitor, self.world.evaluator)  # type: ignore[union-attr]
                    self._last_eval = min(self._last_eval, head.number)
        await self._after_loop(head)
        return head

    # ---- hooks of the loop ----------------------------------------------------------------------

    async def _read_blocks(self, number: int) -> None:
        """The monitor's records of the blocks up to `number`, then the live invariant checks."""
        assert self.world.monitor is not None
        self.recorder.blocks(await self.world.monitor.read(number))
        if self.invariants is not None:
            await self.invariants.check(number)

    async def _begin(self) -> BlockInfo:
        w, sc = self.world, self.scenario
        assert w.clock is not None and w.monitor is not None and w.evaluator is not None
        self.clock = w.clock
        self.recovery = Recovery(every=sc.chain.checkpoint_every, node=w.node, client=w.client, pool=self.pool,
                                 clock=w.clock, recorder=self.recorder, run_dir=self.run_dir)
        self.chaos = ChaosSchedule(list(sc.schedule.chaos), self.recorder, self._chaos_context)
        self.phases = sorted(sc.schedule.phases, key=lambda p: p.at)
        head = await self.clock.latest()
        self.state.start_block = head.number
        await self.recovery.checkpoint(head)  # after set-up and funding: a restart never undoes them
        await self._read_blocks(head.number)
        self.recorder.accuracy(await w.evaluator.evaluate(head.number, head.timestamp))
        self._last_eval = head.number
        self.end_block = head.number + sc.schedule.duration
        self.deadline = time.monotonic() + sc.schedule.max_wall_time if sc.schedule.max_wall_time else math.inf
        self.drain_left = DRAIN_BLOCKS
        self._loop_t0, self._loop_cpu0 = time.time(), time.process_time()
        return head

    async def _before_tick(self, head: BlockInfo) -> BlockInfo:
        """The schedule's load and the clock's block time travel with the block; a pause over MQTT
        holds here (nothing happens, the wall-time deadline moves)."""
        offset = head.number - self.state.start_block
        load = next((p.load for p in reversed(self.phases) if p.at <= offset), 1.0)
        if self._resume is not None and not self._resume.is_set():
            paused_at = time.monotonic()
            await self._resume.wait()
            self.state.paused_s += time.monotonic() - paused_at
            self.deadline += time.monotonic() - paused_at
        return replace(head, load=load, block_time=self.clock.block_time)

    async def _evaluate_and_checkpoint(self, head: BlockInfo) -> None:
        assert self.world.evaluator is not None and self.recovery is not None
        if head.number - self._last_eval >= self.scenario.evaluation.every:
            self.recorder.accuracy(await self.world.evaluator.evaluate(head.number, head.timestamp))
            self._last_eval = head.number
        if self.recovery.due(head):
            await self.recovery.checkpoint(head)

    async def _end_check(self, head: BlockInfo, reports: list[TickReport], in_flight: int) -> bool:
        """True when the run is over: all agents finished, or after the schedule once settlement (or,
        without it, the drain of what is in flight) is done."""
        sched = self.scenario.schedule
        if self.acting and (head.number >= self.end_block or self._stop_requested or time.monotonic() > self.deadline):
            self.acting = False
            self.state.ended_because = ("interrupted" if self._stop_requested else
                                        "wall-time limit" if time.monotonic() > self.deadline else "duration")
            assert self.world.mechanism is not None
            settle = sched.settle and not self._stop_requested and self.world.mechanism.agents_claim
            self.settling = await self.pool.stop_acting(settle)
            self.settle_end = head.number + sched.settle_max_blocks
            self.recorder.notice("acting_stopped", block=head.number, reason=self.state.ended_because,
                                 settling=self.settling)
            self.recorder.status("settling" if self.settling else "stopping")
        finished = all(r.finished for r in reports)
        if self.acting:
            if finished and not self.chaos.pending and self.clock.pause_left == 0:
                self.state.ended_because = "all agents finished"
                return True
            return False
        if self.settling and not self._stop_requested:
            self.state.settle_blocks += 1
            if finished and in_flight == 0:
                return True
            moved = self._warped or any(r.sent or r.included or r.reverted or r.dropped for r in reports)
            self._settle_idle = 0 if moved else self._settle_idle + 1
            if self._settle_idle >= SETTLE_STALL_BLOCKS:
                self.state.ended_because += (f"; settlement stalled ({SETTLE_STALL_BLOCKS} blocks with no claim moving "
                                             "and no idle time to skip)")
                return True
            if head.number >= self.settle_end:
                self.state.ended_because += f"; settlement cap hit (schedule.settle_max_blocks: {sched.settle_max_blocks})"
                return True
            return False
        self.drain_left -= 1
        return in_flight == 0 or self.drain_left <= 0 or (self._stop_requested and self.drain_left < DRAIN_BLOCKS - 5)

    async def _next_block(self, head: BlockInfo, reports: list[TickReport]) -> BlockInfo:
        """Mining paused: the same head again (time passes on the wall only). Else the next block,
        at the agents' next wake when every one waits (idle time skipped; settlement too)."""
        if self.clock.pause_left > 0:
            if await self.clock.paused_block():
                self.recorder.event("resume_mining", head.number)
            return head
        assert self.world.mechanism is not None and self.monitor is not None
        warps = (self.acting or self.settling) and self.world.mechanism.allows_warps
        warp_to = self.clock.warp_target(reports, head) if warps else None
        self._warped = await self.clock.advance(head, warp_to) is not None and warp_to is not None
        if self._warped and warp_to is not None:
            self.recorder.warp(head, warp_to)
        head = await self.clock.next_block(head, self.deadline if self.acting else math.inf,
                                           lambda: self._stop_requested)
        await self._read_blocks(head.number)
        return head

    async def _after_loop(self, head: BlockInfo) -> None:
        assert self.world.evaluator is not None
        self.state.loop_wall_s = time.time() - self._loop_t0
        self.state.loop_driver_cpu_s = time.process_time() - self._loop_cpu0
        self.state.last_block = head.number
        if head.number != self._last_eval:
            self.recorder.accuracy(await self.world.evaluator.evaluate(head.number, head.timestamp))

    def _chaos_context(self, head: BlockInfo) -> ChaosContext:
        assert self.recovery is not None
        return ChaosContext(client=self.world.client, head=head, start_block=self.state.start_block,
                            clock=self.clock, pool=self.pool, node=self.world.node, monitor=self.monitor,
                            recovery=self.recovery, rng=self._chaos_rng)

    def _settle_context(self) -> SettleContext:
        async def step(head: BlockInfo) -> tuple[BlockInfo, list[TickReport]]:
            assert self.monitor is not None
            await self.clock.advance(head, None)
            head = await self.clock.next_block(head, math.inf, lambda: self._stop_requested)
            await self._read_blocks(head.number)
            reports = await self.pool.tick(head)
            self.recorder.reports(reports)
            self.state.last_block = head.number
            return head, reports

        return SettleContext(client=self.world.client, tx=self.world.tx, pool=self.pool, latest=self.clock.latest,
                             step=step)

    def _on_control(self, command: str) -> None:
        """pause / resume / stop, from the MQTT control topic."""
        assert self._resume is not None
        if command == "pause":
            self._resume.clear()
            self.recorder.status("paused")
        elif command == "resume":
            self._resume.set()
            self.recorder.status("running")
        elif command == "stop":
            self._stop_requested = True
            self._resume.set()
            self.recorder.status("stopping")
        log.info("control command", command=command)

    def _accuracy(self) -> float | None:
        ev = self.world.evaluator
        return ev.records[-1].accuracy if ev is not None and ev.records else None

    # ---- the end ----------------------------------------------------------------------------

    async def _finish(self) -> None:
        """Collect, write the results (and the bundle while the node is up), then tear down."""
        await collect(self.world, self.result, self.recorder.ledger)
        if self.invariants is not None:
            await self.invariants.finish()  # violation bundles still being written need the node
            self.result.invariants = self.invariants.summary()
        self.recorder.status(self.state.status, error=self.state.error, last_block=self.state.last_block)
        self.state.telemetry = await self.telemetry.stop()
        if self.metrics is not None:
            await self.metrics.stop()  # after one last scrape of the final figures (bounded)
        if self.world.client is not None:
            self.state.rpc["driver"] = self.world.client.stats()
        write_results(self.result)
        if self.recorder.ledger is not None:
            self.recorder.ledger.discard()  # ledger.parquet now holds it (the log stays if writing failed)
        if self.scenario.outputs.bundle and self.world.client is not None:  # save_bundle never raises
            from ..bundle import save_bundle

            await save_bundle(self.result, self.world.client)
        await self.pool.close()
        if self.world.client is not None:
            await self.world.client.close()
        if self.world.node is not None:
            await asyncio.to_thread(self.world.node.stop)
        if self.recovery is not None:
            self.recovery.remove_dump()
        else:
            from .recovery import NODE_CHECKPOINT

            (self.run_dir / NODE_CHECKPOINT).unlink(missing_ok=True)


def run_scenario(scenario: Scenario, **kwargs: Any) -> Path:
    return Run(scenario, **kwargs).execute()
