"""How a run uses the monitors and the metrics: the few calls its loop makes.

For the run loop (orchestrator/run/loop.py):

* set-up, with the node fresh: `if needs_initial_state(run): await capture_initial_state(...)`
  (already done when `outputs.bundle` is on), then after deployment `run.invariants = make_monitor(run)`;
* after every block read: `await run.invariants.check(block)` (returns the violations);
* before the node stops: `await run.invariants.finish()` (violation bundles still being written),
  and `summary["invariants"] = run.invariants.summary()`.
* Prometheus: `metrics = make_metrics(run)` once (it adds itself to `run.telemetry` as a sink),
  `metrics.start()` before the loop, `await metrics.stop()` at the end.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ..bundle import BUNDLE_DIR, INITIAL_STATE, _save
from ..prometheus import RunMetrics
from .base import InvariantError, Violation, resolve
from .monitor import InvariantMonitor

if TYPE_CHECKING:
    from ..run import Run

log = structlog.get_logger("dcai.invariants")

VIOLATIONS_DIR = "violations"


def needs_initial_state(run: Run) -> bool:
    """Whether set-up must dump the node's initial state (the start of any bundle)."""
    cfg = run.scenario.telemetry.invariants
    node = run.world.node
    return node is not None and node.has("state_dump") and (
        run.scenario.outputs.bundle or (cfg.enabled and cfg.bundle_on_violation))


def make_monitor(run: Run) -> InvariantMonitor | None:
    """The run's invariant monitor (None when disabled). A name that does not resolve fails here,
    before the loop starts, with the invariant named."""
    cfg = run.scenario.telemetry.invariants
    client, system = run.world.client, run.world.system
    if not cfg.enabled or client is None or system is None:
        return None
    try:
        invariants = resolve(cfg.only, cfg.skip, cfg.extra)
    except InvariantError as e:
        raise InvariantError(f"telemetry.invariants: {e}") from None
    hook = None
    if cfg.bundle_on_violation and needs_initial_state(run) and cfg.max_bundles > 0:
        async def hook(block: int, violations: list[Violation]) -> Path | None:
            return await save_violation_bundle(run, block, violations, monitor)
    monitor = InvariantMonitor(client, system, run.scenario.incentive.type, invariants,
                               window=cfg.window, telemetry=run.telemetry, on_violation=hook)
    log.info("invariant monitors", checked=monitor.names, not_applicable=monitor.skipped)
    return monitor


async def save_violation_bundle(run: Run, block: int, violations: list[Violation],
                                monitor: InvariantMonitor | None = None) -> Path | None:
    """A replay bundle of the run up to `block` in `violations/block-<N>/` (the format of
    `bundle/`, so `dcai replay` takes it), with `violation.json`. At most `max_bundles` per run;
    never raises."""
    cfg = run.scenario.telemetry.invariants
    if monitor is not None and len(monitor.bundles) >= cfg.max_bundles:
        return None
    target = run.run_dir / VIOLATIONS_DIR / f"block-{block}"
    entry: dict[str, Any] = {"block": block, "path": str(target.relative_to(run.run_dir)),
                             "invariants": sorted({v.invariant for v in violations})}
    if monitor is not None:
        monitor.bundles.append(entry)
    try:
        target.mkdir(parents=True, exist_ok=True)
        source = run.run_dir / BUNDLE_DIR / INITIAL_STATE
        if not source.exists():
            raise RuntimeError("the node's initial state was not captured at set-up")
        try:
            os.link(source, target / INITIAL_STATE)
        except OSError:
            shutil.copyfile(source, target / INITIAL_STATE)
        from ..results import write_json

        write_json(target / "violation.json", {"block": block, "violations": [v.as_dict() for v in violations]})
        import dataclasses

        from ..run.collect import fill_static

        snapshot = dataclasses.replace(run.result)  # the run as it stands at `block`
        fill_static(run.world, snapshot)
        await _save(snapshot, run.world.client, target, last=block)
        entry["complete"] = True
        log.info("violation bundle written", block=block, folder=str(target))
        return target
    except Exception as e:  # noqa: BLE001 - a bundle must never cost the run anything
        entry["complete"] = False
        entry["error"] = f"{type(e).__name__}: {e}"
        log.exception("could not write the violation bundle", block=block)
        return None


def make_metrics(run: Run) -> RunMetrics | None:
    """The run's Prometheus series (None without `telemetry.metrics_port`), fed by its telemetry."""
    tc = run.scenario.telemetry
    if tc.metrics_port is None:
        return None
    roles = {(g.name or g.policy): g.resolved_role() for g in run.scenario.agents}
    metrics = RunMetrics(run.run_id, tc.metrics_port, host=tc.metrics_host, roles=roles,
                         linger_s=tc.metrics_linger_s)
    run.telemetry.add_sink(metrics)
    return metrics
