"""Chaos events are plugins: a tiny event registered at run time (one class, one registration)
joins the scenario schema and validation, and runs on the real node like a built-in."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import pyarrow.parquet as pq
import pytest

from orchestrator.chaos import ChaosContext, ChaosEvent, chaos_events, register_chaos, unregister_chaos
from orchestrator.run import Run
from orchestrator.scenario import ScenarioError, load_scenario_text, scenario_json_schema
from orchestrator.schema_types import Wei

FEE = 77 * 10**9

SCENARIO = """
name: chaos-plugin
seed: 3
chain: {{mining: driven, block_time: 2s, gas_limit: 30M{extra}}}
dataset: {{samples: 200, features: 60, avg_length: 5}}
incentive: {{cost_weight: 1e12, refund_wait: 1h, owner_claim_wait: 2h, any_address_claim_wait: 3h}}
agents:
  - {{policy: honest, count: 3, funding: 1 ether, samples_per_agent: 4, rate: 0.5/s,
     params: {{recheck_s: 1800, give_up_s: 7200}}}}
schedule:
  duration: 16 blocks
  chaos:
    - {{at: 4 blocks, event: next_base_fee, base_fee: 77 gwei}}
evaluation: {{every: 8 blocks, spot_checks: 1}}
outputs: {{progress: false}}
telemetry: {{mqtt: none}}
"""


class NextBaseFee(ChaosEvent):
    """Sets the next block's base fee to a given value."""

    event: Literal["next_base_fee"]
    base_fee: Wei
    needs: ClassVar[tuple[str, ...]] = ("base_fee_control",)
    primitive: ClassVar[str] = "anvil_setNextBlockBaseFeePerGas"

    async def apply(self, ctx: ChaosContext) -> dict[str, Any]:
        await ctx.client.call("anvil_setNextBlockBaseFeePerGas", hex(self.base_fee))
        return {"base_fee": self.base_fee}


@pytest.fixture
def registered():
    register_chaos(NextBaseFee)
    try:
        yield
    finally:
        unregister_chaos("next_base_fee")


def test_unregistered_event_is_refused_at_its_line():
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(SCENARIO.format(extra=""), "plugin.yaml")
    issue = info.value.issues[0]
    assert issue.location == "schedule.chaos[0]" and issue.line == 13, str(info.value)
    assert "next_base_fee" in issue.message


def test_registered_event_joins_schema_and_validation(registered):
    assert chaos_events()["next_base_fee"] is NextBaseFee
    assert "NextBaseFee" in json.dumps(scenario_json_schema())
    sc = load_scenario_text(SCENARIO.format(extra=""), "plugin.yaml")
    assert isinstance(sc.schedule.chaos[0], NextBaseFee) and sc.schedule.chaos[0].base_fee == FEE
    # Its own fields are checked where they are written.
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(SCENARIO.format(extra="").replace("base_fee: 77 gwei", "base_fee: lots"), "plugin.yaml")
    assert info.value.issues[0].location == "schedule.chaos[0].base_fee", str(info.value)
    # And the capability it declares keeps it off a node that cannot do it.
    external = SCENARIO.format(extra="").replace("mining: driven, ", "rpc_url: 'http://127.0.0.1:9', ")
    with pytest.raises(ScenarioError, match="node capability 'base_fee_control'"):
        load_scenario_text(external, "plugin.yaml")


def test_registered_event_runs_on_the_node(registered, tmp_path, ray_cluster):
    sc = load_scenario_text(SCENARIO.format(extra=""), "plugin.yaml")
    run_dir = Run(sc, results_root=tmp_path, run_id="p", progress=False).execute()
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "completed", s["error"]
    ev = next(e for e in s["chain"]["chaos_events"] if e["event"] == "next_base_fee")
    assert ev["offset"] == 4 and ev["base_fee"] == FEE
    blocks = pq.read_table(run_dir / "blocks.parquet").to_pydict()
    after = blocks["number"].index(ev["block"] + 1)
    assert int(blocks["base_fee"][after]) == FEE  # the very next block charged it
