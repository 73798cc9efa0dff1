"""The run loop: one scenario in, one results folder out.

Set-up (node, contracts, dataset, initial model, funded wallets, shards) happens with the node in
automine, then the node switches to the scenario's mining mode and the loop runs block by block:
read the new block(s), tick every shard (agents observe, decide, sign and send), evaluate the model
every N blocks, and skip idle chain time when every agent is waiting (a refund wait of a day passes
in one jump). Whatever happens, the node is stopped and the results folder is written.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import yaml

from agents.ledger import LEDGER_COLUMNS
from agents.policies.base import FINISHED, HONEST, PolicyError, resolve_policy
from agents.shard import AgentSpec, BlockInfo, ShardConfig, TickReport, make_actor_class
from agents.wallet import FeeStance
from contracts.compiler import compile_contracts
from contracts.deploy import DeployedSystem, StakeableSpec, deploy_system
from contracts.mechanisms import MarketDriver, MarketParams, PointsSpec, deploy_market, split_test_set
from contracts.mechanisms import Phase as MarketPhase
from contracts.transact import TransactionFailed
from contracts.rpc import RpcClient, RpcTransportError, merge_stats, redact_urls, rotate_endpoints
from contracts.signing import LocalAccount, dev_accounts
from contracts.transact import Transactor

from . import logs
from .datasets import for_model, load_dataset, split
from .evaluator import MODEL_COLUMNS, Evaluator
from .incentives import ACCOUNT_COLUMNS, AgentAccount, accounts
from .incentives import to_columns as account_columns
from .monitor import BLOCK_COLUMNS, ChainMonitor, next_base_fee
from .node import AnvilNode, NodeSettings, mine, set_mining
from .recovery import NODE_CHECKPOINT, RecoveryMixin
from .results import merge_columns, rows_to_columns, write_json, write_table
from .scenario import Scenario, ScenarioError, ScenarioIssue
from .summary import build_summary
from .telemetry import Telemetry
from .versions import save_initial_model
from .training import train_initial

log = structlog.get_logger("dcai.run")

CONTRIBUTION_COLUMNS = ["block", "tx_index", "log_index", "tx_hash", "author", "label", "added_time", "deposit",
                        "data"]

DRAIN_BLOCKS = 60  # after the schedule ends, blocks allowed for in-flight transactions to settle
MIN_WARP_BLOCKS = 10  # skip idle chain time only when the gap is worth this many blocks
DRIVEN_GENESIS = 1_700_000_000  # chain time of block 0 in driven runs: the same every run
FUNDING_BATCH = 500


class RunError(RuntimeError):
    pass


def check_policies(scenario: Scenario, source: str = "<scenario>") -> None:
    """Resolve every group's policy now, so a bad name fails validation, not the run."""
    issues = []
    for i, g in enumerate(scenario.agents):
        try:
            resolve_policy(g.policy)
        except PolicyError as e:
            issues.append(ScenarioIssue(f"agents[{i}].policy", None, None, str(e)))
    if issues:
        raise ScenarioError(source, issues)


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
    events: list[dict[str, Any]] = field(default_factory=list)  # chaos, with their blocks
    telemetry: dict[str, Any] = field(default_factory=dict)
    paused_s: float = 0.0
    tick_errors: list[str] = field(default_factory=list)
    driver_cpu_s: float = 0.0
    shard_stats: list[dict[str, Any]] = field(default_factory=list)
    rpc: dict[str, Any] = field(default_factory=dict)  # retries, fail-overs, faults: driver and shards
    loop_wall_s: float = 0.0
    loop_driver_cpu_s: float = 0.0
    ended_because: str = ""
    checkpoints: dict[str, Any] = field(default_factory=dict)  # node state dumps: count, size, time
    restarts: list[dict[str, Any]] = field(default_factory=list)  # node crashes survived
    shard_restarts: list[dict[str, Any]] = field(default_factory=list)  # shard actors replaced


class Run(RecoveryMixin):
    n_classes: int = 2  # of the run's dataset; set in _setup

    def __init__(self, scenario: Scenario, *, results_root: Path | None = None, run_id: str | None = None,
                 progress: bool | None = None, source: str | None = None, honest_only: bool = False,
                 ray_address: str | None = None, shards: int | None = None, shard_cpus: float = 1.0,
                 report: bool = True):
        self.scenario = scenario
        self.write_report = report  # report.html at the end (sweeps may skip it: seconds per run)
        # Shards and Ray CPUs per shard (None: one shard per cluster CPU). Runs sharing one cluster
        # (sweeps) pass their share, or their shards could wait on each other's CPUs for ever.
        self.shard_count = shards
        self.shard_cpus = shard_cpus
        self.ray_address = ray_address  # an existing cluster to join; shards spread over its nodes
        self.honest_only = honest_only  # the counterfactual: same seed, same honest agents, nobody else
        self.baseline_dir: Path | None = None
        self.source = source
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.run_id = run_id or f"{scenario.name}-{stamp}-s{scenario.seed}"
        root = results_root if results_root is not None else Path(scenario.outputs.dir)
        self.run_dir = (root / self.run_id).resolve()
        self.show_progress = scenario.outputs.progress if progress is None else progress
        self.state = RunState()
        self.node: AnvilNode | None = None
        self.client: RpcClient | None = None
        self.system: DeployedSystem | None = None
        self.monitor: ChainMonitor | None = None
        self.evaluator: Evaluator | None = None
        self.shards: list[Any] = []
        self.ledger: dict[str, list[Any]] = {name: [] for name in LEDGER_COLUMNS}
        self.agent_groups: dict[int, str] = {}
        self.funding: dict[str, int] = {}
        self.start_balances: dict[str, int] = {}
        self.accounts: list[AgentAccount] = []
        self.contributions: dict[str, list[Any]] = {name: [] for name in CONTRIBUTION_COLUMNS}
        self.market: MarketDriver | None = None
        self.market_portions: list[Any] = []
        self.market_info: dict[str, Any] = {}
        self.tx: Transactor | None = None
        self._stop_requested = False
        self._started_ray = False
        self._head_seen_at = time.monotonic()
        self._pause_left = 0
        self._jitter = 0
        self._chaos_rng = np.random.default_rng([scenario.seed, 0xC4A05])
        self.block_time = scenario.chain.block_time
        self.telemetry = Telemetry(self.run_id, scenario.telemetry, endpoint_file=self.run_dir / "telemetry.json")
        from .invariants.wiring import make_metrics  # Prometheus /metrics, fed by the telemetry calls

        self.metrics = make_metrics(self)
        self.invariants: Any = None  # the InvariantMonitor, once the system is deployed
        self._resume: asyncio.Event | None = None
        self._checkpoint_block = -1  # the node's last state dump
        self._snapshot_block = -1  # the shards' last snapshots
        self._next_checkpoint_at = 0.0  # monotonic time before which no checkpoint is taken
        self._shard_snapshots: list[bytes] = []
        self._shard_configs: list[ShardConfig] = []
        self._actor_cls: Any = None
        self.driven = scenario.chain.mining == "driven" and not scenario.chain.rpc_url

    # ---- entry point ------------------------------------------------------------------------

    def execute(self) -> Path:
        """Run to completion (or interruption) and write the results folder. Returns its path."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        sc = self.scenario
        if (sc.evaluation.baseline == "counterfactual" and not self.honest_only
                and any(g.resolved_role() != HONEST for g in sc.agents)):
            self._run_baseline()
        logs.configure(self.run_dir / "run.log.jsonl", console=True)
        previous = signal.getsignal(signal.SIGINT)
        try:
            asyncio.run(self._main())
            try:
                if self.write_report:
                    from .report import write_report

                    log.info("report written", path=str(write_report(self.run_dir)))
            except Exception:  # noqa: BLE001 - the report must never cost a run its results
                log.exception("could not write the report")
        finally:
            if threading.current_thread() is threading.main_thread():  # signal.signal fails elsewhere
                signal.signal(signal.SIGINT, previous)
            logs.close()
        return self.run_dir

    def _run_baseline(self) -> None:
        """The honest-only counterfactual, in `baseline/` of this run's folder: corruption is the drop
        of this run's accuracy below it."""
        import ray

        self._ensure_ray()  # one Ray for both runs
        base = Run(self.scenario, results_root=self.run_dir, run_id="baseline", progress=self.show_progress,
                   source=self.source, honest_only=True, ray_address=self.ray_address,
                   shards=self.shard_count, shard_cpus=self.shard_cpus, report=self.write_report)
        self.baseline_dir = base.execute()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()

        def on_sigint() -> None:
            # First Ctrl-C: stop at the next block and write what we have. Second: cancel now.
            if self._stop_requested and main_task is not None:
                main_task.cancel()
            self._stop_requested = True
            log.warning("interrupt received: stopping after this block")
            if self._resume is not None:
                self._resume.set()

        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        except (NotImplementedError, RuntimeError):
            pass
        t0 = time.time()
        cpu0 = time.process_time()
        try:
            sc = self.scenario
            self._resume = asyncio.Event()
            self._resume.set()
            self.telemetry.on_control(self._on_control)
            if self.metrics is not None:
                self.metrics.start()
            await self.telemetry.start()
            self.telemetry.status({"state": "starting", "scenario": sc.name, "seed": sc.seed,
                                   "started_at": time.time(), "duration_blocks": sc.schedule.duration,
                                   "baseline": self.honest_only})
            await self._setup()
            self.telemetry.status({"state": "running"})
            await self._loop()
            if self.market is not None and not self._stop_requested:
                await self._settle_market(await self._latest())
            self.state.status = "interrupted" if self._stop_requested else "completed"
        except asyncio.CancelledError:
            self.state.status = "interrupted"
            self.state.error = "cancelled"
        except Exception as e:
            self.state.status = "failed"
            self.state.error = f"{type(e).__name__}: {e}"
            log.exception("run failed")
        finally:
            self.state.driver_cpu_s = time.process_time() - cpu0
            self.state.phase_times["total_s"] = time.time() - t0
            await self._collect_partial()
            if self.invariants is not None:
                await self.invariants.finish()  # violation bundles still being written need the node
            self.telemetry.status({"state": self.state.status, "error": self.state.error,
                                   "last_block": self.state.last_block})
            self.state.telemetry = await self.telemetry.stop()
            if self.metrics is not None:
                await self.metrics.stop()  # after one last scrape of the final figures (bounded)
            self._write_results()
            if self.scenario.outputs.bundle:  # the node is still up; save_bundle never raises
                from .bundle import save_bundle

                await save_bundle(self)
            await self._teardown()
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError):
                pass
        log.info("run finished", status=self.state.status, results=str(self.run_dir))

    # ---- set-up -----------------------------------------------------------------------------

    async def _setup(self) -> None:
        sc = self.scenario
        t = time.time()
        resolved = sc.model_dump(mode="json")
        if resolved["chain"].get("rpc_url"):  # node URLs may carry credentials: never store them
            resolved["chain"]["rpc_url"] = redact_urls(resolved["chain"]["rpc_url"])
        write_json(self.run_dir / "scenario.json", resolved)
        (self.run_dir / "scenario.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        check_policies(sc, self.source or "<scenario>")

        compiled = compile_contracts()
        self.state.phase_times["compile_s"] = time.time() - t
        log.info("contracts ready", compiler=compiled.compiler_version, cached=compiled.from_cache)

        t = time.time()
        ds = for_model(load_dataset(sc.dataset, sc.seed), sc.model.type)
        parts = split(ds, sc.dataset, sc.seed)
        model_spec = train_initial(ds, parts.init, sc.model, sc.seed)
        test_rows = parts.test if sc.evaluation.test_size is None else parts.test[: sc.evaluation.test_size]
        self.state.phase_times["dataset_s"] = time.time() - t
        log.info("dataset ready", dataset=ds.name, samples=len(ds), features=ds.n_features,
                 init=len(parts.init), agents=len(parts.agents), test=len(test_rows))

        t = time.time()
        chain = sc.chain
        if chain.rpc_url:
            url = chain.rpc_url
            key_env = chain.funder_key_env
            if not key_env or not os.environ.get(key_env):
                raise RunError("chain.rpc_url is set: put the funding account's private key in the environment "
                               f"variable named by chain.funder_key_env (now {key_env!r}, unset or empty)")
            funder = LocalAccount.from_key(os.environ[key_env])
        else:
            self.node = AnvilNode(
                NodeSettings(gas_limit=chain.gas_limit, base_fee=chain.base_fee, accounts=chain.accounts,
                             balance_ether=chain.balance // 10**18, chain_id=chain.chain_id, order=chain.order,
                             genesis_timestamp=DRIVEN_GENESIS if self.driven else None, no_mining=self.driven,
                             prune_history=chain.prune_history),
                self.run_dir / "anvil.log",
            )
            url = await asyncio.to_thread(self.node.start)
            funder = dev_accounts(1)[0]
        self.client = RpcClient(url)
        chain_id = await self.client.chain_id()
        from .invariants.wiring import needs_initial_state

        if needs_initial_state(self):  # before any transaction: the replay's starting point
            from .bundle import BUNDLE_DIR, capture_initial_state

            await capture_initial_state(self.client, self.run_dir / BUNDLE_DIR)
        self.state.phase_times["node_s"] = time.time() - t
        log.info("node ready", url=self.client.display_url, managed=self.node is not None, chain_id=chain_id)

        t = time.time()
        tx = Transactor(self.client, funder, chain_id, mine=self._mine_next if self.driven else None)
        inc = sc.incentive
        self.tx = tx
        if inc.type == "prediction_market":
            self.system = await self._deploy_market(tx, compiled, model_spec, ds, test_rows)
        else:
            incentive_spec = (
                PointsSpec(inc.refund_wait, inc.owner_claim_wait, inc.any_address_claim_wait)
                if inc.type == "points"
                else StakeableSpec(inc.refund_wait, inc.owner_claim_wait, inc.any_address_claim_wait,
                                   inc.cost_weight))
            self.system = await deploy_system(
                self.client, tx, compiled, model_spec, incentive_spec,
                gas_limit=chain.gas_limit, name=sc.name, description=sc.description, encoder="none",
            )
        self.state.phase_times["deploy_s"] = time.time() - t
        save_initial_model(self.run_dir, model_spec)
        log.info("contracts deployed", trainer=self.system.trainer, gas=self.system.gas_used,
                 transactions=self.system.transactions)

        t = time.time()
        self.n_classes = ds.n_classes  # the shards' policies pick wrong labels among these
        specs = self._agent_specs(ds, parts.agents)
        self.shards = await self._start_shards(url, chain_id, specs)
        addresses: list[str] = []
        for addrs in await asyncio.gather(*(s.addresses.remote() for s in self.shards)):
            addresses.extend(addrs)
        self.state.phase_times["shards_s"] = time.time() - t

        t = time.time()
        await self._fund(tx, specs, addresses)
        self.state.phase_times["funding_s"] = time.time() - t

        self.monitor = ChainMonitor(self.client)
        from .invariants.wiring import make_monitor

        self.invariants = make_monitor(self)
        self.evaluator = Evaluator(self.client, self.system, [ds.samples[i] for i in test_rows],
                                   ds.labels[test_rows], spot_checks=sc.evaluation.spot_checks)
        if self.node is not None:
            await set_mining(self.client, chain.mining, chain.block_time)
        self.state.status = "running"

    def _agent_specs(self, ds: Any, rows: np.ndarray) -> list[AgentSpec]:
        sc = self.scenario
        total = sum(g.count for g in sc.agents)
        per_default = max(1, len(rows) // total)
        specs: list[AgentSpec] = []
        cursor = 0
        agent_id = 0
        honest_groups = {g.name or g.policy for g in sc.agents if g.resolved_role() == HONEST}
        for g in sc.agents:
            n_samples = g.samples_per_agent or per_default
            params = {"rate": g.rate, "arrival": g.arrival, **g.params}
            if g.arrival == "burst":
                params |= {"burst_size": g.burst_size, "burst_every": g.burst_every}
            for _ in range(g.count):
                take = [rows[(cursor + k) % len(rows)] for k in range(n_samples)]
                cursor += n_samples
                samples = [(ds.samples[i], int(ds.labels[i])) for i in take]
                group = g.name or g.policy
                specs.append(AgentSpec(agent_id, group, g.policy, params, samples))
                self.agent_groups[agent_id] = group
                agent_id += 1
        if self.honest_only:
            specs = [s for s in specs if s.group in honest_groups]
            if not specs:
                raise RunError("the counterfactual baseline needs at least one group whose role is honest")
        return specs

    async def _start_shards(self, url: str | list[str], chain_id: int, specs: list[AgentSpec]) -> list[Any]:
        import ray

        self._ensure_ray()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n_shards = max(1, min(len(specs), self.shard_count if self.shard_count is not None else cpus))
        # User policies importable here (module.path:Class) must import in the shard processes too.
        user_paths = [p for p in sys.path if p and os.path.isdir(p) and "site-packages" not in p
                      and not p.startswith(sys.base_prefix)]
        pythonpath = os.pathsep.join(user_paths + [os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)
        # SPREAD: on a cluster of several machines the shards go to different nodes, not the driver's.
        actor_cls = make_actor_class(num_cpus=self.shard_cpus).options(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
                                                         scheduling_strategy="SPREAD")
        assert self.system is not None
        wanted = ("CollaborativeTrainer", "DataHandler", self.system.model_contract, self.system.incentive_contract)
        abis = {name: a.abi for name, a in self.system.abis.items() if name in wanted}
        sc = self.scenario
        shards = []
        for i in range(n_shards):
            cfg = ShardConfig(
                # Several endpoints: shard i prefers the i-th (load spread round-robin), fails over to the rest.
                shard_id=i, rpc_url=rotate_endpoints(url, i), chain_id=chain_id, seed=sc.seed,
                trainer=self.system.trainer,
                incentive=self.system.incentive, abis=abis,
                cost_weight=sc.incentive.cost_weight if sc.incentive.type == "stakeable" else 0,
                stake=sc.incentive.min_stake if sc.incentive.type == "prediction_market" else None,
                # A market pays out only after its round: nothing to refund while it runs.
                refund_wait=sc.incentive.refund_wait if self.market is None else 2**40,
                block_time=sc.chain.block_time,
                agents=specs[i::n_shards], fees=FeeStance(), unique_tips=self.driven,
                data_handler=self.system.data_handler, mechanism=sc.incentive.type,
                owner_claim_wait=sc.incentive.owner_claim_wait, any_address_claim_wait=sc.incentive.any_address_claim_wait,
                keep_raw=self.node is not None and bool(sc.chain.checkpoint_every),
                model_contract=self.system.model_contract, n_classes=self.n_classes,
                n_features=self.system.n_features,
            )
            shards.append(actor_cls.remote(cfg))
            self._shard_configs.append(cfg)
        self._actor_cls = actor_cls  # a shard that dies is replaced by one of the same class and config
        await asyncio.gather(*(s.start.remote() for s in shards))
        log.info("shards started", shards=n_shards, agents=len(specs))
        return shards

    def _ensure_ray(self) -> None:
        """Join the cluster at `ray_address` (or RAY_ADDRESS), else start a private one on this
        machine; a Ray the caller already initialised is used as it is."""
        import ray

        if ray.is_initialized():
            return
        address = self.ray_address or os.environ.get("RAY_ADDRESS") or None
        if address:
            ray.init(address=address, log_to_driver=True, configure_logging=False)
        else:
            ray.init(address="local", num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False,
                     log_to_driver=True, configure_logging=False)
        self._started_ray = True
        log.info("ray ready", address=address or "local", nodes=len([n for n in ray.nodes() if n.get("Alive")]))

    async def _fund(self, tx: Transactor, specs: list[AgentSpec], addresses: list[str]) -> None:
        assert self.client is not None
        amounts = {}
        by_group = {(g.name or g.policy): g.funding for g in self.scenario.agents}
        specs = [s for s in specs if s.group in by_group]
        # addresses come back shard by shard; map them through the shards' own order
        ordered_specs = [s for i in range(len(self.shards)) for s in specs[i::len(self.shards)]]
        for spec, addr in zip(ordered_specs, addresses):
            amounts[addr] = by_group[spec.group]
        need = sum(amounts.values())
        have = await self.client.balance(tx.account.address)
        if have < need:
            raise RunError(f"the funding account holds {have / 1e18:.4f} ether, the agents need {need / 1e18:.4f}")
        items = list(amounts.items())
        for i in range(0, len(items), FUNDING_BATCH):
            base_fee = await tx.base_fee()  # one read per batch, not per transfer
            batch = [await tx.sign(addr, b"", value, gas=21_000, base_fee=base_fee)
                     for addr, value in items[i:i + FUNDING_BATCH]]
            await tx.send_many(batch)
        self.funding = amounts
        self.start_balances = await self._balances(list(amounts), "latest")
        log.info("wallets funded", wallets=len(items), total_ether=need / 1e18)

    async def _balances(self, addresses: list[str], tag: int | str) -> dict[str, int]:
        assert self.client is not None
        t = hex(tag) if isinstance(tag, int) else tag
        out: dict[str, int] = {}
        for i in range(0, len(addresses), 1000):
            chunk = addresses[i:i + 1000]
            res = await self.client.batch([("eth_getBalance", [a, t]) for a in chunk])
            out.update({a: int(r, 16) for a, r in zip(chunk, res) if isinstance(r, str)})
        return out

    async def _points(self, addresses: list[str], tag: int | str) -> dict[str, int]:
        assert self.client is not None and self.system is not None
        abi = self.system.incentive_abi
        if "numValid" not in {f.name for f in abi.functions.values()}:
            return {}
        fn = abi.fn("numValid")
        t = hex(tag) if isinstance(tag, int) else tag
        out: dict[str, int] = {}
        for i in range(0, len(addresses), 1000):
            chunk = addresses[i:i + 1000]
            res = await self.client.batch([("eth_call", [{"to": self.system.incentive,
                                                         "data": "0x" + fn.encode(a).hex()}, t]) for a in chunk])
            out.update({a: int(fn.decode(bytes.fromhex(r[2:]))) for a, r in zip(chunk, res) if isinstance(r, str)})
        return out

    # ---- the loop ---------------------------------------------------------------------------

    async def _deploy_market(self, tx: Transactor, compiled: Any, model_spec: Any, ds: Any,
                             test_rows: np.ndarray) -> DeployedSystem:
        """A prediction market round: deploy, commit the test set in portions, draw and reveal the
        hidden portion's index. The market is the agents' entry point (same addData as a trainer)."""
        assert self.client is not None
        sc = self.scenario
        inc = sc.incentive
        params = MarketParams(min_stake=inc.min_stake)
        m = await deploy_market(self.client, tx, compiled, model_spec, params, gas_limit=sc.chain.gas_limit)
        # The market replays every contribution over the whole test set: keep it within its entry budget.
        samples, labels, entries = [], [], 0
        for i in test_rows:
            s = ds.samples[i]
            if entries + len(s) > params.max_test_entries or len(s) > params.max_data_length:
                continue
            samples.append(s)
            labels.append(int(ds.labels[i]))
            entries += len(s)
        portions = split_test_set(samples, labels, inc.portions, salt_seed=sc.seed.to_bytes(32, "big"))
        self.market = MarketDriver(self.client, m)
        self.market_portions = portions
        await self.market.initialize(tx, inc.bounty, portions, min_length_s=0,
                                     min_contributions=inc.min_contributions)
        index = await self.market.reveal_init(tx, portions)
        self.market_info = {"market": m.market, "bounty": str(inc.bounty), "min_stake": str(inc.min_stake),
                            "portions": len(portions), "test_samples": len(samples), "reveal_index": index}
        log.info("prediction market open", market=m.market, test_samples=len(samples), reveal_index=index)
        return DeployedSystem(
            trainer=m.market, data_handler="", incentive=m.market, model=m.model, deployer=tx.account.address,
            block=m.block, n_features=m.n_features, gas_used=m.gas_used, transactions=0,
            abis={"CollaborativeTrainer": m.abi, "PredictionMarket": m.abi, m.model_contract: m.model_abi},
            model_contract=m.model_contract, incentive_contract="PredictionMarket")

    async def _settle_market(self, head: BlockInfo) -> None:
        """After participation: end it, reveal the test set, run every reward pass, and let each
        participant (and the provider) collect. Each step is recorded in the summary."""
        assert self.market is not None and self.client is not None
        info = self.market_info
        try:
            await self.market.end_participation(self.tx)
        except TransactionFailed as e:
            info["ended"] = f"could not end participation: {e.reason or e}"
            return
        if await self.market.phase() == MarketPhase.REVEAL_TEST_SET:
            info["reveal_transactions"] = await self.market.reveal_test_set(self.tx, self.market_portions)
            receipts = await self.market.process_all(self.tx)
            info["process_transactions"] = len(receipts)
            info["process_gas"] = sum(int(r["gasUsed"], 16) for r in receipts)
            info["passes"] = [{k: int(v) for k, v in ev.items()}
                              for r in receipts for ev in self.market.events(r, "PassCompleted")]
            ended = [ev for r in receipts for ev in self.market.events(r, "RewardPhaseEnded")]
            if ended:
                info["provider_amount"] = str(int(ended[-1]["providerAmount"]))
        info["phase_at_end"] = (await self.market.phase()).name
        if await self.market.claimable(self.tx.account.address) > 0:
            r = await self.market.collect(self.tx)
            info["provider_collected"] = str(sum(int(e["amount"]) for e in self.market.events(r, "Collected")))
        head = await self._latest()
        sent = await asyncio.gather(*(s.market_collect.remote(head) for s in self.shards))
        info["collect_transactions"] = sum(sent)
        for _ in range(30):  # let the collects be mined and read
            if self.driven:
                await mine(self.client, head.timestamp + self.block_time)
            head = await self._wait_next(head, math.inf)
            for rec in await self.monitor.read(head.number) if self.monitor else []:
                self.telemetry.block(rec)
            if self.invariants is not None:
                await self.invariants.check(head.number)
            reports = await asyncio.gather(*(s.tick.remote(head) for s in self.shards))
            self._absorb(reports)
            if sum(r.in_flight for r in reports) == 0:
                break
        self.state.last_block = head.number

    async def _mine_next(self) -> None:
        """Driven mode: mine one block, block_time after the last one (set-up blocks too)."""
        assert self.client is not None
        head = await self.client.get_block("latest")
        assert head is not None
        await mine(self.client, int(head["timestamp"], 16) + self.scenario.chain.block_time)

    async def _latest(self) -> BlockInfo:
        assert self.client is not None
        b = await self.client.get_block("latest")
        assert b is not None
        base_fee = int(b.get("baseFeePerGas", "0x0"), 16)
        used, limit = int(b["gasUsed"], 16), int(b["gasLimit"], 16)
        upcoming = next_base_fee(base_fee, used, limit)
        return BlockInfo(int(b["number"], 16), int(b["timestamp"], 16), upcoming, fill=used / limit if limit else 0.0)

    async def _loop(self) -> None:
        assert self.client is not None and self.monitor is not None and self.evaluator is not None
        sc = self.scenario
        driven = self.driven
        self.block_time = sc.chain.block_time
        every = sc.evaluation.every
        chaos = sorted(sc.schedule.chaos, key=lambda e: e.at)
        phases = sorted(sc.schedule.phases, key=lambda p: p.at)
        head = await self._latest()
        self.state.start_block = head.number
        await self._checkpoint(head)  # after set-up and funding: a restart never undoes them
        for rec in await self.monitor.read(head.number):
            self.telemetry.block(rec)
        if self.invariants is not None:
            await self.invariants.check(head.number)
        self.telemetry.accuracy(await self.evaluator.evaluate(head.number, head.timestamp))
        end_block = head.number + sc.schedule.duration
        deadline = time.monotonic() + sc.schedule.max_wall_time if sc.schedule.max_wall_time else math.inf
        acting = True
        drain_left = DRAIN_BLOCKS
        last_eval = head.number
        loop_t0 = time.time()
        loop_cpu0 = time.process_time()
        with _Progress(self.show_progress, sc.schedule.duration) as bar:
            while True:
                try:
                    offset = head.number - self.state.start_block
                    load = next((p.load for p in reversed(phases) if p.at <= offset), 1.0)
                    head = replace(head, load=load)
                    if self._resume is not None and not self._resume.is_set():
                        paused_at = time.monotonic()
                        await self._resume.wait()  # paused over MQTT: nothing happens, the deadline moves
                        self.state.paused_s += time.monotonic() - paused_at
                        deadline += time.monotonic() - paused_at
                    reports = await self._tick_all(head)
                    self._absorb(reports)
                    self.telemetry.counters(self._group_counters(reports), block=head.number)
                    # After the agents sent this block's transactions, before the next block: a dropped
                    # transaction is one that was really pending, a fee shock hits the next block.
                    while acting and chaos and chaos[0].at <= offset:
                        await self._apply_chaos(chaos.pop(0), head)
                    if head.number - last_eval >= every:
                        rec = await self.evaluator.evaluate(head.number, head.timestamp)
                        self.telemetry.accuracy(rec)
                        last_eval = head.number
                        log.debug("model evaluated", block=head.number, accuracy=rec.accuracy)
                    if (sc.chain.checkpoint_every and head.number - self._snapshot_block >= sc.chain.checkpoint_every
                            and time.monotonic() >= self._next_checkpoint_at):
                        await self._checkpoint(head)
                    in_flight = sum(r.in_flight for r in reports)
                    bar.update(head.number - self.state.start_block, self.state, self._accuracy(), in_flight)

                    if acting and (head.number >= end_block or self._stop_requested or time.monotonic() > deadline):
                        acting = False
                        self.state.ended_because = ("interrupted" if self._stop_requested else
                                                    "wall-time limit" if time.monotonic() > deadline else "duration")
                        await asyncio.gather(*(s.stop_acting.remote() for s in self.shards))
                        self.telemetry.event("acting_stopped", block=head.number, reason=self.state.ended_because)
                        self.telemetry.status({"state": "stopping"})
                    if acting and all(r.finished for r in reports) and not chaos and self._pause_left == 0:
                        self.state.ended_because = "all agents finished"
                        break
                    if not acting:
                        drain_left -= 1
                        if in_flight == 0 or drain_left <= 0 or (self._stop_requested and drain_left < DRAIN_BLOCKS - 5):
                            break

                    if self._pause_left > 0:
                        # Mining is paused: agents keep seeing the same head; time passes on the wall only.
                        self._pause_left -= 1
                        if self._pause_left == 0:
                            await self._resume_mining(head)
                        if not driven:
                            await asyncio.sleep(self.block_time)
                        continue
                    block_time = self.block_time
                    warp_to = self._warp_target(reports, head, block_time) if acting else None
                    if driven:
                        step = block_time
                        if self._jitter:
                            step = max(1, block_time + int(self._chaos_rng.integers(-self._jitter, self._jitter + 1)))
                        target = warp_to if warp_to is not None else head.timestamp + step
                        await mine(self.client, target)
                    elif warp_to is not None:
                        try:
                            await self.client.call("evm_increaseTime", warp_to - head.timestamp - block_time)
                        except RpcTransportError as e:
                            # A warp is only a shortcut, and one that may have been applied is never
                            # resent (the clock would move twice): go on, the next block's time tells.
                            log.warning("clock warp got no answer", block=head.number, error=str(e))
                            warp_to = None
                    if warp_to is not None:
                        self.state.warps.append({"block": head.number, "from": head.timestamp, "to": warp_to})
                        log.info("skipping idle chain time", block=head.number, seconds=warp_to - head.timestamp)
                        self.telemetry.event("warp", block=head.number, seconds=warp_to - head.timestamp)
                    head = await self._wait_next(head, deadline if acting else math.inf)
                    for rec in await self.monitor.read(head.number):
                        self.telemetry.block(rec)
                    if self.invariants is not None:
                        await self.invariants.check(head.number)
                except Exception:
                    # A dead managed node comes back from its last state dump; anything else is fatal.
                    if not await self._node_lost():
                        raise
                    head = await self._recover_node()
                    last_eval = min(last_eval, head.number)
        self.state.loop_wall_s = time.time() - loop_t0
        self.state.loop_driver_cpu_s = time.process_time() - loop_cpu0
        self.state.last_block = head.number
        if head.number != last_eval:
            self.telemetry.accuracy(await self.evaluator.evaluate(head.number, head.timestamp))

    async def _apply_chaos(self, ev: Any, head: BlockInfo) -> None:
        """Do one chaos event to the node now, and record it with its block."""
        assert self.client is not None
        record: dict[str, Any] = {"block": head.number, "offset": head.number - self.state.start_block,
                                  "event": ev.event, "wall": time.time()}
        if ev.event == "base_fee_shock":
            target = int(head.base_fee * ev.factor)
            await self.client.call("anvil_setNextBlockBaseFeePerGas", hex(target))
            record.update(factor=ev.factor, base_fee=target)
        elif ev.event == "gas_limit":
            await self.client.call("evm_setBlockGasLimit", hex(ev.gas_limit))
            record.update(gas_limit=ev.gas_limit)
        elif ev.event == "pause_mining":
            if not self.driven:
                await set_mining(self.client, "driven")
            self._pause_left = ev.blocks
            record.update(blocks=ev.blocks)
        elif ev.event == "block_time":
            self.block_time = ev.block_time
            self._jitter = ev.jitter or 0
            if not self.driven and self._pause_left == 0:
                await set_mining(self.client, "interval", ev.block_time)
            record.update(block_time=ev.block_time, jitter=self._jitter)
        elif ev.event == "drop_pending":
            hashes = await self._pool_hashes()
            chosen = [h for h in hashes if self._chaos_rng.random() < ev.share]
            dropped: list[str] = []
            if chosen:
                # anvil refuses (null) transactions it cannot run yet, e.g. fee caps under the base fee.
                await self.client.batch([("anvil_dropTransaction", [h]) for h in chosen])
                # anvil also drops a sender's later transactions (they could never run): the set
                # removed is what left the pool and is unknown to the node now (not mined meanwhile).
                gone = sorted(set(hashes) - set(await self._pool_hashes()))
                found = await self.client.batch([("eth_getTransactionByHash", [h]) for h in gone]) if gone else []
                dropped = [h for h, tx in zip(gone, found) if tx is None]
                await asyncio.gather(*(s.notify_dropped.remote(dropped, head) for s in self.shards))
            record.update(share=ev.share, pool=len(hashes), chosen=len(chosen), dropped=len(dropped))
        elif ev.event == "kill_shard":
            import ray

            i = (ev.shard or 0) % len(self.shards)
            record.update(shard=i, snapshot_block=self._snapshot_block)
            ray.kill(self.shards[i], no_restart=True)  # the process dies with whatever it held
        elif ev.event == "kill_node":
            assert self.node is not None and self.node.proc is not None
            record.update(pid=self.node.proc.pid, checkpoint_block=self._checkpoint_block)
            self.node.proc.kill()  # SIGKILL: no chance to save anything, as in a real crash
            await asyncio.to_thread(self.node.proc.wait)
        elif ev.event == "reorg":
            await self.client.call("anvil_reorg", ev.blocks, [])
            reorged_from = head.number - ev.blocks + 1
            await asyncio.gather(*(s.notify_reorg.remote(reorged_from) for s in self.shards))
            assert self.monitor is not None
            self.monitor.rewind(reorged_from)
            record.update(depth=ev.blocks, first_replaced_block=reorged_from)
        self.state.events.append(record)
        self.telemetry.event("chaos", **{k: v for k, v in record.items() if k != "event"}, chaos=ev.event)
        log.info("chaos", **{("chaos" if k == "event" else k): v for k, v in record.items() if k != "wall"})

    async def _pool_hashes(self) -> list[str]:
        assert self.client is not None
        content = await self.client.call("txpool_content")
        return sorted(tx["hash"] for part in ("pending", "queued")
                      for by_nonce in (content.get(part) or {}).values() for tx in by_nonce.values())

    async def _resume_mining(self, head: BlockInfo) -> None:
        assert self.client is not None
        if not self.driven:
            await set_mining(self.client, "interval", self.block_time)
        self.state.events.append({"block": head.number, "offset": head.number - self.state.start_block,
                                  "event": "resume_mining", "wall": time.time()})

    def _group_counters(self, reports: list[TickReport]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in reports:
            for group, counts in r.by_group.items():
                g = out.setdefault(group, {})
                for k, v in counts.items():
                    g[k] = g.get(k, 0) + v
        return out

    def _on_control(self, command: str) -> None:
        """pause / resume / stop, from the MQTT control topic."""
        assert self._resume is not None
        if command == "pause":
            self._resume.clear()
            self.telemetry.status({"state": "paused"})
        elif command == "resume":
            self._resume.set()
            self.telemetry.status({"state": "running"})
        elif command == "stop":
            self._stop_requested = True
            self._resume.set()
            self.telemetry.status({"state": "stopping"})
        log.info("control command", command=command)

    def _warp_target(self, reports: list[TickReport], head: BlockInfo, block_time: int) -> int | None:
        if self.market is not None:
            return None  # a market round has no waits to skip
        if any(r.next_wake is None or r.in_flight for r in reports):
            return None
        wake = min(r.next_wake for r in reports if r.next_wake is not None)
        if wake == FINISHED or wake <= head.timestamp + MIN_WARP_BLOCKS * block_time:
            return None
        return wake

    async def _wait_next(self, head: BlockInfo, deadline: float) -> BlockInfo:
        """Wait for the next block. The node mines on its own clock: sleep through most of the block
        time instead of polling it, then poll briefly (polling all the time cost the driver a core)."""
        assert self.client is not None
        if self.scenario.chain.mining == "interval" or self.node is None:
            seen = self._head_seen_at
            nap = seen + 0.85 * self.block_time - time.monotonic()
            if nap > 0:
                await asyncio.sleep(nap)
        while True:
            latest = await self._latest()
            if latest.number > head.number:
                self._head_seen_at = time.monotonic()
                return latest
            if self._stop_requested and time.monotonic() > deadline:
                return head
            await asyncio.sleep(0.01)

    def _absorb(self, reports: list[TickReport]) -> None:
        for r in reports:
            self.state.sent += r.sent
            self.state.included += r.included
            self.state.reverted += r.reverted
            self.state.dropped += r.dropped
            for e in r.errors:
                if len(self.state.tick_errors) < 100:
                    self.state.tick_errors.append(f"block {r.block} shard {r.shard_id}: {e}")
                log.warning("shard error", block=r.block, shard=r.shard_id, error=e)

    def _accuracy(self) -> float | None:
        if self.evaluator and self.evaluator.records:
            return self.evaluator.records[-1].accuracy
        return None

    # ---- the end ----------------------------------------------------------------------------

    async def _collect_partial(self) -> None:
        """Pull ledgers and stats from the shards, whatever state the run is in."""
        if not self.shards:
            return
        last = self.state.last_block
        if last < 0 and self.client is not None:
            try:
                last = await self.client.block_number()
            except Exception:  # noqa: BLE001 - node gone: shards settle with what they have
                last = 0
        try:
            parts = await asyncio.wait_for(
                asyncio.gather(*(s.finalize.remote(last) for s in self.shards)), timeout=60)
            self.ledger = merge_columns(parts, LEDGER_COLUMNS)
            self.state.shard_stats = await asyncio.gather(*(s.stats.remote() for s in self.shards))
            self.state.rpc["shards"] = merge_stats([s.get("rpc", {}) for s in self.state.shard_stats])
            agents = [a for part in await asyncio.gather(*(s.agent_summaries.remote() for s in self.shards))
                      for a in part]
            addresses = [a["address"] for a in agents]
            if self.client is not None and self.start_balances:
                end = await self._balances(addresses, last)
                points = await self._points(addresses, last)
                self.accounts = accounts(self.ledger, agents, self.start_balances, end, points)
            self.contributions = await self._contributions(last)
        except Exception as e:  # noqa: BLE001 - a dead shard must not cost the rest of the results
            log.error("could not collect the ledger from every shard", error=f"{type(e).__name__}: {e}")
            self.state.tick_errors.append(f"ledger collection: {type(e).__name__}: {e}")

    def _check_reconciliation(self) -> None:
        """A balance the ledger cannot explain means the books are wrong (or someone else moved
        ether): the run fails, loudly, whatever else went well. Results are still written."""
        bad = [a for a in self.accounts if not a.reconciled]
        if not bad:
            return
        first = bad[0]
        message = (f"reconciliation failed: {len(bad)} of {len(self.accounts)} agents' balance changes differ "
                   f"from their ledgers (first: agent {first.agent} {first.address}: ledger "
                   f"{first.ledger_flow} wei, chain {first.end_balance - first.start_balance} wei)")
        log.error(message, agents=[a.agent for a in bad][:20])
        if self.state.status in ("completed", "running"):
            self.state.status = "failed"
        self.state.error = f"{self.state.error}; {message}" if self.state.error else message

    def _write_results(self) -> None:
        self._check_reconciliation()
        try:
            blocks = self.monitor.records if self.monitor else []
            models = self.evaluator.records if self.evaluator else []
            n_blocks = write_table(self.run_dir / "blocks.parquet", rows_to_columns(blocks, BLOCK_COLUMNS),
                                   BLOCK_COLUMNS)
            n_tx = write_table(self.run_dir / "ledger.parquet", self.ledger, LEDGER_COLUMNS)
            write_table(self.run_dir / "accuracy.parquet", rows_to_columns(models, MODEL_COLUMNS), MODEL_COLUMNS)
            write_table(self.run_dir / "agents.parquet", account_columns(self.accounts), ACCOUNT_COLUMNS)
            write_table(self.run_dir / "contributions.parquet", self.contributions, CONTRIBUTION_COLUMNS)
            if self.client is not None:
                self.state.rpc["driver"] = self.client.stats()
            summary = build_summary(
                scenario=self.scenario, run_id=self.run_id, state=asdict(self.state), blocks=blocks,
                models=models, ledger=self.ledger, system=self.system, funding=self.funding,
                node_url=self.client.display_url if self.client else None, managed_node=self.node is not None,
                accounts=self.accounts, baseline=self._baseline_records(), market=self.market_info or None,
            )
            if self.invariants is not None:
                summary["invariants"] = self.invariants.summary()
            write_json(self.run_dir / "summary.json", summary)
            log.info("results written", blocks=n_blocks, transactions=n_tx, folder=str(self.run_dir))
        except Exception:
            log.exception("could not write results")
            raise

    async def _contributions(self, last: int) -> dict[str, list[Any]]:
        """Every contribution on chain (the public dataset the run built), from the trainer's AddData
        events in chain order: with the initial model it replays the model at any block."""
        cols: dict[str, list[Any]] = {name: [] for name in CONTRIBUTION_COLUMNS}
        if self.client is None or self.system is None or last < 0:
            return cols
        abi = self.system.abis["CollaborativeTrainer"]
        topic = "0x" + abi.events_by_name["AddData"].topic.hex()
        step = 2_000
        for start in range(self.system.block, last + 1, step):
            logs_ = await self.client.call("eth_getLogs", {"address": self.system.trainer, "topics": [topic],
                                                          "fromBlock": hex(start),
                                                          "toBlock": hex(min(start + step - 1, last))})
            for lg in logs_:
                _, a = abi.decode_log(lg)
                cols["block"].append(int(lg["blockNumber"], 16))
                cols["tx_index"].append(int(lg["transactionIndex"], 16))
                cols["log_index"].append(int(lg["logIndex"], 16))
                cols["tx_hash"].append(lg["transactionHash"])
                cols["author"].append(a["sender"])
                cols["label"].append(int(a["c"]))
                cols["added_time"].append(int(a["t"]))
                cols["deposit"].append(int(a["cost"]))
                cols["data"].append([int(x) for x in a["d"]])
        return cols

    def _baseline_records(self) -> list[dict[str, Any]] | None:
        if self.baseline_dir is None or not (self.baseline_dir / "accuracy.parquet").exists():
            return None
        import pyarrow.parquet as pq

        table = pq.read_table(self.baseline_dir / "accuracy.parquet").to_pylist()
        summary_path = self.baseline_dir / "summary.json"
        start = json.loads(summary_path.read_text())["chain"]["start_block"] if summary_path.exists() else 0
        for row in table:
            row["offset"] = row["block"] - start
        return table

    async def _teardown(self) -> None:
        for s in self.shards:
            try:
                await asyncio.wait_for(s.close.remote(), timeout=10)
            except Exception:  # noqa: BLE001
                pass
        if self.shards:
            import ray

            for s in self.shards:
                ray.kill(s)
            self.shards = []
            if self._started_ray:
                ray.shutdown()
        if self.client is not None:
            await self.client.close()
        if self.node is not None:
            await asyncio.to_thread(self.node.stop)
        # The dump only serves a restart during the run (and may be large); replay bundles keep
        # what is needed to re-execute a run.
        (self.run_dir / NODE_CHECKPOINT).unlink(missing_ok=True)


class _Progress:
    """A live bar of blocks and transactions (rich), or nothing when disabled or not a terminal."""

    def __init__(self, enabled: bool, total_blocks: int):
        self.enabled = enabled and os.isatty(2)
        self.total = total_blocks
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]blocks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"), transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("run", total=self.total, info="")
        return self

    def update(self, done: int, state: RunState, accuracy: float | None, in_flight: int) -> None:
        if self._progress is None:
            return
        acc = f" acc {accuracy:.3f}" if accuracy is not None else ""
        info = f"tx sent {state.sent} included {state.included} reverted {state.reverted} " \
               f"dropped {state.dropped} in flight {in_flight}{acc}"
        self._progress.update(self._task, completed=min(done, self.total), info=info)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)


def run_scenario(scenario: Scenario, **kwargs: Any) -> Path:
    return Run(scenario, **kwargs).execute()
