"""Running a scenario: `Run` (the loop, orchestrator/run/loop.py) and its collaborators, one job
each: world.py (set-up), clock.py (how blocks come), shards.py (the agents' actors), chaos.py (the
schedule's events), recovery.py (checkpoints and restarts), recorder.py (state, telemetry and log
together), collect.py (the `RunResult` and the results folder)."""

from .loop import Run, run_scenario
from .state import RunError, RunResult, RunState
from .world import check_policies

__all__ = ["Run", "RunError", "RunResult", "RunState", "check_policies", "run_scenario"]
