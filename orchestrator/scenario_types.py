"""The building blocks of the scenario schema: unit-aware field types, the strict base model, name
rules and the numeric limits the rest of the stack imposes (kept apart so scenario.py stays one
screenful per section)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from orchestrator.issues import quote
from orchestrator.units import parse_blocks, parse_duration_s, parse_gas, parse_rate, parse_wei

if TYPE_CHECKING:  # the scenario model imports this module
    from orchestrator.scenario import Scenario

__all__ = ["BUNDLED_SAMPLES", "MAX_CHAIN_ID", "MAX_SEED", "Blocks", "DurationS", "Gas", "Rate", "StrictModel", "Wei",
           "agent_rows", "check_name"]

# --------------------------------------------------------------------------
# Unit-aware field types


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


class StrictModel(BaseModel):
    # strict: YAML `count: true` or `count: "5"` is a mistake, not a number.
    # allow_inf_nan: `.nan` would slip past every range check.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

# scikit-learn's random_state (initial training) takes 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1
# EIP-2294: floor(MAX_UINT64 / 2) - 36, so that a legacy signature's v = 2 * chain_id + 36 fits a
# uint64 (anvil stores the chain id as one).
MAX_CHAIN_ID = 2**63 - 37
# Rows of the bundled datasets (their sizes are fixed); synthetic_sparse has dataset.samples rows and a
# user's file is counted by orchestrator.prechecks.
BUNDLED_SAMPLES = {"breast_cancer": 569, "digits": 1797, "tictactoe": 958}


# Names end up in result folder and file names, hence the conservative set.
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
POLICY_PATTERN = re.compile(rf"{IDENT}|{IDENT}(?:\.{IDENT})*:{IDENT}")
ENV_NAME_PATTERN = re.compile(IDENT)
HEX_KEY_PATTERN = re.compile(r"(?:0x)?[0-9a-fA-F]{64}")


def check_name(value: str, what: str) -> str:
    """A name that ends up in folder and file names."""
    if not re.fullmatch(NAME_PATTERN, value):
        raise ValueError(
            f"{what} {quote(value)} must be 1-64 characters from letters, digits, '_', '.', '-'"
        )
    if set(value) == {"."}:
        raise ValueError(f"{what} {value!r} is not usable as a folder name")
    return value


def agent_rows(n: int, init_train_fraction: float, test_fraction: float) -> int:
    """Samples left for the agents out of `n`: the rounding of `datasets.split`."""
    return n - max(1, int(round(n * test_fraction))) - max(1, int(round(n * init_train_fraction)))


def agents_shortfall(scenario: Scenario, n: int, what: str) -> tuple[tuple[str | int, ...], str] | None:
    """More agents than samples left for them (agents would share the same samples): the location of
    the count of the group that passes the number, and the message; None when they fit."""
    ds = scenario.dataset
    rows = agent_rows(n, ds.init_train_fraction, ds.test_fraction)
    total = 0
    for i, group in enumerate(scenario.agents):
        total += group.count
        if total > rows:
            return ("agents", i, "count"), (
                f"{sum(g.count for g in scenario.agents)} agents in all, but {what} leaves {max(rows, 0)} samples "
                f"for agents ({n} samples, less test_fraction and init_train_fraction); lower the counts or use "
                "more samples")
    return None
