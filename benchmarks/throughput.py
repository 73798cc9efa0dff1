"""Transaction throughput into a real anvil node: the raw ceiling, the framework, and web3.py.

Three ways of getting the same `addData` call (10 feature indices, a label the model agrees with,
the highest deposit as value) from many senders into the node:

  (a) raw     pre-signed with `contracts.signing.sign_eip1559` before the clock starts, then sent as
              fast as possible: JSON-RPC batches over one keep-alive aiohttp pool (the ceiling);
  (b) shards  the framework: `agents.shard.ShardCore`s of honest agents (policy, wallet, ledger,
              receipts, drop/replace checks), ticked on every block with the chain monitor reading
              each block (the telemetry-equivalent bookkeeping); as Ray actors, one per core, as a
              real run hosts them (the headline), and in-process in the measuring process;
  (c) web3    web3.py's ordinary per-transaction path, synchronous: `contract.functions.addData(...)
              .build_transaction({from, nonce, value})` (web3 fills chain id, fees and, unless told,
              the gas by estimateGas), `Account.sign_transaction`, `send_raw_transaction`, with
              nonces kept locally per sender. Also measured with the gas limit given (the
              framework's calibrated limit: no estimateGas round trip): web3's best case.

Mining is the same for all: the node starts in automine for set-up (deploy, funding), then mining
is driven by a miner task that calls `evm_mine` every `--block-ms` (100 ms) until the run ends;
never automine under load. The base fee is pinned at 0 (`--base-fee 0`): full blocks would otherwise
raise it 12.5% a block and anvil would silently drop pre-signed transactions whose fee cap fell
behind, which is the fee market, not client throughput. Every path pays the same 1 gwei tip.

Figures per run: submitted tx/s (N / time to hand all N to the node), included tx/s (N / time until
the client holds every receipt), client CPU per transaction (process CPU of the process(es) doing
the work over the run, miner and receipt polling included), node CPU per transaction (anvil).
Each path runs `--repeats` times on a fresh node and system; medians are reported.

    python benchmarks/throughput.py            # default: 2-4 minutes on 2 cores
    python benchmarks/throughput.py --quick    # small smoke version
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
    MAX_DEPOSIT,
    RESULTS,
    TIP,
    Chain,
    Miner,
    descendants,
    fmt_rate,
    fresh_chain,
    fund_batched,
    machine,
    machine_busy_s,
    wait_quiet,
    median,
    proc_cpu_s,
    proc_name,
    sample,
    wait_all_receipts,
)

from agents import gas as gas_limits  # noqa: E402
from agents.shard import AgentSpec, BlockInfo, ShardConfig, ShardCore, TickReport, make_actor_class  # noqa: E402
from agents.wallet import FeeStance  # noqa: E402
from contracts.rpc import RpcClient, RpcError  # noqa: E402
from contracts.signing import LocalAccount, derive_key, sign_eip1559  # noqa: E402
from orchestrator.monitor import ChainMonitor, next_base_fee  # noqa: E402

QUIET: list[float] = []  # foreign load measured before each run
PER_SENDER = 10  # transactions per sender in every path
CONTRACTS = ("CollaborativeTrainer", "DataHandler", "Stakeable", "SparsePerceptron")


class Settings(argparse.Namespace):
    n: int
    n_web3: int
    repeats: int
    block_ms: int
    gas_limit: int
    raw_batch: int
    raw_concurrency: int
    shards: int
    ray: bool
    inprocess: bool
    web3_fixed_gas: bool
    out: Path
    quick: bool
    wait_idle: float


# ---- measuring helpers --------------------------------------------------------------------------

class Window:
    """Wall time and CPU (this process, given other pids, the node) from start to marks."""

    def __init__(self, node_pid: int, other_pids: list[int] | None = None):
        self.node_pid = node_pid
        self.other = other_pids or []
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.other0 = sum(proc_cpu_s(p) for p in self.other)
        self.node0 = proc_cpu_s(node_pid)
        self.busy0 = machine_busy_s()

    def mark(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        cpu = time.process_time() - self.cpu0 + sum(proc_cpu_s(p) for p in self.other) - self.other0
        node = proc_cpu_s(self.node_pid) - self.node0
        foreign = max(0.0, machine_busy_s() - self.busy0 - cpu - node)
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "driver_cpu_s": time.process_time() - self.cpu0,
            "node_cpu_s": node,
            "foreign_cores": foreign / wall,  # other processes' load on the machine meanwhile
        }


def figures(n: int, submitted: dict[str, float], included: dict[str, float]) -> dict[str, float]:
    return {
        "n": n,
        "submit_s": submitted["wall_s"],
        "include_s": included["wall_s"],
        "submitted_tps": n / submitted["wall_s"],
        "included_tps": n / included["wall_s"],
        "client_cpu_ms_per_tx": included["cpu_s"] / n * 1e3,
        "client_cpu_ms_per_tx_submit": submitted["cpu_s"] / n * 1e3,
        "driver_cpu_ms_per_tx": included["driver_cpu_s"] / n * 1e3,
        "node_cpu_ms_per_tx": included["node_cpu_s"] / n * 1e3,
        "foreign_cores": included["foreign_cores"],
        "quiet_before": QUIET[-1] if QUIET else None,
    }


def senders_for(n: int, tag: int, run: int) -> list[LocalAccount]:
    return [LocalAccount.from_key(derive_key("bench", tag, run, i)) for i in range((n + PER_SENDER - 1) // PER_SENDER)]


async def new_chain(s: Settings) -> Chain:
    return await fresh_chain(gas_limit=s.gas_limit, base_fee=0)


# ---- (a) pre-signed raw transactions -------------------------------------------------------------

async def run_raw(s: Settings, run: int) -> dict[str, Any]:
    chain = await new_chain(s)
    try:
        accounts = senders_for(s.n, 1, run)
        await fund_batched(chain, [a.address for a in accounts])
        abi = chain.system.abis["CollaborativeTrainer"]
        to = bytes.fromhex(chain.system.trainer[2:])
        cpu = time.process_time()
        txs = []
        for j in range(PER_SENDER):
            for a in accounts:
                if len(txs) == s.n:
                    break
                data, label = sample(j)
                txs.append(sign_eip1559(a, chain_id=chain.chain_id, nonce=j, max_priority_fee=TIP, max_fee=TIP,
                                        gas=gas_limits.add_data_gas(len(data)), to=to, value=MAX_DEPOSIT,
                                        data=abi.encode("addData", list(data), label)))
        sign_ms = (time.process_time() - cpu) / len(txs) * 1e3
        sender = RpcClient(chain.url, max_connections=s.raw_concurrency)
        rejected = 0
        try:
            async with Miner(chain.url, s.block_ms / 1000) as miner:
                w = Window(chain.node.proc.pid)  # type: ignore[union-attr]
                sem = asyncio.Semaphore(s.raw_concurrency)

                async def send(chunk: list[Any]) -> None:
                    nonlocal rejected
                    async with sem:
                        res = await sender.batch([("eth_sendRawTransaction", [t.raw_hex]) for t in chunk])
                        rejected += sum(isinstance(r, RpcError) for r in res)

                await asyncio.gather(*(send(txs[i:i + s.raw_batch]) for i in range(0, len(txs), s.raw_batch)))
                submitted = w.mark()
                receipts = await wait_all_receipts(sender, [t.hash_hex for t in txs])
                included = w.mark()
        finally:
            await sender.close()
        out = figures(len(txs), submitted, included)
        statuses = Counter("success" if r.get("status") == "0x1" else "reverted" for r in receipts)
        out.update(presign_cpu_ms_per_tx=sign_ms, rejected=rejected, statuses=dict(statuses),
                   blocks=miner.blocks, senders=len(accounts))
        return out
    finally:
        await chain.close()


# ---- (b) the framework ---------------------------------------------------------------------------

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


async def run_shards_inprocess(s: Settings, run: int) -> dict[str, Any]:
    chain = await new_chain(s)
    cores: list[ShardCore] = []
    try:
        cores = [ShardCore(cfg) for cfg in shard_configs(s, chain, s.n, 1, run)]
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
                   errors=d["errors"], shards=1, agents=len(addresses), timeline=d["timeline"],
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


# ---- (c) web3.py ---------------------------------------------------------------------------------

def web3_send(url: str, trainer: str, abi: list[dict[str, Any]], keys: list[bytes], n: int,
              gas: int | None, calls: Counter[str]) -> list[str]:
    """The ordinary web3.py loop: build, sign, send, one transaction at a time."""
    from eth_account import Account
    from web3 import HTTPProvider, Web3

    provider = HTTPProvider(url)
    make_request = provider.make_request

    def counted(method: Any, params: Any) -> Any:  # count the JSON-RPC calls web3 makes
        calls[str(method)] += 1
        return make_request(method, params)

    provider.make_request = counted  # type: ignore[method-assign]
    w3 = Web3(provider)
    contract = w3.eth.contract(address=trainer, abi=abi)
    accounts = [Account.from_key(k) for k in keys]
    nonces = [0] * len(accounts)
    hashes = []
    for i in range(n):
        k = i % len(accounts)
        acct = accounts[k]
        data, label = sample(nonces[k])
        params: dict[str, Any] = {"from": acct.address, "nonce": nonces[k], "value": MAX_DEPOSIT}
        if gas is not None:
            params["gas"] = gas
        tx = contract.functions.addData(list(data), label).build_transaction(params)
        signed = acct.sign_transaction(tx)
        hashes.append("0x" + w3.eth.send_raw_transaction(signed.raw_transaction).hex().removeprefix("0x"))
        nonces[k] += 1
    return hashes


async def run_web3(s: Settings, run: int, *, fixed_gas: bool) -> dict[str, Any]:
    chain = await new_chain(s)
    try:
        n = s.n_web3
        keys = [derive_key("bench-web3", run, int(fixed_gas), i) for i in range((n + PER_SENDER - 1) // PER_SENDER)]
        await fund_batched(chain, [LocalAccount.from_key(k).address for k in keys])
        abi = chain.compiled["CollaborativeTrainer"].abi
        gas = gas_limits.add_data_gas(len(sample(0)[0])) if fixed_gas else None
        async with Miner(chain.url, s.block_ms / 1000) as miner:
            w = Window(chain.node.proc.pid)  # type: ignore[union-attr]
            calls: Counter[str] = Counter()
            hashes = await asyncio.to_thread(web3_send, chain.url, chain.system.trainer, abi, keys, n, gas, calls)
            submitted = w.mark()
            receipts = await wait_all_receipts(chain.client, hashes)
            included = w.mark()
        out = figures(n, submitted, included)
        statuses = Counter("success" if r.get("status") == "0x1" else "reverted" for r in receipts)
        gas_used = sorted(int(r["gasUsed"], 16) for r in receipts)
        out.update(statuses=dict(statuses), blocks=miner.blocks, senders=len(keys),
                   rpc_calls_per_tx=sum(calls.values()) / n, rpc_calls_by_method={k: v / n for k, v in calls.items()},
                   gas_limit="given: " + str(gas) if gas else "estimated by web3 (eth_estimateGas)",
                   gas_used_max=gas_used[-1])
        return out
    finally:
        await chain.close()


# ---- the whole benchmark -------------------------------------------------------------------------

def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ["submitted_tps", "included_tps", "client_cpu_ms_per_tx", "client_cpu_ms_per_tx_submit",
            "driver_cpu_ms_per_tx", "node_cpu_ms_per_tx", "submit_s", "include_s", "foreign_cores"]
    out: dict[str, Any] = {"median": {k: median([r[k] for r in runs]) for k in keys},
                           "min": {k: min(r[k] for r in runs) for k in ("submitted_tps", "included_tps")},
                           "max": {k: max(r[k] for r in runs) for k in ("submitted_tps", "included_tps")},
                           "n": runs[0]["n"], "runs": runs}
    if "presign_cpu_ms_per_tx" in runs[0]:
        out["median"]["presign_cpu_ms_per_tx"] = median([r["presign_cpu_ms_per_tx"] for r in runs])
    return out


def line(name: str, summary: dict[str, Any]) -> str:
    m = summary["median"]
    return (f"  {name:<26} n={summary['n']:>6}  submitted {fmt_rate(m['submitted_tps']):>6} tx/s  "
            f"included {fmt_rate(m['included_tps']):>6} tx/s  client CPU {m['client_cpu_ms_per_tx']:.3f} ms/tx  "
            f"node CPU {m['node_cpu_ms_per_tx']:.3f} ms/tx  others {m['foreign_cores']:.2f} cores  "
            f"(submitted {fmt_rate(summary['min']['submitted_tps'])}-{fmt_rate(summary['max']['submitted_tps'])}, "
            f"included {fmt_rate(summary['min']['included_tps'])}-{fmt_rate(summary['max']['included_tps'])})")


async def repeat(name: str, s: Settings, fn: Any, **kw: Any) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    failures: list[str] = []
    for i in range(s.repeats):
        if s.wait_idle > 0:
            QUIET.append(await asyncio.to_thread(wait_quiet, s.wait_idle))
        try:
            r = await fn(s, i, **kw)
        except Exception as e:  # noqa: BLE001 - one failed run is reported, the others still count
            print(f"    {name} run {i + 1}/{s.repeats} FAILED: {type(e).__name__}: {e}", flush=True)
            failures.append(f"{type(e).__name__}: {e}")
            continue
        runs.append(r)
        extra = ""
        if "ledger" in r:
            extra = f" ledger {r['ledger']} ticks {r['ticks']}"
        elif "statuses" in r:
            extra = f" receipts {r['statuses']}"
        print(f"    {name} run {i + 1}/{s.repeats}: submitted {fmt_rate(r['submitted_tps'])} tx/s, included "
              f"{fmt_rate(r['included_tps'])} tx/s, client CPU {r['client_cpu_ms_per_tx']:.3f} ms/tx{extra}; "
              f"other processes used {r['foreign_cores']:.2f} cores meanwhile",
              flush=True)
    if not runs:
        raise RuntimeError(f"every {name} run failed: {failures[0]}")
    out = summarize(runs)
    out["failed_runs"] = failures
    return out


async def main_async(s: Settings) -> dict[str, Any]:
    t_start = time.perf_counter()
    paths: dict[str, Any] = {}
    errors: dict[str, str] = {}
    print(f"throughput: n={s.n} (web3 n={s.n_web3}), {PER_SENDER} tx per sender, {s.repeats} runs per path, "
          f"blocks every {s.block_ms} ms, gas limit {s.gas_limit:,}, base fee 0, tip {TIP // 10**9} gwei", flush=True)

    async def attempt(key: str, title: str, name: str, fn: Any, **kw: Any) -> None:
        print(title, flush=True)
        try:
            paths[key] = await repeat(name, s, fn, **kw)
        except Exception as e:  # noqa: BLE001 - a broken path is reported; the others still run
            errors[key] = f"{type(e).__name__}: {e}"
            print(f"  {key} failed: {errors[key]}", flush=True)

    await attempt("a_raw", "(a) raw: pre-signed, JSON-RPC batches over one keep-alive pool", "raw", run_raw)
    if s.inprocess:
        await attempt("b_shards_inprocess", "(b) framework, one ShardCore in this process", "shards in-process",
                      run_shards_inprocess)
    await attempt("c_web3", "(c) web3.py ordinary path (gas estimated by web3)", "web3", run_web3, fixed_gas=False)
    if s.web3_fixed_gas:
        await attempt("c_web3_fixed_gas", "(c') web3.py with the gas limit given (no estimateGas)", "web3 fixed gas",
                      run_web3, fixed_gas=True)
    if s.ray:
        import ray

        t = time.perf_counter()
        # A cluster of our own ("local", own temp dir): never join another Ray instance on the machine.
        ray.init(address="local", num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False,
                 configure_logging=False, log_to_driver=False, _temp_dir=tempfile.mkdtemp(prefix="dcb-ray-"))
        ray_init_s = time.perf_counter() - t
        try:
            await attempt("b_shards_ray", f"(b) framework, {s.shards} ShardCore Ray actors (as a real run)",
                          "shards Ray", run_shards_ray)
            if "b_shards_ray" in paths:
                paths["b_shards_ray"]["ray_init_s"] = ray_init_s
        finally:
            ray.shutdown()

    headline = "b_shards_ray" if "b_shards_ray" in paths else "b_shards_inprocess"
    ratios: dict[str, float] = {}
    a = paths.get("a_raw", {}).get("median")
    c = paths.get("c_web3", {}).get("median")
    cf = paths.get("c_web3_fixed_gas", {}).get("median")
    for key in ("b_shards_ray", "b_shards_inprocess"):
        if key not in paths:
            continue
        b = paths[key]["median"]
        prefix = "b" if key == headline else key
        for what in ("submitted", "included"):
            if a:
                ratios[f"{prefix}_over_a_{what}"] = b[f"{what}_tps"] / a[f"{what}_tps"]
            if c:
                ratios[f"{prefix}_over_c_{what}"] = b[f"{what}_tps"] / c[f"{what}_tps"]
            if cf:
                ratios[f"{prefix}_over_c_fixed_gas_{what}"] = b[f"{what}_tps"] / cf[f"{what}_tps"]
    targets: dict[str, Any] = {"b_over_a_min": 0.6, "b_over_c_min": 25}
    for what in ("submitted", "included"):
        if f"b_over_a_{what}" in ratios:
            targets[f"b_over_a_{what}_met"] = ratios[f"b_over_a_{what}"] >= 0.6
        if f"b_over_c_{what}" in ratios:
            targets[f"b_over_c_{what}_met"] = ratios[f"b_over_c_{what}"] >= 25
    result = {
        "benchmark": "throughput",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "settings": {"n": s.n, "n_web3": s.n_web3, "per_sender": PER_SENDER, "repeats": s.repeats,
                     "block_ms": s.block_ms, "gas_limit": s.gas_limit, "base_fee": 0, "tip_wei": TIP,
                     "raw_batch": s.raw_batch, "raw_concurrency": s.raw_concurrency, "ray_shards": s.shards,
                     "mining": "driven: evm_mine every block_ms by a miner task, the same for every path",
                     "call": "CollaborativeTrainer.addData(10 even indices, label 1), value = max deposit",
                     "quick": s.quick, "wait_idle_s": s.wait_idle,
                     "contracts": COMPILE_NOTE or ["compiled from the source tree"]},
        "headline_framework_path": headline if headline in paths else None,
        "paths": paths,
        "path_errors": errors,
        "ratios": ratios,
        "targets": targets,
        "wall_s": time.perf_counter() - t_start,
    }
    print()
    print("medians:")
    names = {"a_raw": "(a) raw pre-signed", "b_shards_inprocess": "(b) shards in-process",
             "b_shards_ray": "(b) shards Ray actors", "c_web3": "(c) web3 ordinary",
             "c_web3_fixed_gas": "(c') web3 gas given"}
    for k, v in paths.items():
        print(line(names[k], v))
    for k, e in errors.items():
        print(f"  {names[k]:<26} FAILED: {e}")
    print(f"headline framework path: {result['headline_framework_path']}")
    for k, v in ratios.items():
        print(f"  {k:<48} {v:8.2f}")
    verdict = ", ".join(f"{k.removesuffix('_met')} {'met' if v else 'NOT met'}"
                        for k, v in targets.items() if k.endswith("_met"))
    print(f"targets ((b)/(a) >= 0.6, (b)/(c) >= 25): {verdict}")
    print(f"total {result['wall_s']:.0f} s")
    return result


def parse(argv: list[str] | None = None) -> Settings:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=None, help="transactions per run for (a) and (b) (default 6000)")
    p.add_argument("--n-web3", type=int, default=None, help="transactions per run for (c) (default 800)")
    p.add_argument("--repeats", type=int, default=None, help="runs per path (default 5)")
    p.add_argument("--block-ms", type=int, default=100, help="driven block interval")
    p.add_argument("--gas-limit", type=int, default=60_000_000, help="block gas limit (about 450 adds)")
    p.add_argument("--raw-batch", type=int, default=250)
    p.add_argument("--raw-concurrency", type=int, default=4)
    p.add_argument("--shards", type=int, default=None, help="Ray shards (default: one per core)")
    p.add_argument("--no-ray", dest="ray", action="store_false", help="skip the Ray-actor framework path")
    p.add_argument("--no-inprocess", dest="inprocess", action="store_false", help="skip the in-process shard path")
    p.add_argument("--no-web3-fixed-gas", dest="web3_fixed_gas", action="store_false")
    p.add_argument("--quick", action="store_true", help="small and fast (smoke test)")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                   help="before each run wait up to S seconds for other processes to go quiet (shared machines)")
    p.add_argument("--out", type=Path, default=None,
                   help="default: benchmarks/results/throughput.json (--quick: a temporary file)")
    s = p.parse_args(argv, namespace=Settings())
    s.n = s.n or (1000 if s.quick else 6000)
    s.n_web3 = s.n_web3 or (100 if s.quick else 800)
    s.repeats = s.repeats or (1 if s.quick else 5)
    s.shards = s.shards or max(1, os.cpu_count() or 1)
    if s.out is None:
        s.out = Path(tempfile.mkdtemp(prefix="dcai-bench-")) / "throughput.json" if s.quick else RESULTS / "throughput.json"
    return s


def main(argv: list[str] | None = None) -> int:
    s = parse(argv)
    result = asyncio.run(main_async(s))
    s.out.parent.mkdir(parents=True, exist_ok=True)
    s.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written {s.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
