"""Chain chaos from the scenario, each event observed on the chain and recorded with its block."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from orchestrator.run import Run
from orchestrator.scenario import ScenarioError, load_scenario_text

SCENARIO = """
name: chaos-test
seed: 4
chain: {mining: driven, block_time: 2s, gas_limit: 30M}
dataset: {samples: 400, features: 100, avg_length: 6}
incentive: {cost_weight: 1e12, refund_wait: 1h, owner_claim_wait: 2h, any_address_claim_wait: 3h}
agents:
  - {policy: honest, count: 6, funding: 1 ether, samples_per_agent: 30, rate: 0.25/s, arrival: constant,
     params: {max_in_flight: 3, recheck_s: 1800, give_up_s: 7200}}
schedule:
  duration: 60 blocks
  phases: [{at: 3 blocks, load: 2}]
  chaos:
    - {at: 3 blocks, event: drop_pending, share: 0.5}
    - {at: 4 blocks, event: base_fee_shock, factor: 10}
    - {at: 6 blocks, event: gas_limit, gas_limit: 20M}
    - {at: 8 blocks, event: block_time, block_time: 5s}
    - {at: 12 blocks, event: pause_mining, blocks: 3}
    - {at: 16 blocks, event: reorg, blocks: 2}
evaluation: {every: 5 blocks, spot_checks: 2}
outputs: {progress: false}
"""


@pytest.fixture(scope="module")
def chaos_run(tmp_path_factory):
    import ray

    started = not ray.is_initialized()
    run_dir = Run(load_scenario_text(SCENARIO, "chaos.yaml"), results_root=tmp_path_factory.mktemp("chaos"),
                  run_id="c", progress=False).execute()
    if started and ray.is_initialized():
        ray.shutdown()
    return run_dir


def test_every_event_is_recorded_with_its_block(chaos_run):
    s = json.loads((chaos_run / "summary.json").read_text())
    assert s["status"] == "completed", s["error"]
    events = {e["event"]: e for e in s["chain"]["chaos_events"]}
    assert set(events) >= {"base_fee_shock", "gas_limit", "block_time", "drop_pending", "pause_mining",
                           "resume_mining", "reorg"}
    start = s["chain"]["start_block"]
    for name in ("base_fee_shock", "gas_limit", "block_time", "drop_pending", "pause_mining"):
        assert events[name]["block"] - start == events[name]["offset"]


def test_events_are_observed_on_chain(chaos_run):
    s = json.loads((chaos_run / "summary.json").read_text())
    events = {e["event"]: e for e in s["chain"]["chaos_events"]}
    blocks = pq.read_table(chaos_run / "blocks.parquet").to_pydict()
    by_number = {n: i for i, n in enumerate(blocks["number"])}

    shock = events["base_fee_shock"]
    nxt = by_number[shock["block"] + 1]
    assert int(blocks["base_fee"][nxt]) == shock["base_fee"]  # the next block charged the shocked fee
    assert s["base_fee"]["eip1559_deviations"] >= 1  # and the monitor flagged it as off the EIP-1559 path

    gl = events["gas_limit"]
    assert all(blocks["gas_limit"][by_number[n]] == 20_000_000 for n in blocks["number"] if n > gl["block"])

    bt = events["block_time"]
    later = [n for n in blocks["number"] if n > bt["block"] + 1 and n - 1 in by_number]
    gaps = {blocks["timestamp"][by_number[n]] - blocks["timestamp"][by_number[n - 1]] for n in later}
    assert 5 in gaps and 2 not in gaps - {max(gaps)}  # 5 s blocks after the change (warps may be longer)

    drop = events["drop_pending"]
    assert drop["pool"] > 0 and drop["dropped"] > 0
    ledger = pq.read_table(chaos_run / "ledger.parquet").to_pydict()
    chaos_dropped = [r for r in ledger["reason"] if "chaos" in r]
    assert len(chaos_dropped) == drop["dropped"]

    pause, resume = events["pause_mining"], events["resume_mining"]
    assert resume["block"] == pause["block"]  # no block was mined while paused

    reorg = events["reorg"]
    assert reorg["depth"] == 2
    assert blocks["number"] == sorted(set(blocks["number"]))  # replaced blocks were read again, once


def test_books_balance_after_chaos(chaos_run):
    s = json.loads((chaos_run / "summary.json").read_text())
    assert s["transactions"]["all_final"]
    assert s["reconciliation"]["ok"], s["reconciliation"]["mismatches"]


def test_chaos_against_an_external_node_is_refused():
    text = SCENARIO.replace("chain: {mining: driven, block_time: 2s, gas_limit: 30M}",
                            "chain: {rpc_url: 'http://127.0.0.1:9', block_time: 2s}")
    with pytest.raises(ScenarioError, match="needs anvil_dropTransaction, which only a node this run manages"):
        load_scenario_text(text, "chaos.yaml")
