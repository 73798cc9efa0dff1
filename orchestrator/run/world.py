"""A run's world, set up before the loop: the node (started or joined), the funder checked against
what the agents need, compiled contracts, the dataset and initial model, the system deployed by the
scenario's mechanism, the shards with their agents, and funded wallets. Filled in step by step, so
an interrupted or failed set-up leaves what it got for the collection and the teardown."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import yaml

from agents.policies.base import HONEST, PolicyError, resolve_policy
from agents.shard import AgentSpec
from contracts.compiler import compile_contracts
from contracts.rpc import RpcClient, redact_urls
from contracts.signing import LocalAccount, dev_accounts
from contracts.transact import Transactor

from ..datasets import for_model, load_dataset, split
from ..evaluator import Evaluator
from ..mechanisms import DeployContext, Mechanism, mechanism_for
from ..monitor import ChainMonitor
from ..nodes import STATE_DUMP, NodeKind, NodeSettings, make_node
from ..results import write_json
from ..scenario import Scenario, ScenarioError, ScenarioIssue
from ..training import train_initial
from ..versions import save_initial_model
from .clock import Clock, DrivenClock, clock_kind, make_clock
from .shards import ShardPool
from .state import RunError, RunState

log = structlog.get_logger("dcai.run")
REORG_DEPTH = 64  # blocks a shard keeps settled ledger records before forgetting them (streamed to disk)

FUNDING_BATCH = 500


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


def funding_needed(scenario: Scenario, honest_only: bool) -> int:
    """Wei the funder sends to the agents: each group's funding times its count."""
    return sum(g.funding * g.count for g in scenario.agents if not honest_only or g.resolved_role() == HONEST)


@dataclass
class World:
    scenario: Scenario
    run_dir: Path
    state: RunState
    pool: ShardPool
    honest_only: bool = False
    source: str = "<scenario>"
    node: NodeKind | None = None
    client: RpcClient | None = None
    clock: Clock | None = None
    tx: Transactor | None = None
    mechanism: Mechanism | None = None
    system: Any = None  # contracts.deploy.DeployedSystem
    monitor: ChainMonitor | None = None
    evaluator: Evaluator | None = None
    n_classes: int = 2
    agent_groups: dict[int, str] = field(default_factory=dict)
    funding: dict[str, int] = field(default_factory=dict)
    start_balances: dict[str, int] = field(default_factory=dict)

    def _phase(self, name: str, since: float) -> None:
        self.state.phase_times[name] = time.time() - since

    async def build(self, rng: Any) -> None:
        sc = self.scenario
        self._write_scenario()
        check_policies(sc, self.source)
        t = time.time()
        funder = await self._start_node(rng)
        await self._preflight_funding(funder)
        inv = sc.telemetry.invariants
        # Before any transaction: the starting point of a replay bundle, or of a violation's bundle.
        if self.node is not None and self.node.has(STATE_DUMP) and (
                sc.outputs.bundle or (inv.enabled and inv.bundle_on_violation)):
            from ..bundle import BUNDLE_DIR, capture_initial_state

            assert self.client is not None
            await capture_initial_state(self.client, self.run_dir / BUNDLE_DIR)
        self._phase("node_s", t)

        t = time.time()
        # In a thread: the event loop stays free to hear Ctrl-C while solc and the dataset work.
        # The mechanism is chosen first: a plugin's own Solidity sources compile with the built-in ones.
        self.mechanism = mechanism_for(sc.incentive)
        compiled = await asyncio.to_thread(compile_contracts, extra_dirs=self.mechanism.sources)
        self._phase("compile_s", t)
        log.info("contracts ready", compiler=compiled.compiler_version, cached=compiled.from_cache)

        t = time.time()
        ds, parts, model_spec, test_rows = await asyncio.to_thread(self._data)
        self._phase("dataset_s", t)
        log.info("dataset ready", dataset=ds.name, samples=len(ds), features=ds.n_features,
                 init=len(parts.init), agents=len(parts.agents), test=len(test_rows))

        t = time.time()
        assert self.client is not None and self.clock is not None
        chain_id = await self.client.chain_id()
        self.tx = Transactor(self.client, funder, chain_id,
                             mine=self.clock.mine_next if isinstance(self.clock, DrivenClock) else None)
        self.system = await self.mechanism.deploy(DeployContext(self.client, self.tx, compiled, model_spec, ds,
                                                                test_rows, sc))
        self._phase("deploy_s", t)
        save_initial_model(self.run_dir, model_spec)
        log.info("contracts deployed", trainer=self.system.trainer, gas=self.system.gas_used,
                 transactions=self.system.transactions)

        t = time.time()
        self.n_classes = ds.n_classes  # the shards' policies pick wrong labels among these
        specs = self._agent_specs(ds, parts.agents)
        addresses = await self.pool.start(self._shard_base(chain_id), self._url(), specs)
        self._phase("shards_s", t)

        t = time.time()
        await self._fund(self.tx, self.pool.ordered(specs), addresses)
        self._phase("funding_s", t)

        self.monitor = ChainMonitor(self.client)
        self.evaluator = Evaluator(self.client, self.system, [ds.samples[i] for i in test_rows],
                                   ds.labels[test_rows], spot_checks=sc.evaluation.spot_checks)
        await self.clock.start()

    # ---- steps ----------------------------------------------------------------------------------

    def _write_scenario(self) -> None:
        resolved = self.scenario.model_dump(mode="json")
        if resolved["chain"].get("rpc_url"):  # node URLs may carry credentials: never store them
            resolved["chain"]["rpc_url"] = redact_urls(resolved["chain"]["rpc_url"])
        write_json(self.run_dir / "scenario.json", resolved)
        (self.run_dir / "scenario.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))

    def _url(self) -> str | list[str]:
        chain = self.scenario.chain
        return chain.rpc_url if chain.rpc_url else self.node.url  # type: ignore[union-attr]

    async def _start_node(self, rng: Any) -> LocalAccount:
        chain = self.scenario.chain
        kind = clock_kind(self.scenario)
        if chain.rpc_url:
            key_env = chain.funder_key_env
            if not key_env or not os.environ.get(key_env):
                raise RunError("chain.rpc_url is set: put the funding account's private key in the environment "
                               f"variable named by chain.funder_key_env (now {key_env!r}, unset or empty)")
            funder = LocalAccount.from_key(os.environ[key_env])
            url: str | list[str] = chain.rpc_url
        else:
            driven = kind == "driven"
            self.node = make_node(
                chain.node,
                NodeSettings(gas_limit=chain.gas_limit, base_fee=chain.base_fee, accounts=chain.accounts,
                             balance_ether=chain.balance // 10**18, chain_id=chain.chain_id, order=chain.order,
                             genesis_timestamp=DrivenClock.GENESIS if driven else None, no_mining=driven,
                             prune_history=chain.prune_history),
                self.run_dir / f"{chain.node}.log",
            )
            url = await asyncio.to_thread(self.node.start)
            funder = dev_accounts(1)[0]
        self.client = RpcClient(url)
        self.clock = make_clock(kind, self.client, chain.block_time, rng, self.node)
        chain_id = await self.client.chain_id()
        log.info("node ready", url=self.client.display_url, managed=self.node is not None, chain_id=chain_id)
        return funder

    async def _preflight_funding(self, funder: LocalAccount) -> None:
        """Before compile and deploy: the funder must hold what the agents are to be given."""
        assert self.client is not None
        need = funding_needed(self.scenario, self.honest_only)
        have = await self.client.balance(funder.address)
        if have >= need:
            return
        field_name = "chain.funder_key_env (the account it names)" if self.scenario.chain.rpc_url else "chain.balance"
        groups = ", ".join(f"agents[{i}] {g.count} x {g.funding / 1e18:g}" for i, g in enumerate(self.scenario.agents)
                           if not self.honest_only or g.resolved_role() == HONEST)
        raise RunError(f"{field_name}: the funding account holds {have / 1e18:.4f} ether, the agents need "
                       f"{need / 1e18:.4f} ether ({groups}), short by {(need - have) / 1e18:.4f} ether (plus gas "
                       "for deploy and funding); raise the funder's balance or lower agents[].funding")

    def _data(self) -> tuple[Any, Any, Any, np.ndarray]:
        sc = self.scenario
        ds = for_model(load_dataset(sc.dataset, sc.seed), sc.model.type)
        parts = split(ds, sc.dataset, sc.seed)
        model_spec = train_initial(ds, parts.init, sc.model, sc.seed)
        test_rows = parts.test if sc.evaluation.test_size is None else parts.test[: sc.evaluation.test_size]
        return ds, parts, model_spec, test_rows

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

    def _shard_base(self, chain_id: int) -> dict[str, Any]:
        """The ShardConfig fields every shard shares: chain, contracts, and the mechanism's parameters."""
        sc, system = self.scenario, self.system
        assert system is not None and self.mechanism is not None
        wanted = ("CollaborativeTrainer", "DataHandler", system.model_contract, system.incentive_contract)
        p = self.mechanism.shard_params()
        return dict(
            chain_id=chain_id, seed=sc.seed, trainer=system.trainer, incentive=system.incentive,
            abis={name: a.abi for name, a in system.abis.items() if name in wanted},
            cost_weight=p.cost_weight, stake=p.stake, refund_wait=p.refund_wait, mechanism=p.mechanism,
            owner_claim_wait=p.owner_claim_wait, any_address_claim_wait=p.any_address_claim_wait,
            claims=self.mechanism.claims, report_share_bps=p.report_share_bps,
            block_time=sc.chain.block_time, unique_tips=clock_kind(sc) == "driven",
            data_handler=system.data_handler,
            keep_raw=self.node is not None and bool(sc.chain.checkpoint_every),
            model_contract=system.model_contract, n_classes=self.n_classes, n_features=system.n_features,
            # The ledger streams to the results folder; shards keep a record while a reorg of the
            # scenario could still reopen it (the deepest chaos reorg, at least REORG_DEPTH blocks).
            stream_ledger=True,
            reorg_depth=max([REORG_DEPTH, *(int(getattr(e, "blocks", 0)) for e in sc.schedule.chaos
                                            if getattr(e, "event", None) == "reorg")]),
        )

    async def _fund(self, tx: Transactor, ordered_specs: list[AgentSpec], addresses: list[str]) -> None:
        """One transfer per agent, signed in batches; `ordered_specs` in the order of `addresses`."""
        assert self.client is not None
        by_group = {(g.name or g.policy): g.funding for g in self.scenario.agents}
        amounts = {addr: by_group[spec.group] for spec, addr in zip(ordered_specs, addresses)
                   if spec.group in by_group}
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
        self.start_balances = await balances(self.client, list(amounts), "latest")
        log.info("wallets funded", wallets=len(items), total_ether=need / 1e18)


async def balances(client: RpcClient, addresses: list[str], tag: int | str) -> dict[str, int]:
    t = hex(tag) if isinstance(tag, int) else tag
    out: dict[str, int] = {}
    for i in range(0, len(addresses), 1000):
        chunk = addresses[i:i + 1000]
        res = await client.batch([("eth_getBalance", [a, t]) for a in chunk])
        out.update({a: int(r, 16) for a, r in zip(chunk, res) if isinstance(r, str)})
    return out
