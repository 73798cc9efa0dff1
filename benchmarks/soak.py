"""Soak: 100,000 transactions from real agents, the inclusion-latency trend and every process's memory.

Honest agents (the framework's own: `ShardCore`s as Ray actors, one per core, as a run hosts them)
add samples the model agrees with and claim each refund once the refund wait has passed, so the
workload is a steady mix of `addData` and `refund` (every transaction moves money, and the ledger
is reconciled against the chain at the end). Arrivals are Poisson in chain time, sized so each
block carries about `--per-block` transactions, well under the block gas limit: a sustained load the
chain can absorb, which is what a soak needs (a backlog would measure queueing, not leaks).

Mining is driven, as in a driven run: tick every shard (they read their receipts, settle, then the
agents act and send), mine one block with a timestamp one second later, repeat. The base fee is
pinned at 0 so the fee market does not change the workload over time.

A thread samples every `--sample-s` seconds the RSS (from /proc) of the driver, each shard actor
process, each of Ray's own processes and anvil, together with how many transactions were final at
that moment. At the end the ledger gives, per window of `--window` transactions (in order of
inclusion), the inclusion latency p50/p99 in blocks (included block - block seen at send) and in
seconds (receipt seen by the shard - handed to the node) and the included rate; the verdict fits a
line to the latency per window (trend per 10k transactions) and to each process's RSS against
final transactions (MiB per 10k transactions, after the first 10% as warm-up).

Anvil keeps every block, transaction and receipt in memory and, by default, recent states too:
`--prune-history [N]` starts it with `--prune-history` (N states kept in memory) to see how much
of its growth is state history.

    python benchmarks/soak.py                 # 100,000 transactions (4-10 minutes on 2 cores)
    python benchmarks/soak.py --quick         # 10,000
    python benchmarks/soak.py --tx 20000 --prune-history
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
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
    FUNDING_WEI,
    RESULTS,
    TIP,
    Chain,
    compiled,
    descendants,
    fund_batched,
    machine,
    proc_name,
    proc_rss_bytes,
    sample,
    weights,
)
from soak_report import print_report  # noqa: E402
from soak_sampler import MIB, Sampler  # noqa: E402
from soak_stats import (  # noqa: E402
    _machine_busy,
    _other_cores,
    classify,
    memory_verdict,
    quantile,
    reanalyze,
    reconcile,
    trend,
    warmup_of,
    windows,
)

from agents.shard import AgentSpec, BlockInfo, ShardConfig, ShardCore, TickReport, make_actor_class  # noqa: E402
from agents.wallet import FeeStance  # noqa: E402
from contracts.deploy import SparsePerceptronSpec, StakeableSpec, deploy_system  # noqa: E402
from contracts.rpc import RpcClient  # noqa: E402
from contracts.signing import dev_accounts  # noqa: E402
from contracts.transact import Transactor  # noqa: E402
from orchestrator.monitor import ChainMonitor, next_base_fee  # noqa: E402
from orchestrator.nodes import AnvilNode, NodeSettings, mine, set_mining  # noqa: E402
from orchestrator.run.ledger_stream import LedgerStream  # noqa: E402

CONTRACTS = ("CollaborativeTrainer", "DataHandler", "Stakeable", "SparsePerceptron")
TX_PER_SAMPLE = 2  # an add, then its refund
MAX_SAMPLES_PER_AGENT = 100  # benchmark samples of one sender are distinct for j < 100 (distinct keys)


class Settings(argparse.Namespace):
    tx: int
    agents: int
    per_block: int
    shards: int
    gas_limit: int
    refund_wait: int
    sample_s: float
    window: int
    prune_history: int | None
    ray: bool
    quick: bool
    refunds_only: bool
    reorg_depth: int
    deadline_s: float
    out: Path | None
    reanalyze: Path | None


async def new_chain(s: Settings) -> Chain:
    log_dir = Path(tempfile.mkdtemp(prefix="dcai-soak-"))
    node = AnvilNode(NodeSettings(gas_limit=s.gas_limit, base_fee=0, prune_history=s.prune_history),
                     log_dir / "anvil.log")
    await asyncio.to_thread(node.start)
    client = RpcClient(node.url, max_connections=16)
    chain_id = await client.chain_id()
    funder = dev_accounts(1)[0]
    system = await deploy_system(
        client, Transactor(client, funder, chain_id), compiled(), SparsePerceptronSpec(weights=weights()),
        StakeableSpec(refund_wait_s=s.refund_wait, owner_claim_wait_s=8 * 86_400,
                      any_address_claim_wait_s=9 * 86_400, cost_weight=COST_WEIGHT),
        gas_limit=s.gas_limit, name="soak",
    )
    return Chain(node, client, chain_id, funder, system, compiled())


# ---- the workload -------------------------------------------------------------------------------

def plan(s: Settings) -> tuple[int, int, float]:
    """(agents, samples per agent, arrival rate per agent per chain second) for `s.tx` transactions."""
    samples_total = math.ceil(s.tx / TX_PER_SAMPLE)
    agents = s.agents or max(1, min(2000, samples_total // 10))
    per_agent = math.ceil(samples_total / agents)
    if per_agent > MAX_SAMPLES_PER_AGENT:
        agents = math.ceil(samples_total / MAX_SAMPLES_PER_AGENT)
        per_agent = math.ceil(samples_total / agents)
    # In steady state every block carries the adds arriving now and the refunds of the adds of
    # `refund_wait` blocks ago: half the block each.
    rate = s.per_block / TX_PER_SAMPLE / agents
    return agents, per_agent, rate


# --refunds-only: agents neither report nor take from others, so the claim loop keeps no per-agent
# schedule of every public contribution (O(agents x contributions)): what is left is the ledger's memory.
OWN_ONLY = {False: {}, True: {"report": False, "take_all": False}}


def shard_configs(s: Settings, chain: Chain, agents: int, per_agent: int, rate: float) -> list[ShardConfig]:
    samples_total = math.ceil(s.tx / TX_PER_SAMPLE)
    specs = []
    for i in range(agents):
        k = min(per_agent, samples_total - i * per_agent)
        if k <= 0:
            break
        specs.append(AgentSpec(i, "honest", "honest", {"rate": rate, "arrival": "poisson", "max_in_flight": 8,
                                                       "recheck_s": 60, **OWN_ONLY[s.refunds_only]},
                               [sample(j) for j in range(k)]))
    return [
        ShardConfig(
            shard_id=k, rpc_url=chain.url, chain_id=chain.chain_id, seed=4242, trainer=chain.system.trainer,
            incentive=chain.system.incentive, abis={c: chain.compiled[c].abi for c in CONTRACTS},
            cost_weight=COST_WEIGHT, refund_wait=s.refund_wait, block_time=1, agents=specs[k::s.shards],
            fees=FeeStance(tip=TIP), data_handler=chain.system.data_handler, mechanism="stakeable",
            owner_claim_wait=8 * 86_400, any_address_claim_wait=9 * 86_400,
            stream_ledger=True, reorg_depth=s.reorg_depth,  # as in a run: the ledger goes to the driver's log
        )
        for k in range(s.shards)
    ]

# ---- the driver ---------------------------------------------------------------------------------

async def block_info(client: RpcClient) -> BlockInfo:
    b = await client.get_block("latest")
    assert b is not None
    used, limit = int(b["gasUsed"], 16), int(b["gasLimit"], 16)
    return BlockInfo(int(b["number"], 16), int(b["timestamp"], 16),
                     next_base_fee(int(b.get("baseFeePerGas", "0x0"), 16), used, limit), fill=used / limit)


async def soak(s: Settings) -> dict[str, Any]:
    agents, per_agent, rate = plan(s)
    own_ray = False
    if s.ray:
        import ray

        if not ray.is_initialized():
            # A cluster of our own ("local", own temp dir): never join another Ray instance on the machine.
            ray.init(address="local", num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False,
                     configure_logging=False, log_to_driver=False, _temp_dir=tempfile.mkdtemp(prefix="dcs-ray-"))
            own_ray = True
    t_start = time.perf_counter()
    chain = await new_chain(s)
    shards: list[Any] = []
    try:
        configs = shard_configs(s, chain, agents, per_agent, rate)
        if s.ray:
            actor = make_actor_class(num_cpus=(os.cpu_count() or 1) / s.shards)
            shards = [actor.remote(cfg) for cfg in configs]
            addresses = [a for got in await asyncio.gather(*(sh.start.remote() for sh in shards)) for a in got]

            async def tick_all(head: BlockInfo) -> list[TickReport]:
                return list(await asyncio.gather(*(sh.tick.remote(head) for sh in shards)))

            async def finalize(last: int) -> list[dict[str, list[Any]]]:
                return list(await asyncio.gather(*(sh.finalize.remote(last) for sh in shards)))

            async def shard_stats() -> list[dict[str, Any]]:
                return list(await asyncio.gather(*(sh.stats.remote() for sh in shards)))

            shard_pids = sorted(p for p in descendants(os.getpid()) if proc_name(p).startswith("ray::ShardCore"))
        else:
            cores = [ShardCore(cfg) for cfg in configs]
            shards = cores
            addresses = [a for c in cores for a in await c.start()]

            async def tick_all(head: BlockInfo) -> list[TickReport]:
                return list(await asyncio.gather(*(c.tick(head) for c in cores)))

            async def finalize(last: int) -> list[dict[str, list[Any]]]:
                return [await c.finalize(last) for c in cores]

            async def shard_stats() -> list[dict[str, Any]]:
                return [c.stats() for c in cores]

            shard_pids = []
        fund_s = await fund_batched(chain, addresses, FUNDING_WEI)
        await set_mining(chain.client, "driven")
        setup_s = time.perf_counter() - t_start
        node_pid = chain.node.proc.pid  # type: ignore[union-attr]
        print(f"soak: {s.tx:,} transactions target: {len(addresses):,} honest agents x {per_agent} samples "
              f"(add + refund each), {s.shards} {'Ray shard actors' if s.ray else 'in-process shards'}, "
              f"~{s.per_block} tx per 1-second block, refund wait {s.refund_wait} s, gas limit {s.gas_limit:,}"
              f"{', anvil --prune-history' if s.prune_history is not None else ''}; set-up {setup_s:.1f} s "
              f"(funding {fund_s:.1f} s)", flush=True)

        monitor = ChainMonitor(chain.client)
        ledger_log = LedgerStream(Path(tempfile.mkdtemp(prefix="dcai-soak-")) / "ledger.arrows")
        totals: Counter[str] = Counter()
        errors: list[str] = []
        ticks = 0
        tick_ms: list[float] = []
        mine_ms: list[float] = []
        timeline: list[dict[str, Any]] = []  # per block: where the wall time went
        last_print = time.perf_counter()
        deadline = time.perf_counter() + s.deadline_s
        finished = False
        with Sampler(s.sample_s, node_pid, shard_pids) as sampler:
            t0 = time.perf_counter()
            while True:
                head = await block_info(chain.client)
                t = time.perf_counter()
                reports = await tick_all(head)
                tick_ms.append((time.perf_counter() - t) * 1e3)
                ticks += 1
                for r in reports:
                    ledger_log.append(r.ledger)
                    totals.update(sent=r.sent, included=r.included, reverted=r.reverted, dropped=r.dropped,
                                  replaced=r.replaced)
                    errors.extend(r.errors[:2])
                final = totals["included"] + totals["reverted"] + totals["dropped"] + totals["replaced"]
                sampler.final, sampler.block = final, head.number
                # Every add and its refund is final: the soak's work is done. (Agents themselves finish only
                # after the take-all window, days of chain time later, with nothing left to take.)
                finished = all(r.finished for r in reports) or (
                    final >= s.tx and not any(r.in_flight for r in reports))
                if finished or time.perf_counter() > deadline:
                    break
                t = time.perf_counter()
                await mine(chain.client, head.timestamp + 1)
                mine_ms.append((time.perf_counter() - t) * 1e3)
                await monitor.read(head.number + 1)
                timeline.append({"block": head.number + 1, "t": round(time.perf_counter() - t0, 3),
                                 "tick_ms": round(tick_ms[-1], 1), "mine_ms": round(mine_ms[-1], 1),
                                 "sent": sum(r.sent for r in reports), "final": final,
                                 "in_flight": sum(r.in_flight for r in reports)})
                if time.perf_counter() - last_print >= 10:
                    last_print = time.perf_counter()
                    el = last_print - t0
                    print(f"  {el:6.0f} s  block {head.number + 1:>6}  final {final:>7,}  {final / el:6.0f} tx/s  "
                          f"in flight {sum(r.in_flight for r in reports):>5}  "
                          f"anvil {proc_rss_bytes(node_pid) / MIB:6.0f} MiB"
                          + (f"  errors: {errors[-1]}" if errors else ""), flush=True)
            loop_s = time.perf_counter() - t0
            last = (await block_info(chain.client)).number
            ledger_log.extend(await finalize(last))
            # What each shard still holds at the end: the part of its state that grows with the run.
            held = [{k: st.get(k) for k in ("records", "records_retired", "public_contributions", "public_kept",
                                            "contributions_kept")} for st in await shard_stats()]
            ledgers = [ledger_log.read()]  # each transaction's last row, as a run's ledger.parquet
            ledger_log.discard()
        balances: dict[str, int] = {}
        for i in range(0, len(addresses), 1000):
            chunk = addresses[i:i + 1000]
            res = await chain.client.batch([("eth_getBalance", [a, "latest"]) for a in chunk])
            balances.update({a: int(r, 16) for a, r in zip(chunk, res) if isinstance(r, str)})
        statuses = Counter(x for led in ledgers for x in led["status"])
        actions = Counter(x for led in ledgers for x in led["action"])
        n_final = sum(v for k, v in statuses.items() if k != "pending")
        samples = sampler.samples
        per_process = memory_verdict(samples, n_final, warmup_of({"reorg_depth": s.reorg_depth,
                                                                  "refund_wait_s": s.refund_wait,
                                                                  "per_block": s.per_block}))
        wins = windows(ledgers, s.window or max(1, n_final // 20), samples)
        lat_trend = trend(wins)
        node_cpu = samples[-1]["node_cpu_s"] - samples[0]["node_cpu_s"] if samples else float("nan")
        wall = samples[-1]["t"] - samples[0]["t"] if samples else float("nan")
        return {
            "benchmark": "soak",
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine(),
            "settings": {"tx": s.tx, "agents": len(addresses), "samples_per_agent": per_agent,
                         "rate_per_agent_per_s": rate, "per_block": s.per_block, "shards": s.shards, "ray": s.ray,
                         "gas_limit": s.gas_limit, "base_fee": 0, "tip_wei": TIP, "refund_wait_s": s.refund_wait,
                         "sample_s": s.sample_s, "prune_history": s.prune_history, "quick": s.quick,
                         "refunds_only": s.refunds_only, "reorg_depth": s.reorg_depth,
                         "mining": "driven: tick every shard, then evm_mine with timestamp +1 s",
                         "workload": "honest agents: addData (10 even indices, label 1, the model agrees) "
                                     "then refund after the wait",
                         "contracts": COMPILE_NOTE or ["compiled from the source tree"]},
            "setup_s": setup_s, "funding_s": fund_s, "loop_s": loop_s, "finished": finished, "shards_hold": held,
            "ticks": ticks, "blocks": monitor.records[-1].number if monitor.records else None,
            "tick_ms_p50": quantile(sorted(tick_ms), 0.5), "tick_ms_p99": quantile(sorted(tick_ms), 0.99),
            "mine_ms_p50": quantile(sorted(mine_ms), 0.5), "mine_ms_p99": quantile(sorted(mine_ms), 0.99),
            "statuses": dict(statuses), "actions": dict(actions), "final": n_final,
            "pending_left": statuses.get("pending", 0), "errors": errors[:10],
            "overall_tps": n_final / loop_s if loop_s > 0 else float("nan"),
            "node_cpu_ms_per_tx": node_cpu / n_final * 1e3 if n_final else float("nan"),
            "machine_busy_cores": _machine_busy(samples, wall),
            "other_cores": _other_cores(samples, samples[0]["t"], samples[-1]["t"]) if samples else float("nan"),
            "timeline": timeline,
            "reconciliation": reconcile(ledgers, balances, FUNDING_WEI),
            "latency_trend": lat_trend,
            "windows": wins,
            "memory": per_process,
            "memory_verdict": {k: classify(v) for k, v in per_process.items()},
            "memory_samples": [{"t": round(x["t"] - samples[0]["t"], 2), "final": x["final"], "block": x["block"],
                                "busy_s": round(x["busy_s"], 2),
                                "ours_cpu_s": round(x["ours_cpu_s"], 2), "rss_mib": x["rss_mib"]} for x in samples],
        }
    finally:
        for sh in shards:
            try:
                if s.ray:
                    import ray

                    await asyncio.wait_for(sh.close.remote(), timeout=10)
                    ray.kill(sh)
                else:
                    await sh.close()
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        await chain.close()
        if own_ray:
            import ray

            ray.shutdown()


def parse(argv: list[str] | None = None) -> Settings:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tx", type=int, default=None, help="transactions (default 100,000; --quick 10,000)")
    p.add_argument("--quick", action="store_true", help="10,000 transactions, results to a temporary file")
    p.add_argument("--agents", type=int, default=0, help="agents (default: one per 10 samples, at most 2,000)")
    p.add_argument("--per-block", type=int, default=400, help="transactions per block aimed at (adds + refunds)")
    p.add_argument("--shards", type=int, default=None, help="shards (default: one per core)")
    p.add_argument("--gas-limit", type=int, default=60_000_000)
    p.add_argument("--refund-wait", type=int, default=30, help="Stakeable refund wait, chain seconds (= blocks)")
    p.add_argument("--sample-s", type=float, default=2.0, help="RSS sampling period")
    p.add_argument("--window", type=int, default=0, help="transactions per window (default: 1/20 of the run)")
    p.add_argument("--prune-history", type=int, nargs="?", const=0, default=None, metavar="N",
                   help="start anvil with --prune-history [N]")
    p.add_argument("--refunds-only", action="store_true",
                   help="agents claim only their own deposits: no per-agent view of others' contributions")
    p.add_argument("--reorg-depth", type=int, default=64,
                   help="blocks a shard keeps settled ledger records (a run: 64, or its deepest chaos reorg)")
    p.add_argument("--no-ray", dest="ray", action="store_false", help="shards in this process, not Ray actors")
    p.add_argument("--deadline-s", type=float, default=3600.0, help="stop the loop after this long regardless")
    p.add_argument("--out", type=Path, default=None,
                   help="default: benchmarks/results/soak.json (--quick or --tx: a temporary file)")
    p.add_argument("--reanalyze", type=Path, default=None, metavar="FILE",
                   help="recompute the trend and memory verdict of a written result in place, print it, exit")
    s = p.parse_args(argv, namespace=Settings())
    explicit_tx = s.tx is not None
    s.tx = s.tx or (10_000 if s.quick else 100_000)
    s.shards = s.shards or max(1, os.cpu_count() or 1)
    if s.out is None:
        if s.quick or explicit_tx or s.prune_history is not None:
            s.out = Path(tempfile.mkdtemp(prefix="dcai-bench-")) / "soak.json"
        else:
            s.out = RESULTS / "soak.json"
    return s


def main(argv: list[str] | None = None) -> int:
    s = parse(argv)
    if s.reanalyze is not None:
        result = reanalyze(s.reanalyze)
        print_report(result)
        s.reanalyze.write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(f"rewritten {s.reanalyze}")
        return 0
    result = asyncio.run(soak(s))
    print_report(result)
    assert s.out is not None
    s.out.parent.mkdir(parents=True, exist_ok=True)
    s.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"written {s.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
