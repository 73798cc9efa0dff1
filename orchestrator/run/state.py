"""What a run learns as it goes (`RunState`) and what it hands over at the end (`RunResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class RunError(RuntimeError):
    pass


@dataclass
class RunState:
    """What the loop learns as it goes; the summary is built from it (also for partial runs)."""

    status: str = "starting"
    error: str | None = None
    phase_times: dict[str, float] = field(default_factory=dict)
    start_block: int = -1
    last_block: int = -1
    sent: int = 0
    included: int = 0
    reverted: int = 0
    dropped: int = 0
    warps: list[dict[str, int]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # chaos, restarts, settlement, with their blocks
    telemetry: dict[str, Any] = field(default_factory=dict)
    paused_s: float = 0.0
    tick_errors: list[str] = field(default_factory=list)
    # What agents' policies said they cannot do (no txpool on this node, a rate above their in-flight
    # limit), once each for the run: shards send each text once, several shards may send the same.
    warnings: list[str] = field(default_factory=list)
    driver_cpu_s: float = 0.0
    shard_stats: list[dict[str, Any]] = field(default_factory=list)
    rpc: dict[str, Any] = field(default_factory=dict)  # retries, fail-overs, faults: driver and shards
    loop_wall_s: float = 0.0
    loop_driver_cpu_s: float = 0.0
    ended_because: str = ""
    checkpoints: dict[str, Any] = field(default_factory=dict)  # node state dumps: count, size, time
    restarts: list[dict[str, Any]] = field(default_factory=list)  # node crashes survived
    shard_restarts: list[dict[str, Any]] = field(default_factory=list)  # shard actors replaced
    settle_blocks: int = 0  # blocks run after the schedule for the agents' claims
    # Wei held at the last block by the contract holding deposits (trainer or market): ether left locked.
    trainer_balance_end: int | None = None


@dataclass
class RunResult:
    """Everything a run produced, as plain data: what the results writer, the bundle and the
    report read. No live objects but the node handles the bundle needs while the node is up."""

    run_id: str
    run_dir: Path
    scenario: Any  # orchestrator.scenario.Scenario
    state: RunState
    blocks: list[Any] = field(default_factory=list)  # monitor BlockRecords
    models: list[Any] = field(default_factory=list)  # evaluator ModelRecords
    ledger: dict[str, list[Any]] = field(default_factory=dict)
    accounts: list[Any] = field(default_factory=list)  # incentives.AgentAccount
    contributions: dict[str, list[Any]] = field(default_factory=dict)
    system: Any = None  # contracts.deploy.DeployedSystem
    funding: dict[str, int] = field(default_factory=dict)
    start_balances: dict[str, int] = field(default_factory=dict)
    market: dict[str, Any] = field(default_factory=dict)  # the mechanism's own record (prediction market round)
    node_url: str | None = None  # display form, credentials redacted
    managed_node: bool = False
    node_settings: Any = None  # orchestrator.nodes.NodeSettings of a managed node
    test_samples: list[Any] = field(default_factory=list)
    test_labels: list[int] = field(default_factory=list)
    baseline_dir: Path | None = None
    invariants: dict[str, Any] | None = None  # the invariant monitors' summary (orchestrator/invariants)
