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
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
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
    machine_busy_s,
    proc_cpu_s,
    proc_name,
    proc_rss_bytes,
    sample,
    weights,
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

MIB = 2**20
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


# ---- memory of every process ----------------------------------------------------------------------

def label(pid: int, node_pid: int, shard_pids: list[int]) -> str:
    if pid == os.getpid():
        return "driver"
    if pid == node_pid:
        return "anvil"
    if pid in shard_pids:
        return f"shard-{shard_pids.index(pid)}"
    cmd = proc_name(pid)
    first = cmd.split(" ", 1)[0]
    if first.startswith("ray::"):
        return f"ray:{first.removeprefix('ray::')}-{pid}"
    # Ray's helpers are python scripts: name them by the script (log_monitor.py, dashboard agent...)
    parts = [Path(p).name for p in cmd.split() if p.endswith(".py")]
    return f"ray:{parts[0] if parts else Path(first).name}-{pid}"


@dataclass
class Sampler:
    """Every `period_s`: the RSS of each of our processes and the count of final transactions."""

    period_s: float
    node_pid: int
    shard_pids: list[int]
    final: int = 0  # updated by the driver loop
    block: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        pids = {os.getpid(), self.node_pid, *self.shard_pids, *descendants(os.getpid())}
        rss = {}
        ours_cpu = sum(proc_cpu_s(pid) for pid in pids)
        for pid in sorted(pids):
            b = proc_rss_bytes(pid)
            if b:
                rss[label(pid, self.node_pid, self.shard_pids)] = round(b / MIB, 1)
        self.samples.append({"t": time.time(), "final": self.final, "block": self.block,
                             "node_cpu_s": proc_cpu_s(self.node_pid), "busy_s": machine_busy_s(),
                             "ours_cpu_s": ours_cpu, "rss_mib": rss})

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True, name="soak-rss")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


# ---- statistics ---------------------------------------------------------------------------------

def quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of y on x (nan with fewer than 3 points)."""
    pts = [(x, y) for x, y in zip(xs, ys) if not (math.isnan(x) or math.isnan(y))]
    if len(pts) < 3:
        return float("nan")
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else float("nan")


def windows(ledgers: list[dict[str, list[Any]]], size: int, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per `size` mined transactions, in order of inclusion: latency p50/p99 and the included rate."""
    rows = []
    for led in ledgers:
        for st, sb, ib, sw, iw in zip(led["status"], led["submitted_block"], led["included_block"],
                                      led["submitted_wall"], led["included_wall"]):
            if st in ("included", "reverted"):
                rows.append((iw, ib - sb, iw - sw))
    rows.sort()
    out = []
    prev_end = rows[0][0] if rows else 0.0
    start_wall = min((min(led["submitted_wall"]) for led in ledgers if led["submitted_wall"]), default=prev_end)
    prev_end = start_wall
    for i in range(0, len(rows), size):
        chunk = rows[i:i + size]
        blocks = sorted(float(r[1]) for r in chunk)
        secs = sorted(float(r[2]) for r in chunk)
        end = chunk[-1][0]
        span = end - prev_end
        mem = _memory_at(samples, end)
        other = _other_cores(samples, prev_end, end)
        out.append({"window": len(out), "from_tx": i, "to_tx": i + len(chunk), "end_s": round(end - start_wall, 2),
                    "tx": len(chunk), "tps": len(chunk) / span if span > 0 else float("nan"),
                    "latency_blocks_p50": quantile(blocks, 0.5), "latency_blocks_p99": quantile(blocks, 0.99),
                    "latency_s_p50": quantile(secs, 0.5), "latency_s_p99": quantile(secs, 0.99),
                    "other_cores": other, "rss_mib": mem})
        prev_end = end
    return out


def _other_cores(samples: list[dict[str, Any]], t0: float, t1: float) -> float:
    """Cores other processes of the machine (not ours, not the node) kept busy between t0 and t1,
    from the samples around that span (the machine is shared: this is the context of a slow window)."""
    inside = [x for x in samples if t0 - 1e-9 <= x["t"] <= t1]
    before = [x for x in samples if x["t"] < t0]
    span = ([before[-1]] if before else []) + inside
    if len(span) < 2 or span[-1]["t"] <= span[0]["t"]:
        return float("nan")
    a, b = span[0], span[-1]
    return max(0.0, (b["busy_s"] - a["busy_s"]) - (b["ours_cpu_s"] - a["ours_cpu_s"])) / (b["t"] - a["t"])


def _memory_at(samples: list[dict[str, Any]], t: float) -> dict[str, float]:
    """RSS per process group at the last sample not after t: driver, shards, ray (Ray's own), anvil."""
    before = [x for x in samples if x["t"] <= t] or samples[:1]
    if not before:
        return {}
    return group_rss(before[-1]["rss_mib"])


def group_rss(rss: dict[str, float]) -> dict[str, float]:
    out = {"driver": 0.0, "shards": 0.0, "ray": 0.0, "anvil": 0.0}
    for name, v in rss.items():
        key = "shards" if name.startswith("shard-") else "ray" if name.startswith("ray:") else name
        out[key] = round(out.get(key, 0.0) + v, 1)
    return out


def memory_verdict(samples: list[dict[str, Any]], n: int) -> dict[str, dict[str, Any]]:
    """Per process: RSS at start, after warm-up, at the end, peak, and the fitted growth per 10k final
    transactions after warm-up (the first 10%: pools, imports and caches fill up then)."""
    warm = [x for x in samples if x["final"] >= 0.1 * n]
    names = sorted({k for x in samples for k in x["rss_mib"]})
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        seen = [x for x in samples if name in x["rss_mib"]]
        fit = [x for x in warm if name in x["rss_mib"]]
        per10k = slope([x["final"] for x in fit], [x["rss_mib"][name] for x in fit]) * 10_000
        out[name] = {
            "start_mib": seen[0]["rss_mib"][name], "after_warmup_mib": fit[0]["rss_mib"][name] if fit else None,
            "end_mib": seen[-1]["rss_mib"][name], "peak_mib": max(x["rss_mib"][name] for x in seen),
            "growth_mib_per_10k_tx": per10k, "samples": len(seen),
        }
    return out


def trend(wins: list[dict[str, Any]]) -> dict[str, float]:
    """Least-squares slopes per 10k transactions over the steady windows (the first fills the
    pipeline, the last drains the Poisson tail of the slowest agents: both left out when there are
    more than four), and the first against the last quarter of them."""
    core = wins[1:-1] if len(wins) > 4 else wins
    idx = [w["from_tx"] + w["tx"] / 2 for w in core]
    out = {
        "latency_s_p50_per_10k_tx": slope(idx, [w["latency_s_p50"] for w in core]) * 10_000,
        "latency_s_p99_per_10k_tx": slope(idx, [w["latency_s_p99"] for w in core]) * 10_000,
        "latency_blocks_p50_per_10k_tx": slope(idx, [w["latency_blocks_p50"] for w in core]) * 10_000,
        "latency_blocks_p99_per_10k_tx": slope(idx, [w["latency_blocks_p99"] for w in core]) * 10_000,
        "tps_per_10k_tx": slope(idx, [w["tps"] for w in core]) * 10_000,
        "windows_fitted": len(core),
    }
    q = max(1, len(core) // 4)

    def mean(ws: list[dict[str, Any]], k: str) -> float:
        return sum(w[k] for w in ws) / len(ws) if ws else float("nan")

    out.update({
        "latency_s_p50_first_quarter": mean(core[:q], "latency_s_p50"),
        "latency_s_p50_last_quarter": mean(core[-q:], "latency_s_p50"),
        "latency_blocks_p50_first_quarter": mean(core[:q], "latency_blocks_p50"),
        "latency_blocks_p50_last_quarter": mean(core[-q:], "latency_blocks_p50"),
        "tps_first_quarter": mean(core[:q], "tps"), "tps_last_quarter": mean(core[-q:], "tps"),
    })
    return out


def reanalyze(path: Path) -> dict[str, Any]:
    """Recompute the trend and the memory verdict of a written result (no re-run)."""
    r = json.loads(path.read_text())
    r["latency_trend"] = trend(r["windows"])
    r["memory"] = memory_verdict(r["memory_samples"], r["final"])
    r["memory_verdict"] = {k: classify(v) for k, v in r["memory"].items()}
    return r


def classify(v: dict[str, Any]) -> str:
    g = v["growth_mib_per_10k_tx"]
    base = v["after_warmup_mib"] or v["start_mib"] or 1.0
    if math.isnan(g):
        return "too few samples"
    # Flat: under 1 MiB or 0.5% of its size per 10k transactions (allocator noise is of that order).
    return "flat" if abs(g) < max(1.0, 0.005 * base) else ("grows" if g > 0 else "shrinks")


# ---- the driver ---------------------------------------------------------------------------------

async def block_info(client: RpcClient) -> BlockInfo:
    b = await client.get_block("latest")
    assert b is not None
    used, limit = int(b["gasUsed"], 16), int(b["gasLimit"], 16)
    return BlockInfo(int(b["number"], 16), int(b["timestamp"], 16),
                     next_base_fee(int(b.get("baseFeePerGas", "0x0"), 16), used, limit), fill=used / limit)


def reconcile(ledgers: list[dict[str, list[Any]]], balances: dict[str, int], funding: int) -> dict[str, Any]:
    """Each agent's balance change on chain equals the sum over its ledger rows (included:
    received - value - fee; reverted: -fee; otherwise nothing), to the wei."""
    net: Counter[str] = Counter()
    for led in ledgers:
        for st, snd, val, rec, gu, gp in zip(led["status"], led["sender"], led["value"], led["received"],
                                             led["gas_used"], led["effective_gas_price"]):
            fee = int(gu) * int(gp)
            if st == "included":
                net[snd] += int(rec) - int(val) - fee
            elif st == "reverted":
                net[snd] -= fee
    mismatched = [a for a, b in balances.items() if b - funding != net.get(a, 0)]
    return {"agents": len(balances), "mismatched": len(mismatched), "ok": not mismatched,
            "first_mismatch": mismatched[:3]}


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

            shard_pids = sorted(p for p in descendants(os.getpid()) if proc_name(p).startswith("ray::ShardCore"))
        else:
            cores = [ShardCore(cfg) for cfg in configs]
            shards = cores
            addresses = [a for c in cores for a in await c.start()]

            async def tick_all(head: BlockInfo) -> list[TickReport]:
                return list(await asyncio.gather(*(c.tick(head) for c in cores)))

            async def finalize(last: int) -> list[dict[str, list[Any]]]:
                return [await c.finalize(last) for c in cores]

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
        per_process = memory_verdict(samples, n_final)
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
            "setup_s": setup_s, "funding_s": fund_s, "loop_s": loop_s, "finished": finished,
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


def _machine_busy(samples: list[dict[str, Any]], wall: float) -> float:
    """Average cores the whole machine used meanwhile (ours included): context for shared machines."""
    if len(samples) < 2 or not wall:
        return float("nan")
    return (samples[-1]["busy_s"] - samples[0]["busy_s"]) / wall


# ---- printing -----------------------------------------------------------------------------------

def print_report(r: dict[str, Any]) -> None:
    print()
    print(f"{'window':>6} {'tx':>14} {'end s':>7} {'tx/s':>7} {'lat blk p50':>11} {'p99':>5} "
          f"{'lat s p50':>9} {'p99':>6} {'others':>6} {'driver':>7} {'shards':>7} {'ray':>7} {'anvil':>7}  (RSS MiB)")
    for w in r["windows"]:
        m = w["rss_mib"]
        print(f"{w['window']:>6} {w['from_tx']:>6,}-{w['to_tx']:<7,} {w['end_s']:>7.1f} {w['tps']:>7.0f} "
              f"{w['latency_blocks_p50']:>11.1f} {w['latency_blocks_p99']:>5.1f} {w['latency_s_p50']:>9.3f} "
              f"{w['latency_s_p99']:>6.3f} {w.get('other_cores', math.nan):>6.2f} {m.get('driver', 0):>7.0f} {m.get('shards', 0):>7.0f} "
              f"{m.get('ray', 0):>7.0f} {m.get('anvil', 0):>7.0f}")
    t = r["latency_trend"]
    print()
    print(f"final {r['final']:,} of {r['settings']['tx']:,} ({r['statuses']}), actions {r['actions']}, "
          f"{r['overall_tps']:.0f} tx/s over {r['loop_s']:.0f} s, tick p50 {r['tick_ms_p50']:.0f} ms, "
          f"evm_mine p50 {r['mine_ms_p50']:.0f} ms, anvil CPU {r['node_cpu_ms_per_tx']:.2f} ms/tx, "
          f"machine busy {r.get('machine_busy_cores', r.get('foreign_cores', math.nan)):.2f} cores, of which other "
          f"processes {r.get('other_cores', math.nan):.2f}")
    print(f"reconciliation: {'ok' if r['reconciliation']['ok'] else 'MISMATCH'} "
          f"({r['reconciliation']['agents']} agents, {r['reconciliation']['mismatched']} mismatched)")
    print(f"latency trend: p50 {t['latency_s_p50_per_10k_tx'] * 1e3:+.1f} ms per 10k tx "
          f"(first quarter {t['latency_s_p50_first_quarter'] * 1e3:.0f} ms, last {t['latency_s_p50_last_quarter'] * 1e3:.0f} ms), "
          f"p99 {t['latency_s_p99_per_10k_tx'] * 1e3:+.1f} ms per 10k tx, "
          f"blocks p50 {t['latency_blocks_p50_per_10k_tx']:+.3f} per 10k tx; "
          f"tx/s {t['tps_per_10k_tx']:+.1f} per 10k tx (first quarter {t['tps_first_quarter']:.0f}, "
          f"last {t['tps_last_quarter']:.0f})")
    print("memory per process (RSS MiB: start / after warm-up / end / peak; growth per 10k tx after warm-up):")
    for name, v in r["memory"].items():
        print(f"  {name:<34} {v['start_mib']:>7.0f} {v['after_warmup_mib'] or float('nan'):>7.0f} "
              f"{v['end_mib']:>7.0f} {v['peak_mib']:>7.0f}  {v['growth_mib_per_10k_tx']:+8.2f} MiB/10k tx  "
              f"{r['memory_verdict'][name]}")


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
