"""Where the framework's client CPU goes, and a quick side-by-side of raw and framework throughput.

Not a results benchmark: a tool for working on the shard's hot path. It runs the throughput
benchmark's path (a) (pre-signed raw) and path (b) in-process (one `ShardCore` in this process)
alternately, `--repeats` times each on fresh nodes, and prints each run and the medians; with
`--profile` the framework runs are profiled with cProfile (the whole process: shard, driver, miner)
and the top functions by own time are printed (the measured part only: ticks and block reading).

    python benchmarks/profile_shard.py --n 2000 --repeats 3
    python benchmarks/profile_shard.py --n 2000 --repeats 1 --profile --top 40
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import median  # noqa: E402
from throughput_measure import Settings  # noqa: E402
from throughput_raw import run_raw  # noqa: E402
import throughput_shards  # noqa: E402
from throughput_shards import run_shards_inprocess  # noqa: E402


def _fmt(name: str, r: dict[str, Any]) -> str:
    return (f"  {name:<10} submitted {r['submitted_tps']:7.0f} tx/s  included {r['included_tps']:7.0f} tx/s  "
            f"client CPU {r['client_cpu_ms_per_tx']:.3f} ms/tx  node CPU {r['node_cpu_ms_per_tx']:.3f} ms/tx  "
            f"others {r['foreign_cores']:.2f} cores")


async def main_async(args: argparse.Namespace) -> None:
    s = Settings(n=args.n, n_web3=0, repeats=1, block_ms=args.block_ms, gas_limit=args.gas_limit, raw_batch=250,
                 raw_concurrency=4, shards=1, ray=False, inprocess=True, web3_fixed_gas=False, out=Path(),
                 quick=True, wait_idle=0.0)
    runs: dict[str, list[dict[str, Any]]] = {"raw": [], "framework": []}
    prof = cProfile.Profile() if args.profile else None
    if prof is not None:
        # Profile the measured part only (the ticks and the driver's reading), not deploy and funding.
        drive = throughput_shards.drive

        async def profiled_drive(*a: Any, **kw: Any) -> Any:
            prof.enable()
            try:
                return await drive(*a, **kw)
            finally:
                prof.disable()

        throughput_shards.drive = profiled_drive  # type: ignore[assignment]
    print(f"n={args.n}, {args.repeats} runs per path, load average {os.getloadavg()[0]:.2f}", flush=True)
    for i in range(args.repeats):
        if not args.no_raw:
            r = await run_raw(s, i)
            runs["raw"].append(r)
            print(_fmt("raw", r), flush=True)
        r = await run_shards_inprocess(s, i, n_shards=args.shards)
        runs["framework"].append(r)
        print(_fmt("framework", r) + f"  ledger {r['ledger']}", flush=True)
        if args.timeline:
            for t in r["timeline"]:
                print(f"    {t}")
    print(f"medians (load average now {os.getloadavg()[0]:.2f}):")
    keys = ("submitted_tps", "included_tps", "client_cpu_ms_per_tx", "node_cpu_ms_per_tx", "foreign_cores")
    med = {p: {k: median([r[k] for r in rs]) for k in keys} for p, rs in runs.items() if rs}
    for p, m in med.items():
        print(_fmt(p, m))
    if "raw" in med:
        for what in ("submitted", "included"):
            print(f"  (b)/(a) {what}: {med['framework'][f'{what}_tps'] / med['raw'][f'{what}_tps']:.2f}")
    if prof is not None:
        if args.dump:
            prof.dump_stats(args.dump)
        out = io.StringIO()
        st = pstats.Stats(prof, stream=out)
        st.sort_stats(args.sort).print_stats(args.top)
        total = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]
        n_tx = args.n * args.repeats
        print(f"profiled: {total:.2f} s own time, {total / n_tx * 1e3:.3f} ms per transaction (profiler included)")
        print(out.getvalue())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--block-ms", type=int, default=100)
    p.add_argument("--gas-limit", type=int, default=60_000_000)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--shards", type=int, default=1, help="ShardCores in this process (a Ray run has one per core)")
    p.add_argument("--timeline", action="store_true", help="print each framework run's ticks")
    p.add_argument("--no-raw", action="store_true", help="only the framework path")
    p.add_argument("--top", type=int, default=35)
    p.add_argument("--dump", default=None, help="also write the raw profile to this file (pstats)")
    p.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    asyncio.run(main_async(p.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
