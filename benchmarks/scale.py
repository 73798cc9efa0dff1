"""Memory and time of a run with many agents (10,000 by default, 100,000 on this machine): shards as
Ray actors, about one per core, the population grown in steps (`--step`, 10,000 above 10,000 agents)
with a line of costs per step.

Phases, each timed (summed over steps), with the resident memory (RSS) of the driver and the shard
processes sampled throughout (Ray's own processes and the node are reported apart):

  1. ray.init (a cluster of our own) and a fresh node with a deployed system;
  2. create the shards (Ray actors) and `start()` them (connection pool, head block);
  then for each step of the population:
  3. add the step's agents to the shards (`ShardCore.add_agents`: keys derived, policies built,
     nonces read);
  4. fund them by pre-signed transfers in JSON-RPC batches with one block mined per batch
     (`benchmarks/common.fund_batched`); the first `--runner-funding` agents (10,000) also the way a
     run does, first: `orchestrator.run.world.World._fund` (a signed transfer per wallet from the dev
     account through `contracts.transact.Transactor`, batches of 500, the node in automine as during
     a run's set-up, so a block per transfer), its time split into signing and sending/waiting;
  5. ticks, driven mining as in a driven run (tick every shard, then mine): every new agent adds
     once in the first tick, then ticks until every transaction is final; then a few idle ticks
     (nothing in flight, every agent so far asleep until its refund a day later): the per-tick cost
     of everyone so far doing nothing;
  finally:
  6. finalize: every shard settles and returns its ledger as columns.

    python benchmarks/scale.py                   # 10,000 agents, about 1 minute on 2 cores
    python benchmarks/scale.py --agents 100000   # 10 steps of 10,000, about 10 minutes
    python benchmarks/scale.py --quick           # 1,000 agents
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    COMPILE_NOTE,
    COST_WEIGHT,
    RESULTS,
    TIP,
    RssSampler,
    descendants,
    fresh_chain,
    fund_batched,
    machine,
    machine_busy_s,
    median,
    proc_cpu_s,
    proc_name,
    proc_rss_bytes,
    sample,
    wait_quiet,
)

from agents.shard import AgentSpec, BlockInfo, ShardConfig, TickReport, make_actor_class  # noqa: E402
from agents.wallet import FeeStance  # noqa: E402
from contracts.transact import Transactor  # noqa: E402
from orchestrator.monitor import next_base_fee  # noqa: E402
from orchestrator.nodes import mine, set_mining  # noqa: E402

CONTRACTS = ("CollaborativeTrainer", "DataHandler", "Stakeable", "SparsePerceptron")
FUNDING = 10**17  # wei per agent (0.1 ether: gas for a few adds at any base fee seen here)
MIB = 2**20


def ours() -> list[int]:
    return [os.getpid(), *shard_pids()]


def shard_pids() -> list[int]:
    return [p for p in descendants(os.getpid()) if proc_name(p).startswith("ray::ShardCore")]


def ray_pids(exclude: set[int]) -> list[int]:
    out = []
    for p in descendants(os.getpid()):
        name = proc_name(p)
        if p in exclude or "anvil" in name:
            continue
        if "ray" in name or "raylet" in name or "gcs_server" in name:
            out.append(p)
    return out


def rss_mib(pids: list[int]) -> float:
    return sum(proc_rss_bytes(p) for p in pids) / MIB


class Phases:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.rss: dict[str, dict[str, float]] = {}
        self.node_pid = 0
        self.last = 0.0  # seconds of the phase timed last

    def snapshot(self, name: str) -> None:
        shards = shard_pids()
        self.rss[name] = {
            "driver_mib": proc_rss_bytes(os.getpid()) / MIB,
            "shards_mib": rss_mib(shards),
            "ray_system_mib": rss_mib(ray_pids(set(shards))),
            "node_mib": proc_rss_bytes(self.node_pid) / MIB if self.node_pid else 0.0,
        }


async def timed(phases: Phases, name: str, coro: Any) -> Any:
    """Time a phase (phases met again, once per step of the population, add up) and sample memory."""
    t = time.perf_counter()
    out = await coro
    phases.last = time.perf_counter() - t
    phases.times[name] = phases.times.get(name, 0.0) + phases.last
    phases.snapshot(name)
    print(f"  {name:<34} {phases.last:8.2f} s   driver {phases.rss[name]['driver_mib']:.0f} MiB, "
          f"shards {phases.rss[name]['shards_mib']:.0f} MiB", flush=True)
    return out


async def runner_funding(client: Any, tx: Transactor, specs: list[AgentSpec], addresses: list[str],
                         n_shards: int) -> dict[str, Any]:
    """Fund through the run's own code (`World._fund`), on a bare World holding just what it reads; the
    Transactor is wrapped to time signing apart from sending and waiting for receipts."""
    from orchestrator.run.world import World
    from orchestrator.scenario import AgentGroup, DatasetConfig, Scenario, ScheduleConfig

    sign_s = 0.0
    sign_calls = 0
    sign = tx.sign

    async def timed_sign(*a: Any, **k: Any) -> Any:
        nonlocal sign_s, sign_calls
        t = time.perf_counter()
        out = await sign(*a, **k)
        sign_s += time.perf_counter() - t
        sign_calls += 1
        return out

    tx.sign = timed_sign  # type: ignore[method-assign]
    requests0 = client.requests
    world = World.__new__(World)
    world.client = client
    # Enough samples for every agent to hold its own (validation refuses agents that would share them).
    world.scenario = Scenario(name="scale", agents=[AgentGroup(policy="honest", count=len(specs), funding=FUNDING)],
                              dataset=DatasetConfig(samples=2 * len(specs)), schedule=ScheduleConfig(duration=10))
    world.funding = {}
    # addresses come back shard by shard: the specs in the same order
    ordered = [s for i in range(n_shards) for s in specs[i::n_shards]]
    t = time.perf_counter()
    await world._fund(tx, ordered, addresses)
    total = time.perf_counter() - t
    return {"total_s": total, "sign_s": sign_s, "send_and_wait_s": total - sign_s, "transfers": sign_calls,
            "http_requests": client.requests - requests0, "batch": getattr(sys.modules["orchestrator.run.world"],
                                                                           "FUNDING_BATCH", None)}


async def latest(client: Any) -> BlockInfo:
    b = await client.get_block("latest")
    base_fee = int(b.get("baseFeePerGas", "0x0"), 16)
    used, limit = int(b["gasUsed"], 16), int(b["gasLimit"], 16)
    return BlockInfo(int(b["number"], 16), int(b["timestamp"], 16), next_base_fee(base_fee, used, limit),
                     fill=used / limit if limit else 0.0)


async def tick_once(chain: Any, shards: list[Any], ticks: list[dict[str, Any]], kind: str, agents: int
                    ) -> list[TickReport]:
    """Tick every shard on the latest block, then mine the next one (a driven run's step)."""
    head = await latest(chain.client)
    t = time.perf_counter()
    reports = await asyncio.gather(*(s.tick.remote(head) for s in shards))
    wall = time.perf_counter() - t
    ticks.append({"kind": kind, "agents": agents, "block": head.number, "wall_ms": wall * 1e3,
                  "shard_step_ms": [round(r.step_ms, 1) for r in reports],
                  # of which choosing, stepping and re-scheduling agents (the rest: receipts, ledger counts)
                  "shard_agents_ms": [round(getattr(r, "agents_ms", float("nan")), 1) for r in reports],
                  "stepped": sum(getattr(r, "stepped", 0) for r in reports),
                  "sent": sum(r.sent for r in reports), "included": sum(r.included for r in reports),
                  "in_flight": sum(r.in_flight for r in reports),
                  "errors": [e for r in reports for e in r.errors][:3]})
    await mine(chain.client, head.timestamp + 1)
    return reports


async def grow(a: argparse.Namespace, phases: Phases, chain: Any, shards: list[Any], group: list[AgentSpec],
               ticks: list[dict[str, Any]]) -> dict[str, Any]:
    """One step of the population: add `group` to the shards, fund it (the run's way, then pre-signed
    batches for comparison), tick until its adds are final, then idle ticks with everyone so far."""
    k = len(shards)
    total = group[-1].agent_id + 1
    print(f"  -- {total:,} agents", flush=True)
    lists = await timed(phases, "add_agents_s", asyncio.gather(*(s.add_agents.remote(group[i::k])
                                                                  for i, s in enumerate(shards))))
    add_s = phases.last
    addresses = [x for lst in lists for x in lst]
    funding: dict[str, Any] = {}
    fund_runner_s = None
    if group[0].agent_id < a.runner_funding:
        # The run's own way, in automine as during a run's set-up: a block per transfer, which costs
        # the node about 10x the batched way on a loaded machine, so only for the first agents.
        await set_mining(chain.client, "auto")
        tx = Transactor(chain.client, chain.funder, chain.chain_id)
        try:
            funding = await timed(phases, "fund_runner_s", runner_funding(chain.client, tx, group, addresses, k))
        except Exception as e:  # noqa: BLE001 - the run's code changed shape: say so, go on
            funding = {"error": f"{type(e).__name__}: {e}"}
            print(f"  runner funding failed: {funding['error']}")
        fund_runner_s = phases.last
    fast_s = await timed(phases, "fund_batched_s", fund_batched(chain, addresses, FUNDING, batch=500))
    await set_mining(chain.client, "driven")
    n_ticks = len(ticks)

    async def active() -> None:
        final = 0
        while final < len(group) and len(ticks) - n_ticks < 400:
            reports = await tick_once(chain, shards, ticks, "active", total)
            final += sum(r.included + r.reverted + r.dropped for r in reports)

    await timed(phases, "active_ticks_s", active())
    mine_active = ticks[n_ticks:]

    async def idle() -> None:
        for _ in range(a.idle_ticks):
            await tick_once(chain, shards, ticks, "idle", total)

    await timed(phases, "idle_ticks_s", idle())
    mine_idle = ticks[n_ticks + len(mine_active):]
    rss = phases.rss["idle_ticks_s"]
    line = {
        "agents": total, "added": len(group), "add_agents_s": add_s, "fund_runner_s": fund_runner_s,
        "fund_batched_s": fast_s, "funding_runner": funding, "active_ticks": len(mine_active),
        "first_tick_ms": mine_active[0]["wall_ms"], "first_tick_sent": mine_active[0]["sent"],
        "active_tick_ms_median": median([t["wall_ms"] for t in mine_active[1:]]) if len(mine_active) > 1 else None,
        "idle_tick_ms_median": median([t["wall_ms"] for t in mine_idle]) if mine_idle else None,
        "idle_shard_step_ms_median": median([x for t in mine_idle for x in t["shard_step_ms"]]) if mine_idle else None,
        "idle_shard_agents_ms_median": median([x for t in mine_idle for x in t["shard_agents_ms"]]) if mine_idle
        else None,
        "idle_stepped": [t["stepped"] for t in mine_idle],
        "rss_mib": {**rss, "per_shard": [round(proc_rss_bytes(p) / MIB, 1) for p in shard_pids()]},
        "load": os.getloadavg(), "addresses": addresses,
    }
    print(f"     {total:>7,} agents: add {add_s:.1f} s, fund {fund_runner_s or 0:.1f} s (batched {fast_s:.1f} s), "
          f"{len(mine_active)} active ticks (first {line['first_tick_ms']:.0f} ms), idle tick "
          f"{line['idle_tick_ms_median'] or 0:.0f} ms (shard step {line['idle_shard_step_ms_median'] or 0:.0f} ms, "
          f"agents {line['idle_shard_agents_ms_median'] or 0:.1f} ms, stepped {line['idle_stepped']}), "
          f"shards {rss['shards_mib']:.0f} MiB, node {rss['node_mib']:.0f} MiB, load {line['load'][0]:.2f}", flush=True)
    return line


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    import ray

    phases = Phases()
    t_start = time.perf_counter()
    n = a.agents
    quiet = wait_quiet(a.wait_idle) if a.wait_idle > 0 else None
    busy0, cpu0 = machine_busy_s(), time.process_time()
    load0 = os.getloadavg()  # other helpers share the machine: say how busy it was
    print(f"scale: {n:,} agents in {a.shards} Ray shards, blocks of {a.gas_limit:,} gas, base fee 0", flush=True)

    async def ray_init() -> None:  # in the main thread: Ray installs its signal handlers there
        ray.init(address="local", num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False,
                 configure_logging=False, log_to_driver=False, _temp_dir=tempfile.mkdtemp(prefix="dcb-ray-"))

    await timed(phases, "ray_init_s", ray_init())
    chain = await timed(phases, "node_and_deploy_s", fresh_chain(gas_limit=a.gas_limit, base_fee=0))
    phases.node_pid = chain.node.proc.pid  # type: ignore[union-attr]
    shards: list[Any] = []
    result: dict[str, Any] = {}
    with RssSampler(ours, period_s=0.25) as sampler:
        try:
            specs = [AgentSpec(i, "honest", "honest", {"rate": 1e6, "max_in_flight": 4}, [sample(i % 100)])
                     for i in range(n)]
            actor = make_actor_class(num_cpus=(os.cpu_count() or 1) / a.shards)  # fits any shard count
            cfgs = [ShardConfig(
                shard_id=k, rpc_url=chain.url, chain_id=chain.chain_id, seed=7, trainer=chain.system.trainer,
                incentive=chain.system.incentive, abis={c: chain.compiled[c].abi for c in CONTRACTS},
                cost_weight=COST_WEIGHT, refund_wait=86_400, block_time=1, agents=[],
                fees=FeeStance(tip=TIP), max_in_flight=n, data_handler=chain.system.data_handler,
                mechanism="stakeable", owner_claim_wait=8 * 86_400, any_address_claim_wait=9 * 86_400,
                **({"replace_after_blocks": a.replace_after_blocks} if a.replace_after_blocks is not None else {}),
            ) for k in range(a.shards)]

            async def create() -> None:
                shards.extend(actor.remote(cfg) for cfg in cfgs)
                await asyncio.gather(*(s.addresses.remote() for s in shards))  # constructors done

            await timed(phases, "create_shards_s", create())
            await timed(phases, "start_shards_s", asyncio.gather(*(s.start.remote() for s in shards)))
            ticks: list[dict[str, Any]] = []
            steps: list[dict[str, Any]] = []
            addresses: list[str] = []
            funding: dict[str, Any] = {}
            fast_s = 0.0
            for lo in range(0, n, a.step):
                group = specs[lo:lo + a.step]
                steps.append(await grow(a, phases, chain, shards, group, ticks))
                addresses += steps[-1].pop("addresses")
                f = steps[-1]["funding_runner"]
                for k, v in f.items():
                    funding[k] = funding.get(k, 0) + v if isinstance(v, (int, float)) and k != "batch" else v
                fast_s += steps[-1]["fund_batched_s"]
                # The lines so far, in case a long run is cut short (a shared machine, a deadline).
                a.out.with_suffix(".steps.json").write_text(json.dumps(steps, indent=1, default=str) + "\n")
            assert len(set(addresses)) == n
            last = (await latest(chain.client)).number
            ledgers = await timed(phases, "finalize_s", asyncio.gather(*(s.finalize.remote(last) for s in shards)))
            stats = await asyncio.gather(*(s.stats.remote() for s in shards))
            statuses = Counter(x for led in ledgers for x in led["status"])
            shard_cpu = sum(proc_cpu_s(p) for p in shard_pids())
        finally:
            for s in shards:
                try:
                    await asyncio.wait_for(s.close.remote(), timeout=10)
                except Exception:  # noqa: BLE001
                    pass
            node_rss = proc_rss_bytes(phases.node_pid) / MIB
            ray_rss = rss_mib(ray_pids(set(shard_pids())))
            for s in shards:
                ray.kill(s)
            await chain.close()
            ray.shutdown()
    wall = time.perf_counter() - t_start
    active = [t for t in ticks if t["kind"] == "active"]
    idle = [t for t in ticks if t["kind"] == "idle" and t["agents"] == n]
    first = active[0]
    result = {
        "benchmark": "scale",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "load_before": load0,
        "settings": {"agents": n, "step": a.step, "shards": a.shards, "gas_limit": a.gas_limit, "base_fee": 0,
                     "mining": "driven: tick every shard, then evm_mine (as a driven run)",
                     "idle_ticks": a.idle_ticks, "quick": a.quick,
                     "replace_after_blocks": a.replace_after_blocks if a.replace_after_blocks is not None
                     else ShardConfig.__dataclass_fields__["replace_after_blocks"].default,
                     "contracts": COMPILE_NOTE or ["compiled from the source tree"]},
        "phase_s": phases.times,
        "rss_mib_after_phase": phases.rss,
        "peak_rss_mib": {
            "driver_plus_shards": sampler.peak_total / MIB,
            "driver": sampler.peak_by_pid.get(os.getpid(), 0) / MIB,
            "shards": {str(p): v / MIB for p, v in sampler.peak_by_pid.items() if p != os.getpid()},
            "ray_system_at_end": ray_rss,
            "node_at_end": node_rss,
        },
        "funding": {"runner": funding, "batched_s": fast_s, "wallets": n},
        # One line per step of the population: what the step cost and what a tick costs with everyone so far.
        "steps": steps,
        "ticks": {
            "active": len(active),
            "first_tick_ms": first["wall_ms"], "first_tick_sent": first["sent"],
            "first_tick_shard_step_ms": first["shard_step_ms"],
            "active_tick_ms_median": median([t["wall_ms"] for t in active[1:]]) if len(active) > 1 else None,
            "idle_tick_ms_median": median([t["wall_ms"] for t in idle]) if idle else None,
            "idle_shard_step_ms_median": median([x for t in idle for x in t["shard_step_ms"]]) if idle else None,
            "per_tick": ticks,
        },
        "ledger": dict(statuses),
        "shard_stats": stats,
        "shard_cpu_s": shard_cpu,
        "driver_cpu_s": time.process_time() - cpu0,
        "foreign_cores": max(0.0, (machine_busy_s() - busy0 - (time.process_time() - cpu0) - shard_cpu)) / wall,
        "load_after": os.getloadavg(),
        "quiet_before": quiet,
        "wall_s": wall,
    }
    print(f"  first tick: {first['sent']:,} adds sent in {first['wall_ms']:.0f} ms "
          f"(shards' own step {first['shard_step_ms']} ms); {len(active)} active ticks in all; "
          f"idle tick {result['ticks']['idle_tick_ms_median']:.0f} ms")
    print(f"  ledger {dict(statuses)}")
    print(f"  peak RSS driver + shards {result['peak_rss_mib']['driver_plus_shards']:.0f} MiB "
          f"(driver {result['peak_rss_mib']['driver']:.0f}, shards "
          f"{', '.join(f'{v:.0f}' for v in result['peak_rss_mib']['shards'].values())}); Ray's own processes "
          f"{ray_rss:.0f} MiB; node {node_rss:.0f} MiB")
    if "total_s" in funding:
        print(f"  funding {funding['transfers']:,} wallets the run's way: {funding['total_s']:.1f} s (signing {funding['sign_s']:.1f} s, "
              f"sending and waiting {funding['send_and_wait_s']:.1f} s, {funding['http_requests']:,} HTTP requests); "
              f"pre-signed in batches: {fast_s:.1f} s for {n:,}")
    print(f"total {wall:.0f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=None, help="default 10,000 (--quick: 1,000)")
    p.add_argument("--shards", type=int, default=max(1, os.cpu_count() or 1))
    p.add_argument("--gas-limit", type=int, default=60_000_000)
    p.add_argument("--idle-ticks", type=int, default=5)
    p.add_argument("--runner-funding", type=int, default=10_000, metavar="N",
                   help="fund the first N agents also the run's way (World._fund, automine), for comparison")
    p.add_argument("--step", type=int, default=None,
                   help="grow the population by this many agents at a time, with a line of costs per step "
                        "(default 10,000 above 10,000 agents, else all at once)")
    p.add_argument("--replace-after-blocks", type=int, default=None,
                   help="ShardConfig.replace_after_blocks (default: the framework's own default)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                   help="first wait up to S seconds for other processes to go quiet (shared machines)")
    p.add_argument("--out", type=Path, default=None,
                   help="default: benchmarks/results/scale.json (--quick: a temporary file)")
    a = p.parse_args(argv)
    a.agents = a.agents or (1000 if a.quick else 10_000)
    a.step = a.step or (10_000 if a.agents > 10_000 else a.agents)
    if a.step < 1 or a.agents < 1:
        p.error("--agents and --step must be at least 1")
    if a.out is None:
        a.out = Path(tempfile.mkdtemp(prefix="dcai-bench-")) / "scale.json" if a.quick else RESULTS / "scale.json"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(main_async(a))
    a.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
