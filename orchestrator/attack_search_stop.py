"""Early stopping of hopeless attack-search trials.

A trial's run is watched while it runs: every `every_blocks` blocks it reports a checkpoint to Tune
(the attacker's spending so far and the damage so far against the baseline), and it is stopped
when its spending so far already exceeds the cheapest attack that reached the target in this cell
(plus `margin_ether`). Spending so far is the attacker groups' net ether flow at that block
(deposits sent, fees, less refunds and takes received): deposits may still come back, so a trial is
stopped only past `max(best, 0) + margin_ether`, and the margin is the user's allowance for what
could still return. A stopped trial ends at once (the run's own stop: results written, the node
shut down), scores between the misses and the failures, and never enters the frontier.

The best cost is shared between the trials of a cell, which run in different processes, through a
small JSON file under the search folder, updated under a file lock.
"""

from __future__ import annotations

import fcntl
import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.policies.base import ATTACKER

from .scenario import Scenario

STOPPED = "stopped"


class EarlyStop(BaseModel):
    model_config = ConfigDict(extra="forbid")

    every_blocks: int = Field(25, ge=1, description="blocks between checkpoints")
    margin_ether: float = Field(0.0, ge=0, description="allowance for deposits that may still come back")


def hopeless(cost_so_far: float | None, best: float | None, margin: float) -> bool:
    """Whether a trial that has spent `cost_so_far` can no longer beat the best successful attack."""
    if cost_so_far is None or best is None:
        return False
    return cost_so_far > max(best, 0.0) + margin


class BestCost:
    """The cheapest cost that reached the target in one cell, shared by file between trial processes."""

    def __init__(self, path: Path):
        self.path = path

    def _locked(self, update: Callable[[float | None], float | None]) -> float | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    current = json.loads(self.path.read_text()).get("best_cost_ether")
                except (OSError, ValueError):
                    current = None
                new = update(current)
                if new != current:
                    tmp = self.path.with_suffix(".tmp")
                    tmp.write_text(json.dumps({"best_cost_ether": new}))
                    tmp.replace(self.path)
                return new
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def get(self) -> float | None:
        return self._locked(lambda c: c)

    def offer(self, cost: float) -> float | None:
        """Record a successful attack's cost; returns the best after it."""
        return self._locked(lambda c: cost if c is None or cost < c else c)


@dataclass
class Checkpoint:
    block: int
    cost_so_far_ether: float | None
    accuracy: float | None


def attacker_groups(scenario: Scenario) -> set[str]:
    return {g.name for g in scenario.agents if g.resolved_role() == ATTACKER}


def run_watched(scenario: Scenario, runs_root: str, run_id: str, shard_cpus: float, every_blocks: int,
                on_checkpoint: Callable[[Checkpoint], bool]) -> tuple[str, Checkpoint | None]:
    """One run in a thread, with a checkpoint every `every_blocks` blocks; `on_checkpoint` returns True to
    stop the run there. Returns (status from its summary or "stopped", the checkpoint it stopped at)."""
    from .attack_search import read_summary
    from .run import Run

    run = Run(scenario, results_root=Path(runs_root), run_id=run_id, progress=False, honest_only=False,
              shards=1, shard_cpus=shard_cpus, report=True)
    attackers = attacker_groups(scenario)
    points: queue.Queue[Checkpoint] = queue.Queue()
    last = [-1]
    recorded = run.recorder.reports

    def hook(reports: list[Any]) -> None:
        recorded(reports)
        if not reports:
            return
        block = reports[0].block
        if last[0] >= 0 and block - last[0] < every_blocks:
            return
        last[0] = block
        pnl = [counts.get("pnl_wei", 0) for r in reports for g, counts in r.by_group.items() if g in attackers]
        points.put(Checkpoint(block, -sum(pnl) / 1e18 if pnl else None, run._accuracy()))

    run.recorder.reports = hook  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run.execute()
        except BaseException as e:  # noqa: BLE001 - the run's summary says what happened
            errors.append(e)

    thread = threading.Thread(target=target, name=f"run-{run_id}", daemon=True)
    thread.start()
    stopped_at: Checkpoint | None = None
    while thread.is_alive() or not points.empty():
        try:
            point = points.get(timeout=0.5)
        except queue.Empty:
            continue
        if stopped_at is None and on_checkpoint(point):
            stopped_at = point
            run._stop_requested = True  # the run's own stop: it ends after this block and writes its results
    thread.join()
    status = read_summary(Path(runs_root) / run_id)[0]
    return (STOPPED if stopped_at is not None else status), stopped_at
