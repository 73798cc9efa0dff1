"""Deposit, Refund and Take (Stakeable.sol): a deposit with each contribution, refunded once the
model still agrees after `refund_wait`, taken by reporters (owner, then anyone) otherwise."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from contracts.deploy import StakeableSpec, deploy_system

from . import BuiltinIncentiveFields, DeployContext, Mechanism, ShardParams, register_mechanism


class StakeableConfig(BuiltinIncentiveFields):
    type: Literal["stakeable"] = Field(
        "stakeable", description="stakeable: Deposit, Refund and Take; points: gamification (karma), no "
        "deposit; prediction_market: a bounty paid against a committed test set (one round per run)")


async def deploy_trainer(ctx: DeployContext, incentive_spec: Any) -> Any:
    """The CollaborativeTrainer system with `incentive_spec` as its incentive contract."""
    sc = ctx.scenario
    return await deploy_system(ctx.client, ctx.tx, ctx.compiled, ctx.model_spec, incentive_spec,
                               gas_limit=sc.chain.gas_limit, name=sc.name, description=sc.description,
                               encoder="none")


@register_mechanism
class Stakeable(Mechanism):
    name: ClassVar[str] = "stakeable"
    config_cls: ClassVar[type] = StakeableConfig
    contracts: ClassVar[tuple[str, ...]] = ("DataHandler", "Stakeable", "CollaborativeTrainer")

    async def deploy(self, ctx: DeployContext) -> Any:
        c = self.config
        return await deploy_trainer(ctx, StakeableSpec(c.refund_wait, c.owner_claim_wait, c.any_address_claim_wait,
                                                       c.cost_weight))

    def shard_params(self) -> ShardParams:
        c = self.config
        return ShardParams(mechanism=self.name, cost_weight=c.cost_weight, refund_wait=c.refund_wait,
                           owner_claim_wait=c.owner_claim_wait, any_address_claim_wait=c.any_address_claim_wait)
