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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import COMPILE_NOTE, RESULTS, TIP, fmt_rate, machine, median, wait_quiet  # noqa: E402
from throughput_measure import PER_SENDER, QUIET, Settings  # noqa: E402
from throughput_raw import run_raw  # noqa: E402
from throughput_shards import run_shards_inprocess, run_shards_ray  # noqa: E402
from throughput_web3 import run_web3  # noqa: E402


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


async def one_run(name: str, s: Settings, i: int, fn: Any, **kw: Any) -> dict[str, Any] | str:
    """Run i of a path: its figures, or the failure as text (one failed run does not stop the rest)."""
    if s.wait_idle > 0:
        QUIET.append(await asyncio.to_thread(wait_quiet, s.wait_idle))
    try:
        r: dict[str, Any] = await fn(s, i, **kw)
    except Exception as e:  # noqa: BLE001 - reported; the other runs still count
        print(f"    {name} run {i + 1}/{s.repeats} FAILED: {type(e).__name__}: {e}", flush=True)
        return f"{type(e).__name__}: {e}"
    extra = ""
    if "ledger" in r:
        extra = f" ledger {r['ledger']} ticks {r['ticks']}"
    elif "statuses" in r:
        extra = f" receipts {r['statuses']}"
    print(f"    {name} run {i + 1}/{s.repeats}: submitted {fmt_rate(r['submitted_tps'])} tx/s, included "
          f"{fmt_rate(r['included_tps'])} tx/s, client CPU {r['client_cpu_ms_per_tx']:.3f} ms/tx{extra}; "
          f"other processes used {r['foreign_cores']:.2f} cores meanwhile",
          flush=True)
    return r


async def repeat_paths(s: Settings, todo: list[tuple[str, str, Any, dict[str, Any]]], paths: dict[str, Any],
                       errors: dict[str, str]) -> None:
    """Run the given paths round-robin, `repeats` rounds: (a) raw, (b) in-process, (b) Ray, (a) raw,
    ... The machine's speed drifts over minutes (other tenants of the host, caches), so a path run
    in a block of its own would be compared with a ceiling taken at another moment; interleaved,
    round i of every path meets the same conditions (and the Ray cluster's own processes run
    through every path's rounds alike)."""
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, *_ in todo}
    failures: dict[str, list[str]] = {key: [] for key, *_ in todo}
    for i in range(s.repeats):
        for key, name, fn, kw in todo:
            r = await one_run(name, s, i, fn, **kw)
            if isinstance(r, str):
                failures[key].append(r)
            else:
                r["round"] = i
                runs[key].append(r)
    for key, name, _fn, _kw in todo:
        if not runs[key]:
            errors[key] = f"RuntimeError: every {name} run failed: {failures[key][0]}"
            print(f"  {key} failed: {errors[key]}", flush=True)
            continue
        paths[key] = summarize(runs[key])
        paths[key]["failed_runs"] = failures[key]


def paired_ratio(b: dict[str, Any], a: dict[str, Any], what: str) -> float | None:
    """Median over rounds of (b)/(a) for the runs of the same round."""
    a_by_round = {r["round"]: r for r in a["runs"] if "round" in r}
    ratios = [r[f"{what}_tps"] / a_by_round[r["round"]][f"{what}_tps"]
              for r in b["runs"] if r.get("round") in a_by_round]
    return median(ratios) if ratios else None


async def main_async(s: Settings) -> dict[str, Any]:
    t_start = time.perf_counter()
    load_before = os.getloadavg()[0]
    paths: dict[str, Any] = {}
    errors: dict[str, str] = {}
    print(f"throughput: n={s.n} (web3 n={s.n_web3}), {PER_SENDER} tx per sender, {s.repeats} runs per path, "
          f"blocks every {s.block_ms} ms, gas limit {s.gas_limit:,}, base fee 0, tip {TIP // 10**9} gwei", flush=True)
    print("(a) raw: pre-signed, JSON-RPC batches over one keep-alive pool; (b) framework: one ShardCore in this "
          f"process, and {s.shards} ShardCore Ray actors (as a real run); interleaved round by round", flush=True)
    todo: list[tuple[str, str, Any, dict[str, Any]]] = [("a_raw", "raw", run_raw, {})]
    if s.inprocess:
        todo.append(("b_shards_inprocess", "shards in-process", run_shards_inprocess, {}))
    ray_init_s = None
    if s.ray:
        import ray

        t = time.perf_counter()
        # A cluster of our own ("local", own temp dir): never join another Ray instance on the machine.
        ray.init(address="local", num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False,
                 configure_logging=False, log_to_driver=False, _temp_dir=tempfile.mkdtemp(prefix="dcb-ray-"))
        ray_init_s = time.perf_counter() - t
        todo.append(("b_shards_ray", "shards Ray", run_shards_ray, {}))
    try:
        await repeat_paths(s, todo, paths, errors)
    finally:
        if s.ray:
            import ray

            ray.shutdown()
    if "b_shards_ray" in paths:
        paths["b_shards_ray"]["ray_init_s"] = ray_init_s

    async def attempt(key: str, title: str, name: str, fn: Any, **kw: Any) -> None:
        print(title, flush=True)
        await repeat_paths(s, [(key, name, fn, kw)], paths, errors)

    await attempt("c_web3", "(c) web3.py ordinary path (gas estimated by web3)", "web3", run_web3, fixed_gas=False)
    if s.web3_fixed_gas:
        await attempt("c_web3_fixed_gas", "(c') web3.py with the gas limit given (no estimateGas)", "web3 fixed gas",
                      run_web3, fixed_gas=True)

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
                paired = paired_ratio(paths[key], paths["a_raw"], what)
                if paired is not None:
                    ratios[f"{prefix}_over_a_{what}_paired"] = paired
            if c:
                ratios[f"{prefix}_over_c_{what}"] = b[f"{what}_tps"] / c[f"{what}_tps"]
            if cf:
                ratios[f"{prefix}_over_c_fixed_gas_{what}"] = b[f"{what}_tps"] / cf[f"{what}_tps"]
    # Issue 15 asks 0.9 of the raw ceiling on included transactions; the submitted ratio keeps the
    # earlier 0.6 (the raw path sends pre-signed bytes: its submission is not comparable work).
    targets: dict[str, Any] = {"b_over_a_submitted_min": 0.6, "b_over_a_included_min": 0.9, "b_over_c_min": 25}
    for what in ("submitted", "included"):
        if f"b_over_a_{what}" in ratios:
            targets[f"b_over_a_{what}_met"] = ratios[f"b_over_a_{what}"] >= targets[f"b_over_a_{what}_min"]
        if f"b_over_c_{what}" in ratios:
            targets[f"b_over_c_{what}_met"] = ratios[f"b_over_c_{what}"] >= targets["b_over_c_min"]
    result = {
        "benchmark": "throughput",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "settings": {"n": s.n, "n_web3": s.n_web3, "per_sender": PER_SENDER, "repeats": s.repeats,
                     "block_ms": s.block_ms, "gas_limit": s.gas_limit, "base_fee": 0, "tip_wei": TIP,
                     "raw_batch": s.raw_batch, "raw_concurrency": s.raw_concurrency, "ray_shards": s.shards,
                     "mining": "driven: evm_mine every block_ms by a miner task, the same for every path",
                     "call": "CollaborativeTrainer.addData(10 even indices, label 1), value = max deposit",
                     "quick": s.quick, "wait_idle_s": s.wait_idle, "interleaved": True, "load_before": load_before,
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
    print(f"targets ((b)/(a) >= 0.6 submitted and 0.9 included, (b)/(c) >= 25): {verdict}")
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
