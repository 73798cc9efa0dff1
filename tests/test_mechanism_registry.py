"""Mechanisms are plugins: one registered at run time (a config section of its own, a deploy, the
parameters its shards need) joins the `incentive` union, is validated at its lines, and runs."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import pytest
from pydantic import Field

from contracts.deploy import StakeableSpec
from orchestrator.mechanisms import (
    DeployContext,
    IncentiveConfig,
    Mechanism,
    ShardParams,
    mechanisms,
    register_mechanism,
    unregister_mechanism,
)
from orchestrator.mechanisms.stakeable import deploy_trainer
from orchestrator.run import Run
from orchestrator.scenario import ScenarioError, load_scenario_text, scenario_json_schema
from orchestrator.scenario_types import DurationS, Wei

SCENARIO = """
name: quick-refund
seed: 5
chain: {mining: driven, block_time: 2s, gas_limit: 30M}
dataset: {samples: 200, features: 60, avg_length: 5}
incentive: {type: quick_refund, unit_deposit: 1e11, wait: 1h}
agents:
  - {policy: honest, count: 3, funding: 1 ether, samples_per_agent: 4, rate: 0.5/s,
     params: {recheck_s: 1800, give_up_s: 7200}}
schedule: {duration: 30 blocks}
evaluation: {every: 10 blocks, spot_checks: 1}
outputs: {progress: false}
telemetry: {mqtt: none}
"""


class QuickRefundConfig(IncentiveConfig):
    type: Literal["quick_refund"]
    unit_deposit: Wei = Field(description="cost weight of Stakeable")
    wait: DurationS = Field(description="refund after this; anyone may take bad data at twice this")


class QuickRefund(Mechanism):
    """Deposit-Refund-Take with one wait for everything: Stakeable's contract, its own parameters."""

    name: ClassVar[str] = "quick_refund"
    config_cls: ClassVar[type] = QuickRefundConfig
    contracts: ClassVar[tuple[str, ...]] = ("DataHandler", "Stakeable", "CollaborativeTrainer")

    async def deploy(self, ctx: DeployContext) -> Any:
        c = self.config
        return await deploy_trainer(ctx, StakeableSpec(c.wait, c.wait, 2 * c.wait, c.unit_deposit))

    def shard_params(self) -> ShardParams:
        c = self.config
        return ShardParams(mechanism=self.name, cost_weight=c.unit_deposit, refund_wait=c.wait,
                           owner_claim_wait=c.wait, any_address_claim_wait=2 * c.wait)


@pytest.fixture
def registered():
    register_mechanism(QuickRefund)
    try:
        yield
    finally:
        unregister_mechanism("quick_refund")


def test_unregistered_mechanism_is_refused():
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(SCENARIO, "m.yaml")
    assert info.value.issues[0].location == "incentive.type" and "quick_refund" in str(info.value)


def test_registered_mechanism_is_validated_with_its_own_fields(registered):
    assert mechanisms()["quick_refund"] is QuickRefund
    assert "QuickRefundConfig" in json.dumps(scenario_json_schema())
    sc = load_scenario_text(SCENARIO, "m.yaml")
    assert isinstance(sc.incentive, QuickRefundConfig) and sc.incentive.wait == 3600
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(SCENARIO.replace("wait: 1h", "wiat: 1h"), "m.yaml")
    issues = {i.location: i for i in info.value.issues}
    assert "incentive.wiat" in issues and "did you mean 'wait'" in issues["incentive.wiat"].message
    assert issues["incentive.wiat"].line == 6  # the key as written


def test_registered_mechanism_runs(registered, tmp_path, ray_cluster):
    run = Run(load_scenario_text(SCENARIO, "m.yaml"), results_root=tmp_path, run_id="m", progress=False, report=False)
    run_dir = run.execute()
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "completed", s["error"]
    assert s["transactions"]["by_action"]["add"].get("included") == 12
    assert s["transactions"]["by_action"]["refund"].get("included", 0) > 0  # the one-hour wait was warped over
    assert s["reconciliation"]["ok"]


def test_claims_say_what_agents_may_do_whatever_the_name():
    """Policies decide on a mechanism's `claims`, not its name: built-ins keep theirs, a plugin
    declares its own, and a style nobody knows is refused at registration and in the shards."""
    from agents.policies.base import Mechanism as AgentMechanism

    def agent_side(kind: str, claims: str = "") -> AgentMechanism:
        return AgentMechanism(kind=kind, cost_weight=0, refund_wait=60, owner_claim_wait=60,
                              any_address_claim_wait=60, claims=claims)

    assert [agent_side(k).claims for k in ("stakeable", "points", "prediction_market", "quick_refund")] == [
        "deposit", "points", "none", "deposit"]
    assert agent_side("my_karma", "points").claims == "points"
    with pytest.raises(ValueError, match="'refunds' is not one of"):
        agent_side("x", "refunds")
    assert {n: m.claims for n, m in mechanisms().items() if n in ("stakeable", "points", "prediction_market")} == {
        "stakeable": "deposit", "points": "points", "prediction_market": "none"}

    class Odd(QuickRefund):
        name: ClassVar[str] = "odd"
        claims: ClassVar[str] = "refunds"

    with pytest.raises(TypeError, match="claims 'refunds' is not one of"):
        register_mechanism(Odd)
    assert "odd" not in mechanisms()


def test_invariants_follow_the_claim_style(registered):
    """The trainer invariants apply to a plugin mechanism by its claims, not by a list of names."""
    from orchestrator.invariants import builtin  # noqa: F401 - registers the built-ins
    from orchestrator.invariants.base import claim_style

    assert claim_style("quick_refund") == "deposit" and claim_style("nope") == ""
    assert builtin.DepositsBacked.claim_styles == builtin.ClaimsOnce.claim_styles == frozenset({"deposit", "points"})
    assert builtin.DepositsBacked.mechanisms is None
