"""Live invariant monitors on real runs: the built-ins hold over real runs of each mechanism, an
injected state change on the node (anvil_setBalance on the trainer, anvil_setStorageAt on a
weight) is caught at its block with a replay bundle saved, and invariants registered at run time
(or through the dcai.invariants entry point group) are run."""

from __future__ import annotations

import gzip
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from orchestrator.invariants import Invariant, InvariantContext, Violation, register, resolve, unregister
from orchestrator.invariants.base import ENTRY_POINT_GROUP, InvariantError, available
from orchestrator.invariants.chainview import contribution_key
from orchestrator.run import Run
from orchestrator.scenario import load_scenario_text

STAKEABLE = """
name: inv-stakeable
seed: 5
chain: {mining: driven, block_time: 12s}
dataset: {samples: 600, features: 200, avg_length: 8}
incentive: {type: stakeable, cost_weight: 1e12, refund_wait: 10m, owner_claim_wait: 20m, any_address_claim_wait: 30m}
agents:
  - {policy: honest, count: 3, funding: 1 ether, samples_per_agent: 8, rate: 0.1/s,
     params: {recheck_s: 10m, give_up_s: 1h}}
  - {policy: adversarial, name: flipper, count: 2, funding: 1 ether, samples_per_agent: 8, rate: 0.1/s,
     params: {attack: label_flip}}
  - {policy: greedy, count: 2, funding: 1 ether, samples_per_agent: 4, rate: 0.05/s}
schedule: {duration: 220 blocks}
evaluation: {every: 50 blocks, spot_checks: 1}
outputs: {progress: false}
telemetry: {mqtt: none, invariants: {max_bundles: 2}}
"""

POINTS = """
name: inv-points
seed: 2
chain: {mining: driven, block_time: 12s}
dataset: {samples: 600, features: 200, avg_length: 8}
incentive: {type: points, refund_wait: 10m, owner_claim_wait: 10m, any_address_claim_wait: 10m}
agents:
  - {policy: honest, count: 3, funding: 1 ether, samples_per_agent: 6, rate: 0.1/s,
     params: {recheck_s: 10m, give_up_s: 1h}}
  - {policy: karma_seeker, count: 2, funding: 1 ether, samples_per_agent: 6, rate: 0.1/s,
     params: {near_duplicates: 2}}
schedule: {duration: 150 blocks}
evaluation: {every: 50 blocks, spot_checks: 1}
outputs: {progress: false}
telemetry: {mqtt: none}
"""

MARKET = """
name: inv-market
seed: 9
chain: {mining: driven, block_time: 12s}
dataset: {samples: 800, features: 300, avg_length: 10}
incentive: {type: prediction_market, bounty: 1 ether, min_stake: 0.01 ether, portions: 3, min_contributions: 4}
agents:
  - {policy: honest, count: 4, funding: 1 ether, samples_per_agent: 4, rate: 0.05/s}
  - {policy: adversarial, name: flipper, count: 2, funding: 1 ether, samples_per_agent: 4, rate: 0.05/s,
     params: {attack: label_flip}}
schedule: {duration: 40 blocks}
evaluation: {every: 20 blocks, spot_checks: 1}
outputs: {progress: false}
telemetry: {mqtt: none}
"""

WEIGHTS_BASE = 0xDCA1 << 240  # SparsePerceptron: int80 weights three to a slot from this slot
INJECT_BALANCE_AT = 15  # blocks after the first check (the run settles in about 50)
INJECT_WEIGHT_AT = 30
WEIGHT_INDEX = 7
HUGE_WEIGHT = 2**78  # an int80, far beyond anything the updates of a short run can reach


class Injector(Invariant):
    """A user invariant registered at run time: it records every block it is asked about, and at
    two chosen blocks changes the node's state behind the contracts' back."""

    name = "test_injector"
    blocks: list[int] = []
    injected: dict[str, int] = {}

    async def start(self, ctx: InvariantContext, block: int) -> None:
        type(self).first = block

    async def check(self, ctx: InvariantContext, block: int) -> list[Violation]:
        cls = type(self)
        cls.blocks.append(block)
        client, system = ctx.client, ctx.system
        if "balance" not in cls.injected and block >= cls.first + INJECT_BALANCE_AT:
            balance = int(await client.call("eth_getBalance", system.trainer, "latest"), 16)
            await client.call("anvil_setBalance", system.trainer, hex(balance + 12_345))
            cls.injected["balance"] = block
        if "weight" not in cls.injected and block >= cls.first + INJECT_WEIGHT_AT:
            slot = hex(WEIGHTS_BASE + WEIGHT_INDEX // 3)
            word = int(await client.call("eth_getStorageAt", system.model, slot, "latest"), 16)
            shift = 80 * (WEIGHT_INDEX % 3)
            word = (word & ~(((1 << 80) - 1) << shift)) | (HUGE_WEIGHT << shift)
            await client.call("anvil_setStorageAt", system.model, slot, "0x" + word.to_bytes(32, "big").hex())
            cls.injected["weight"] = block
        return []


def _run(tmp_path: Path, text: str, run_id: str) -> tuple[Path, dict[str, Any]]:
    run_dir = Run(load_scenario_text(text, f"{run_id}.yaml"), results_root=tmp_path, run_id=run_id,
                  progress=False, report=False).execute()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed", summary["error"]
    return run_dir, summary


def test_injected_violations_are_caught_at_their_block_with_a_bundle(tmp_path, ray_cluster):
    register(Injector)
    Injector.blocks, Injector.injected = [], {}
    try:
        run_dir, s = _run(tmp_path, STAKEABLE, "inject")
    finally:
        unregister(Injector.name)
    inv = s["invariants"]
    assert set(inv["checked"]) == {"deposits_backed", "claims_once", "points_never_decrease", "model_within_bounds",
                                   "test_injector"}
    assert inv["not_applicable"] == ["market_conserved"] and not inv["errors"], inv
    # The user invariant registered at run time ran after every block, in order, none skipped.
    blocks = Injector.blocks
    assert len(blocks) == inv["checks"] and blocks == list(range(blocks[0], blocks[-1] + 1))
    assert blocks[-1] == inv["last_block_checked"] and len(blocks) > INJECT_WEIGHT_AT
    # The run made claims the invariants had to follow: refunds and takes were mined.
    led = pq.read_table(run_dir / "ledger.parquet").to_pydict()
    done = {(a, st) for a, st in zip(led["action"], led["status"])}
    assert ("refund", "included") in done and ("report", "included") in done, done

    by = {}
    for v in inv["violations"]:
        by.setdefault(v["invariant"], []).append(v)
    # Exactly the two injected changes, each once, each at the block whose state first holds it.
    assert set(by) == {"deposits_backed", "model_within_bounds"}, inv["violations"]
    assert len(by["deposits_backed"]) == 1 and len(by["model_within_bounds"]) == 1
    bal, wgt = by["deposits_backed"][0], by["model_within_bounds"][0]
    assert bal["block"] in (Injector.injected["balance"], Injector.injected["balance"] + 1)
    assert int(bal["details"]["difference"]) == 12_345
    assert wgt["block"] in (Injector.injected["weight"], Injector.injected["weight"] + 1)
    assert wgt["details"]["index"] == WEIGHT_INDEX and int(wgt["details"]["value"]) == HUGE_WEIGHT
    assert inv["first_violation_block"] == bal["block"]

    # A replay bundle of the run up to each violating block.
    assert [b["block"] for b in inv["bundles"]] == [bal["block"], wgt["block"]]
    for b in inv["bundles"]:
        assert b["complete"], b
        folder = run_dir / b["path"]
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["blocks"]["last"] == b["block"]
        with gzip.open(folder / "stream.jsonl.gz", "rt") as f:
            stream = [json.loads(line) for line in f]
        assert stream[-1]["number"] == b["block"] and len(stream) == b["block"]
        assert json.loads((folder / "violation.json").read_text())["block"] == b["block"]
        assert (folder / "initial_state.json.gz").stat().st_size > 0


def test_builtins_hold_over_a_points_run(tmp_path, ray_cluster):
    run_dir, s = _run(tmp_path, POINTS, "points")
    inv = s["invariants"]
    assert set(inv["checked"]) == {"deposits_backed", "claims_once", "points_never_decrease", "model_within_bounds"}
    assert inv["violations_total"] == 0 and not inv["errors"] and not inv["disabled_after_errors"], inv
    assert inv["checks"] >= 20 and not inv["bundles"]
    led = pq.read_table(run_dir / "ledger.parquet").to_pydict()
    assert any(a == "refund" and st == "included" for a, st in zip(led["action"], led["status"]))
    assert not (run_dir / "violations").exists()


def test_market_is_conserved_over_a_round(tmp_path, ray_cluster):
    _, s = _run(tmp_path, MARKET, "market")
    inv = s["invariants"]
    assert inv["checked"] == ["market_conserved"], inv
    assert inv["violations_total"] == 0 and not inv["errors"], inv
    # Checked through the settlement too (collects happen after the schedule's blocks).
    assert inv["last_block_checked"] >= s["chain"]["end_block"]
    assert s["prediction_market"]["phase_at_end"] == "COLLECT"


# ---- registry ------------------------------------------------------------------------------------


def test_contribution_key_matches_the_data_handler_layout():
    author = "0x" + "11" * 20
    key = contribution_key([3, -1], 1, 1_700_000_000, author)
    packed = (3).to_bytes(32, "big") + (2**256 - 1).to_bytes(32, "big") + (1).to_bytes(8, "big")
    packed += (1_700_000_000).to_bytes(32, "big") + bytes.fromhex("11" * 20)
    from contracts.signing import keccak256

    assert key == keccak256(packed)


def test_entry_point_invariants_are_found_and_bad_names_rejected(tmp_path, monkeypatch):
    # A real installed-distribution layout on sys.path: importlib.metadata finds its entry points.
    pkg = tmp_path / "myinv.py"
    pkg.write_text(textwrap.dedent("""
        from orchestrator.invariants import Invariant

        class AlwaysFine(Invariant):
            name = "always_fine"

            async def check(self, ctx, block):
                return []
    """))
    dist = tmp_path / "myinv-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myinv\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nalways_fine = myinv:AlwaysFine\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "always_fine" in available()
    names = [i.name for i in resolve(only=["always_fine", "deposits_backed"])]
    assert names == ["always_fine", "deposits_backed"]
    assert [i.name for i in resolve(only=["myinv:AlwaysFine"])] == ["always_fine"]
    assert "always_fine" not in [i.name for i in resolve(skip=["always_fine"])]
    with pytest.raises(InvariantError, match="unknown invariant 'nope'"):
        resolve(only=["nope"])
    with pytest.raises(InvariantError, match="cannot import"):
        resolve(extra=["myinv:Missing"])
    sys.modules.pop("myinv", None)


def test_scenario_rejects_a_bad_invariant_name():
    from orchestrator.scenario import ScenarioError

    bad = POINTS.replace("telemetry: {mqtt: none}", "telemetry: {mqtt: none, invariants: {skip: ['a b']}}")
    with pytest.raises(ScenarioError, match="invariants"):
        load_scenario_text(bad, "bad.yaml")


# ---- a double refund, made possible by resetting the data handler's record ----------------------


async def test_double_refund_after_a_storage_reset_is_caught(client, tx, compiled, dev, chain_id):
    from contracts.signing import keccak256
    from contracts.transact import Transactor
    from orchestrator.invariants import InvariantMonitor

    from conftest import MAX_DEPOSIT, deploy_small, latest_timestamp, set_next_timestamp

    system = await deploy_small(client, tx, compiled)
    trainer = system.abis["CollaborativeTrainer"]
    alice, bob = Transactor(client, dev[1], chain_id), Transactor(client, dev[2], chain_id)
    monitor = InvariantMonitor(client, system, "stakeable",
                               resolve(only=["deposits_backed", "claims_once", "points_never_decrease"]))

    async def at(t: Transactor, ts: int, data: bytes, value: int = 0) -> int:
        await set_next_timestamp(client, ts)
        receipt = await t.send(system.trainer, data, value)
        return int(receipt["blockNumber"], 16)

    t0 = await latest_timestamp(client) + 10
    good = [0, 2, 4]  # even features: the small system's model predicts 1
    assert await monitor.check(await at(alice, t0, trainer.encode("addData", good, 1), MAX_DEPOSIT)) == []
    assert await monitor.check(await at(bob, t0 + 1, trainer.encode("addData", [6, 8], 1), MAX_DEPOSIT)) == []
    key = contribution_key(good, 1, t0, dev[1].address)
    # The record's slot: contributions[key] in the data handler's first mappings' slots.
    before = None
    for position in range(4):
        slot = "0x" + keccak256(key + position.to_bytes(32, "big")).hex()
        word = await client.call("eth_getStorageAt", system.data_handler, slot, "latest")
        if int(word, 16) >> 240 & 1:  # the record's existence bit
            before = (slot, word)
            break
    assert before is not None, "the contribution's storage slot was not found"
    refund = trainer.encode("refund", good, 1, t0)
    first = await at(alice, t0 + 61, refund)
    assert await monitor.check(first) == []
    # Behind the contracts' back: the record as it was before the refund, so it can be refunded again.
    await client.call("anvil_setStorageAt", system.data_handler, before[0], before[1])
    second = await at(alice, t0 + 62, refund)
    found = await monitor.check(second)
    claims = [v for v in found if v.invariant == "claims_once"]
    # Refunded twice, twice its deposit paid out, and the data handler's claim count (reset with the
    # record) lags the claims paid.
    messages = [v.message for v in claims]
    assert messages[0] == "contribution refunded twice" and messages[2] == "the data handler counts 1 claims, 2 were paid"
    assert messages[1].endswith("paid out of a contribution that deposited " + claims[1].details["deposit"])
    assert int(claims[1].details["paid"]) == 2 * int(claims[1].details["deposit"])
    assert all(v.block == second and v.details["key"] == "0x" + key.hex() for v in claims)
    # The trainer paid the deposit twice: it holds less than the remainders it owes.
    backed = [v for v in found if v.invariant == "deposits_backed"]
    assert len(backed) == 1 and int(backed[0].details["difference"]) < 0
    # totalGoodDataCount counted both refunds: the refund count still matches, no decrease anywhere.
    assert not [v for v in found if v.invariant == "points_never_decrease"]
    assert monitor.summary()["violations_total"] == len(found) and monitor.checks == 4


def test_report_fragment_lists_violations_and_bundles_escaped():
    from orchestrator.invariants.report import report_section, violation_events

    summary = {"invariants": {"checked": ["deposits_backed"], "checks": 40, "check_s": 0.6, "violations_total": 1,
                              "first_violation_block": 17,
                              "violations": [{"block": 17, "invariant": "deposits_backed", "message": "gap <b>"}],
                              "bundles": [{"block": 17, "path": "violations/block-17", "complete": True}]}}
    page = report_section(summary)
    assert "1 violation(s)" in page and "gap &lt;b&gt;" in page and "violations/block-17" in page
    assert violation_events(summary) == [{"block": 17, "event": "invariant_violation", "invariant": "deposits_backed",
                                          "message": "gap <b>"}]
    assert "No violation" in report_section({"invariants": {"checked": [], "checks": 3}})
    assert report_section({}) == ""
