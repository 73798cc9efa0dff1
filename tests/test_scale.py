"""A bounded run of the scale benchmark (benchmarks/scale.py): 2,000 agents (10,000 with
DCAI_FULL=1) in Ray shard actors, each funded and adding one sample on a real node. Asserts what
holds on any machine: every agent funded, every transaction included, memory and phases recorded.
It runs as its own process, as `make bench` runs it, with a Ray of its own. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_bounded_scale_run(tmp_path: Path) -> None:
    agents = 10_000 if os.environ.get("DCAI_FULL") else 2_000
    out = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--agents", str(agents),
                           "--idle-ticks", "2", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["settings"]["agents"] == agents
    assert r["ledger"] == {"included": agents}
    assert r["funding"]["wallets"] == agents
    assert r["ticks"]["first_tick_sent"] == agents  # every agent sent in the first block it saw
    assert r["ticks"]["idle_tick_ms_median"] is not None
    peak = r["peak_rss_mib"]
    assert peak["driver"] > 0 and len(peak["shards"]) >= 1 and all(v > 0 for v in peak["shards"].values())
    assert r["peak_rss_mib"]["node_at_end"] > 0
    assert sum(s["agents"] for s in r["shard_stats"]) == agents
