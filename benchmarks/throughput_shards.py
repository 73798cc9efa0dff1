"""Throughput path (b): the framework, shards of honest agents ticked on every block, as Ray actors
(one per core, as a run hosts them) or in the measuring process."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from typing import Any

from common import (  # noqa: E402
    COST_WEIGHT,
    Chain,
    Miner,
    TIP,
    descendants,
    fund_batched,
    median,
    proc_name,
    sample,
)
from throughput_measure import CONTRACTS, PER_SENDER, Settings, Window, figures, new_chain

from agents.shard import AgentSpec, BlockInfo, ShardConfig, ShardCore, TickReport, make_actor_class
from agents.wallet import FeeStance
from contracts.rpc import RpcClient
from orchestrator.monitor import ChainMonitor, next_base_fee


def shard_configs(s: Settings, chain: Chain, n: int, n_shards: int, run: int) -> list[ShardConfig]:
    senders = (n + PER_SENDER - 1) // PER_SENDER
    # An honest agent with a high rate and room for all its transactions in flight submits every
    # sample the first block it can: as fast as the framework allows.
    specs = [AgentSpec(i, "honest", "honest", {"rate": 1e6, "max_in_flight": PER_SENDER},
                       [sample(j) for j in range(min(PER_SENDER, n - i * PER_SENDER))])
             for i in range(senders)]
    # The stuck/drop checks count blocks; their defaults (8 and 20) assume 1-second blocks. Blocks here
    # come every block_ms, so the same wall-clock patience is a proportionally larger count.
    scale = max(1, round(1000 / s.block_ms))
    return [
        ShardConfig(
            shard_id=k, rpc_url=chain.url, chain_id=chain.chain_id, seed=1000 + run, trainer=chain.system.trainer,
            incentive=chain.system.incentive, abis={c: chain.compiled[c].abi for c in CONTRACTS},
            cost_weight=COST_WEIGHT, refund_wait=86_400, block_time=1, agents=specs[k::n_shards],
            fees=FeeStance(tip=TIP), max_in_flight=n, drop_after_blocks=20 * scale, replace_after_blocks=8 * scale,
            data_handler=chain.system.data_handler, mechanism="stakeable",
            owner_claim_wait=8 * 86_400, any_address_claim_wait=9 * 86_400,
        )
        for k in range(n_shards)
    ]


async def block_info(client: RpcClient) -> BlockInfo:
    b = await client.get_block("latest")
    assert b is not None
    base_fee = int(b.get("baseFeePerGas", "0x0"), 16)
    used, limit = int(b["gasUsed"], 16), int(b["gasLimit"], 16)
    return BlockInfo(int(b["number"], 16), int(b["timestamp"], 16), next_base_fee(base_fee, used, limit),
                     fill=used / limit if limit else 0.0)


async def drive(chain: Chain, miner: Miner, n: int, tick_all: Any, w: Window) -> dict[str, Any]:
    """Tick every shard on each new block until all n transactions are final; the chain monitor
    reads every block and the reports are aggregated, as the run loop does."""
    monitor = ChainMonitor(chain.client)
    sent = final = 0
    submitted: dict[str, float] | None = None
    totals: Counter[str] = Counter()
    ticks = 0
    tick_ms: list[float] = []
    errors: list[str] = []
    timeline: list[dict[str, Any]] = []
    seen = miner.blocks
    deadline = time.perf_counter() + 120
    while True:
        head = await block_info(chain.client)
        t = time.perf_counter()
        reports: list[TickReport] = await tick_all(head)
        tick_ms.append((time.perf_counter() - t) * 1e3)
        ticks += 1
        await monitor.read(head.number)
        for r in reports:
            sent += r.sent
            totals.update(sent=r.sent, included=r.included, reverted=r.reverted, dropped=r.dropped,
                          replaced=r.replaced)
            errors.extend(r.errors)
        final = totals["included"] + totals["reverted"] + totals["dropped"]
        timeline.append({"at_s": round(t - w.t0, 3), "tick_ms": round(tick_ms[-1], 1), "block": head.number,
                         "sent": sum(r.sent for r in reports), "settled": sum(r.included for r in reports),
                         "shard_step_ms": [round(r.step_ms, 1) for r in reports], "mined_so_far": miner.blocks})
        if submitted is None and sent >= n:
            submitted = w.mark()
        if final >= n or time.perf_counter() > deadline:
            break
        if miner.blocks <= seen:
            await miner.next_block(seen)
        seen = miner.blocks
    included = w.mark()
    if submitted is None or final < n:
        raise RuntimeError(f"framework run did not finish in time: sent {sent} of {n}, totals {dict(totals)}, "
                           f"first errors {errors[:3]}")
    return {"submitted": submitted, "included": included, "ticks": ticks, "totals": dict(totals),
            "tick_ms_max": max(tick_ms), "tick_ms_median": median(tick_ms), "errors": errors[:5],
            "timeline": timeline,
            "monitor_blocks": len(monitor.records)}


async def run_shards_inprocess(s: Settings, run: int, n_shards: int = 1) -> dict[str, Any]:
    chain = await new_chain(s)
    cores: list[ShardCore] = []
    try:
        cores = [ShardCore(cfg) for cfg in shard_configs(s, chain, s.n, n_shards, run)]
        addresses = [a for c in cores for a in await c.start()]
        await fund_batched(chain, addresses)

        async def tick_all(head: BlockInfo) -> list[TickReport]:
            return list(await asyncio.gather(*(c.tick(head) for c in cores)))

        async with Miner(chain.url, s.block_ms / 1000) as miner:
            w = Window(chain.node.proc.pid)  # type: ignore[union-attr]
            d = await drive(chain, miner, s.n, tick_all, w)
        last = (await block_info(chain.client)).number
        ledgers = [await c.finalize(last) for c in cores]
        out = figures(s.n, d["submitted"], d["included"])
        out.update(ledger=dict(Counter(x for led in ledgers for x in led["status"])), ticks=d["ticks"],
                   tick_ms_median=d["tick_ms_median"], tick_ms_max=d["tick_ms_max"], blocks=miner.blocks,
                   errors=d["errors"], shards=len(cores), agents=len(addresses), timeline=d["timeline"],
                   rpc_batches=sum(c.stats()["rpc_batches"] for c in cores),
                   http_requests=sum(c.stats()["http_requests"] for c in cores))
        return out
    finally:
        for c in cores:
            await c.close()
        await chain.close()


def shard_pids() -> list[int]:
    return [p for p in descendants(os.getpid()) if proc_name(p).startswith("ray::ShardCore")]


async def run_shards_ray(s: Settings, run: int) -> dict[str, Any]:
    import ray

    chain = await new_chain(s)
    shards: list[Any] = []
    try:
        actor = make_actor_class(num_cpus=(os.cpu_count() or 1) / s.shards)  # fits any shard count
        t = time.perf_counter()
        shards = [actor.remote(cfg) for cfg in shard_configs(s, chain, s.n, s.shards, run)]
        addresses = [a for addrs in await asyncio.gather(*(sh.start.remote() for sh in shards)) for a in addrs]
        create_s = time.perf_counter() - t
        await fund_batched(chain, addresses)
        pids = shard_pids()

        async def tick_all(head: BlockInfo) -> list[TickReport]:
            return list(await asyncio.gather(*(sh.tick.remote(head) for sh in shards)))

        async with Miner(chain.url, s.block_ms / 1000) as miner:
            w = Window(chain.node.proc.pid, pids)  # type: ignore[union-attr]
            d = await drive(chain, miner, s.n, tick_all, w)
        last = (await block_info(chain.client)).number
        ledgers = await asyncio.gather(*(sh.finalize.remote(last) for sh in shards))
        stats = await asyncio.gather(*(sh.stats.remote() for sh in shards))
        out = figures(s.n, d["submitted"], d["included"])
        out.update(ledger=dict(Counter(x for led in ledgers for x in led["status"])), ticks=d["ticks"],
                   tick_ms_median=d["tick_ms_median"], tick_ms_max=d["tick_ms_max"], blocks=miner.blocks,
                   errors=d["errors"], shards=len(shards), shard_pids_found=len(pids), agents=len(addresses),
                   timeline=d["timeline"],
                   shard_create_s=create_s, rpc_batches=sum(x["rpc_batches"] for x in stats),
                   # CPU inside ticks per shard (all the shard's threads), against the window's figure
                   # for the shard processes as a whole: the difference is Ray's own work.
                   shard_tick_cpu_s=[x["cpu_s"] for x in stats],
                   http_requests=sum(x["http_requests"] for x in stats))
        return out
    finally:
        for sh in shards:
            try:
                await asyncio.wait_for(sh.close.remote(), timeout=10)
            except Exception:  # noqa: BLE001
                pass
            ray.kill(sh)
        await chain.close()
