"""Field types shared by every part of the scenario schema: unit-aware numbers and the strict base
model. Their own module so that registries (chaos events, mechanisms) can declare fields without
importing the scenario module that assembles them."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from orchestrator.units import parse_blocks, parse_duration_s, parse_gas, parse_rate, parse_wei


def _unit_schema(kind: str, help_text: str) -> WithJsonSchema:
    # The validated value is a number, but the file may hold a string with a
    # unit; the published schema has to accept both or editors flag "1d".
    return WithJsonSchema(
        {"anyOf": [{"type": kind, "minimum": 0}, {"type": "string"}], "description": help_text},
        mode="validation",
    )


Wei = Annotated[
    int,
    BeforeValidator(parse_wei),
    _unit_schema("integer", "wei, or a string with a unit: '10 ether', '2 gwei', '100 wei'"),
]
DurationS = Annotated[
    int,
    BeforeValidator(parse_duration_s),
    _unit_schema("integer", "seconds, or a string with a unit: '30s', '5m', '2h', '1.5d', '1w'"),
]
Blocks = Annotated[
    int,
    BeforeValidator(parse_blocks),
    _unit_schema("integer", "a number of blocks: 600 or '600 blocks'"),
]
Gas = Annotated[
    int,
    BeforeValidator(parse_gas),
    _unit_schema("integer", "gas: 30000000, '30M', '500k'"),
]
Rate = Annotated[
    float,
    BeforeValidator(parse_rate),
    _unit_schema("number", "events per second of chain time, or '2/min', '12/h', '0.2/s'"),
]


class Strict(BaseModel):
    # strict: YAML `count: true` or `count: "5"` is a mistake, not a number.
    # allow_inf_nan: `.nan` would slip past every range check.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
