"""Points (Points.sol): gamification, no deposit; a contribution still valid after `refund_wait`
earns its author a point, reports block a validation."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from contracts.mechanisms import PointsSpec

from . import BuiltinIncentiveFields, DeployContext, Mechanism, ShardParams, register_mechanism
from .stakeable import deploy_trainer


class PointsConfig(BuiltinIncentiveFields):
    type: Literal["points"]


@register_mechanism
class Points(Mechanism):
    name: ClassVar[str] = "points"
    config_cls: ClassVar[type] = PointsConfig
    contracts: ClassVar[tuple[str, ...]] = ("DataHandler", "Points", "CollaborativeTrainer")
    claims: ClassVar[str] = "points"

    async def deploy(self, ctx: DeployContext) -> Any:
        c = self.config
        return await deploy_trainer(ctx, PointsSpec(c.refund_wait, c.owner_claim_wait, c.any_address_claim_wait))

    def shard_params(self) -> ShardParams:
        c = self.config
        return ShardParams(mechanism=self.name, cost_weight=0, refund_wait=c.refund_wait,
                           owner_claim_wait=c.owner_claim_wait, any_address_claim_wait=c.any_address_claim_wait)
