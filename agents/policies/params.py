"""Policies' parameters as pydantic models: a misspelt key or a wrong value is refused when the
scenario is validated, at the group's `params` line, instead of killing a shard mid-run.

Every group passes `rate`, `arrival`, `burst_size` and `burst_every` (the scenario's group fields),
so every model accepts them. Durations take units ("12h", "2d"), amounts of ether too ("0.5 ether").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from contracts.units import parse_duration_s, parse_wei

from .claims import ClaimRules


def _opt(parse: Any) -> Any:
    return lambda v: None if v is None else parse(v)


Duration = Annotated[int, BeforeValidator(parse_duration_s)]
OptDuration = Annotated[int | None, BeforeValidator(_opt(parse_duration_s))]
Wei = Annotated[int, BeforeValidator(parse_wei)]
OptWei = Annotated[int | None, BeforeValidator(_opt(parse_wei))]

GWEI = 10**9


class BaseParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: float = Field(0.05, ge=0, description="contributions per second of chain time")
    arrival: Literal["poisson", "constant", "burst"] = "poisson"
    burst_size: int = Field(10, ge=1)
    burst_every: Duration = 60
    max_gap: OptDuration = Field(None, description="cap on the chain time one draw of arrivals covers "
                                 "(None: no cap; arrivals are events in chain time)")
    max_in_flight: int = Field(4, ge=1, description="transactions of this agent pending at once")


class ClaimParams(BaseParams):
    """The claim loop (agents/policies/claims.py), shared by every built-in policy."""

    refund: bool = Field(True, description="claim its own deposits back when the model agrees")
    report: bool = Field(True, description="take from others' deposits the model rejects")
    take_all: bool = Field(True, description="take what is left once the any-address window opens")
    recheck_s: OptDuration = Field(None, description="None: the refund wait, between 1 minute and 6 hours")
    report_every_s: OptDuration = Field(None, description="None: a quarter of the report window")
    give_up_s: OptDuration = Field(None, description="stop asking for its own refund this long after adding")
    take_all_grace_s: Duration = 60
    max_attempts: int = Field(5, ge=1)

    def claim_rules(self, **overrides: Any) -> ClaimRules:
        return ClaimRules(refund=self.refund, report=self.report, take_all=self.take_all,
                          recheck_s=self.recheck_s, report_every_s=self.report_every_s, give_up_s=self.give_up_s,
                          take_all_grace_s=self.take_all_grace_s, max_attempts=self.max_attempts, **overrides)
