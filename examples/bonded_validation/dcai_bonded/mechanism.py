"""The Python side of BondedValidation.sol: its scenario section, deploy, the parameters the shards'
agents need, and what it allows.

Every contribution posts the same `bond`; its author gets it back after `refund_wait` if the model
agrees; while the model disagrees, each challenger with a validated contribution of its own takes
`challenge_share_bps` of the bond (once per contribution); the deployer takes what is left after
`owner_claim_wait`, anyone after `any_address_claim_wait`. The agents need no code of their own:
`claims = "deposit"` says the usual refund / report / take-all claims exist, `stake` gives the flat
price and `report_share_bps` what a challenge pays, so the built-in policies price their actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from orchestrator.mechanisms import DeployContext, IncentiveConfig, Mechanism, ShardParams
from orchestrator.mechanisms.stakeable import deploy_trainer
from orchestrator.scenario_locate import field_error
from orchestrator.scenario_types import DurationS, Wei

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"


class BondedConfig(IncentiveConfig):
    """The `incentive` section of a scenario that uses this mechanism."""

    type: Literal["bonded_validation"] = Field(
        description="bonded_validation: a flat bond per contribution; challengers take a fixed share of a bad one's")
    bond: Wei = Field(10**15, description="the bond every contribution posts (wei; '0.001 ether' works)")
    challenge_share_bps: int = Field(2_500, ge=1, le=10_000,
                                     description="what one challenge of a bad contribution takes, in basis "
                                                 "points of its bond")
    refund_wait: DurationS = Field(86_400, description="before a bond can be validated back or challenged")
    owner_claim_wait: DurationS = Field(8 * 86_400, description="before the deployer may take what is left")
    any_address_claim_wait: DurationS = Field(9 * 86_400, description="before anyone may take what is left")

    @model_validator(mode="after")
    def _waits_in_order(self) -> BondedConfig:
        if not self.refund_wait <= self.owner_claim_wait <= self.any_address_claim_wait:
            blamed = "owner_claim_wait" if self.refund_wait > self.owner_claim_wait else "any_address_claim_wait"
            raise field_error((blamed,), "waits must satisfy refund_wait <= owner_claim_wait <= "
                              f"any_address_claim_wait (got {self.refund_wait}s, {self.owner_claim_wait}s, "
                              f"{self.any_address_claim_wait}s)")
        return self


@dataclass(frozen=True)
class BondedSpec:
    """Constructor arguments of BondedValidation.sol (plugs into contracts.deploy.deploy_system)."""

    refund_wait_s: int
    owner_claim_wait_s: int
    any_address_claim_wait_s: int
    bond: int
    challenge_share_bps: int
    contract: ClassVar[str] = "BondedValidation"

    def constructor(self) -> tuple[list[str], list[Any]]:
        return (["uint256"] * 5, [self.refund_wait_s, self.owner_claim_wait_s, self.any_address_claim_wait_s,
                                  self.bond, self.challenge_share_bps])


class BondedValidation(Mechanism):
    name: ClassVar[str] = "bonded_validation"
    config_cls: ClassVar[type] = BondedConfig
    contracts: ClassVar[tuple[str, ...]] = ("DataHandler", "BondedValidation", "CollaborativeTrainer")
    claims: ClassVar[str] = "deposit"  # refund, challenge (report) and take-all of a bond the trainer holds
    sources: ClassVar[tuple[Path, ...]] = (CONTRACTS_DIR,)

    async def deploy(self, ctx: DeployContext) -> Any:
        c = self.config
        return await deploy_trainer(ctx, BondedSpec(c.refund_wait, c.owner_claim_wait, c.any_address_claim_wait,
                                                    c.bond, c.challenge_share_bps))

    def shard_params(self) -> ShardParams:
        c = self.config
        return ShardParams(mechanism=self.name, cost_weight=0, stake=c.bond, refund_wait=c.refund_wait,
                           owner_claim_wait=c.owner_claim_wait, any_address_claim_wait=c.any_address_claim_wait,
                           report_share_bps=c.challenge_share_bps)
