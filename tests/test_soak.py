"""A bounded soak (benchmarks/soak.py with 6,000 transactions): real honest agents in Ray shard actors
on a real node, driven blocks. Asserts what must hold however fast the machine is: every transaction
final and included, the ledger reconciled with the chain to the wei, and memory sampled for every
process (driver, each shard actor, Ray's own processes, anvil). No timing is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import soak  # noqa: E402

pytestmark = pytest.mark.soak

N = 6_000


async def test_bounded_soak(tmp_path: Path) -> None:
    s = soak.parse(["--tx", str(N), "--sample-s", "0.5", "--out", str(tmp_path / "soak.json")])
    r = await soak.soak(s)

    assert r["finished"], r["errors"]
    assert r["errors"] == []
    assert r["final"] == N and r["pending_left"] == 0
    assert r["statuses"] == {"included": N}
    assert r["actions"] == {"add": N // 2, "refund": N // 2}
    assert r["reconciliation"]["ok"] and r["reconciliation"]["agents"] == r["settings"]["agents"]

    names = set(r["memory"])
    assert {"driver", "anvil", "shard-0", "shard-1"} <= names
    assert any(n.startswith("ray:raylet") for n in names) and any(n.startswith("ray:gcs_server") for n in names)
    for name in ("driver", "anvil", "shard-0", "shard-1"):
        assert r["memory"][name]["samples"] >= 3, (name, r["memory"][name])
        assert r["memory"][name]["peak_mib"] > 0
        assert name in r["memory_verdict"]
    # every sample carries how far the run was, so growth can be put per transaction
    finals = [x["final"] for x in r["memory_samples"]]
    assert finals == sorted(finals) and finals[-1] == N

    assert sum(w["tx"] for w in r["windows"]) == N
    for w in r["windows"]:
        assert w["latency_blocks_p50"] >= 1  # included at the earliest in the block after the one seen at send
        assert w["latency_s_p50"] > 0 and w["rss_mib"]["anvil"] > 0
    assert set(r["latency_trend"]) >= {"latency_s_p50_per_10k_tx", "latency_blocks_p50_per_10k_tx"}
