"""What taking in the public list costs the claim loops of one shard: this tree's ClaimLoop against
a baseline revision's, side by side in one process.

Every agent of a shard takes in every public contribution once its refund wait has passed (the
AddData logs of all shards). With `report` and `take_all` off (the soak's `--refunds-only`) nothing
of others' can be claimed, and the loop now skips the walk; with them on it still schedules each
entry (by design: each agent keeps its own view). No node: observations are built by hand, as a
shard's ticks would make them (agents stepped every block, contributions arriving at a steady rate).

    python benchmarks/claim_ingest.py                       # against e2428c8 (before this change)
    python benchmarks/claim_ingest.py --baseline e2428c8 --agents 2500 --per-block 200 --blocks 60
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.policies.base import Mechanism, Observation, PublicContribution  # noqa: E402
from agents.policies.claims import ClaimLoop, ClaimRules  # noqa: E402
from agents.window import Window  # noqa: E402

MECH = Mechanism(kind="stakeable", cost_weight=1, refund_wait=30, owner_claim_wait=8 * 86_400,
                 any_address_claim_wait=9 * 86_400)


def baseline_loop(rev: str) -> Any:
    """The ClaimLoop class of `agents/policies/claims.py` at git revision `rev`."""
    src = subprocess.run(["git", "show", f"{rev}:agents/policies/claims.py"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    mod = types.ModuleType("agents.policies._claims_baseline")
    mod.__package__ = "agents.policies"
    sys.modules[mod.__name__] = mod
    exec(compile(src, f"{rev}:claims.py", "exec"), mod.__dict__)  # noqa: S102 - our own file at a revision
    return mod


def run(loop_cls: Any, rules_cls: Any, refunds_only: bool, a: argparse.Namespace, window: bool) -> float:
    """Seconds per block for every agent to take in the new entries (median over the measured blocks)."""
    rules = rules_cls(report=not refunds_only, take_all=not refunds_only)
    loops = [loop_cls(rules) for _ in range(a.agents)]
    public: Any = Window() if window else []
    per_block = []
    t0 = 1_000_000
    for b in range(a.blocks):
        now = t0 + b
        for k in range(a.per_block):
            j = b * a.per_block + k
            public.append(PublicContribution(f"0x{j % 5000:040x}", (j % 1000, 2), 1, now, 10**15, b, f"0x{j:064x}",
                                             *([j] if window else [])))
        start = time.perf_counter()
        for n, loop in enumerate(loops):
            obs = Observation(block=b, time=now, base_fee=0, block_time=1, mechanism=MECH, last_update=0,
                              address=f"0x{n:040x}", in_flight=0, spent=0, contributions=[], public=public)
            loop.next_moment(obs)
        if now - t0 > MECH.refund_wait + 2:  # entries are being taken in
            per_block.append(time.perf_counter() - start)
    return statistics.median(per_block)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", default="e2428c8", help="git revision of the baseline claims.py")
    p.add_argument("--agents", type=int, default=2500, help="agents in the shard (the soak: 5,000 over 2 shards)")
    p.add_argument("--per-block", type=int, default=200, help="contributions per block (every shard sees all)")
    p.add_argument("--blocks", type=int, default=45)
    a = p.parse_args()
    old = baseline_loop(a.baseline)
    print(f"{a.agents} agents, {a.per_block} contributions per block, refund wait {MECH.refund_wait} blocks; "
          f"median ms per block over blocks past the wait (baseline {a.baseline} vs this tree)")
    for refunds_only in (True, False):
        base = run(old.ClaimLoop, old.ClaimRules, refunds_only, a, window=False)
        new = run(ClaimLoop, ClaimRules, refunds_only, a, window=True)
        what = "refunds only (report, take_all off)" if refunds_only else "report and take-all on"
        print(f"  {what:<38} baseline {base * 1e3:8.1f} ms   now {new * 1e3:8.1f} ms   ratio {new / base:.3f}")


if __name__ == "__main__":
    main()
