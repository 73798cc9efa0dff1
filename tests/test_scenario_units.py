"""The unit parsers of scenario values: wei, durations, blocks, gas and rates, and what they refuse."""

from __future__ import annotations

import re

import pytest

from orchestrator.units import parse_blocks, parse_duration_s, parse_gas, parse_rate, parse_wei

from scenario_helpers import DAY, ETHER

# --------------------------------------------------------------------------
# Unit parsers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (123, 123),
        ("100 wei", 100),
        ("2 gwei", 2 * 10**9),
        ("10 ether", 10 * ETHER),
        ("0.5 ether", ETHER // 2),
        ("0.1 ether", 10**17),
        ("0.1ether", 10**17),
        ("1e15", 10**15),
        (1e15, 10**15),
        ("1.5e3 gwei", 1_500 * 10**9),
        ("30_000_000", 30_000_000),
        ("1_000 ether", 1000 * ETHER),
        ("  7 GWEI ", 7 * 10**9),
        ("1.234567890123456789 ether", 1_234_567_890_123_456_789),
    ],
)
def test_parse_wei(value: object, expected: int) -> None:
    assert parse_wei(value) == expected
    assert type(parse_wei(value)) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10 ethr", "unknown unit 'ethr'"),
        ("3 finney", "unknown unit 'finney'"),
        (-1, "cannot be negative"),
        ("-5 ether", "cannot be negative"),
        ("0.1", "not a whole number of wei"),
        ("1.23456789012345678901 ether", "not a whole number"),
        (0.5, "not a whole number"),
        (True, "boolean"),
        (None, "got NoneType"),
        ([1], "got list"),
        ("", "cannot read"),
        ("ether", "cannot read"),
        ("1__0", "unknown unit"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ("1e999999 wei", "out of range"),
    ],
)
def test_parse_wei_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_wei(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (45, 45),
        ("45", 45),
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("1d", DAY),
        ("1.5d", DAY * 3 // 2),
        ("1w", 7 * DAY),
        ("1 d", DAY),
        ("9 days", 9 * DAY),
        ("2 hours", 7200),
        ("10 minutes", 600),
        ("3 seconds", 3),
        ("1 min", 60),
        ("0.5h", 1800),
        (2.0, 2),
    ],
)
def test_parse_duration(value: object, expected: int) -> None:
    assert parse_duration_s(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1 fortnight", "unknown unit 'fortnight'"),
        ("1.5s", "not a whole number of seconds"),
        (0.5, "not a whole number"),
        ("-1d", "cannot be negative"),
        ("d", "cannot read"),
        (False, "boolean"),
        ({"days": 1}, "got dict"),
    ],
)
def test_parse_duration_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration_s(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(600, 600), ("600", 600), ("600 blocks", 600), ("1 block", 1), ("1_000blocks", 1000)],
)
def test_parse_blocks(value: object, expected: int) -> None:
    assert parse_blocks(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10 blokcs", "unknown unit 'blokcs'"),
        ("1.5 blocks", "not a whole number of blocks"),
        (-3, "cannot be negative"),
        ("10 s", "unknown unit 's'"),
    ],
)
def test_parse_blocks_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_blocks(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30_000_000, 30_000_000),
        ("30_000_000", 30_000_000),
        ("30M", 30_000_000),
        ("15 M", 15_000_000),
        ("500k", 500_000),
        ("1.5M", 1_500_000),
        ("21000", 21_000),
    ],
)
def test_parse_gas(value: object, expected: int) -> None:
    assert parse_gas(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("30 Mgas", "unknown unit 'mgas'"),
        ("1.5", "not a whole number of gas"),
        ("-1M", "cannot be negative"),
        ("lots", "cannot read"),
    ],
)
def test_parse_gas_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_gas(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.2, 0.2),
        (1, 1.0),
        ("0.2", 0.2),
        ("0.2/s", 0.2),
        ("2/min", 2 / 60),
        ("12/h", 12 / 3600),
        ("24/day", 24 / DAY),
        ("0.2 per s", 0.2),
        ("6 per minute", 0.1),
        ("3 / hour", 3 / 3600),
    ],
)
def test_parse_rate(value: object, expected: float) -> None:
    result = parse_rate(value)
    assert type(result) is float
    assert result == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2/fortnight", "unknown unit '/fortnight'"),
        ("2 per", "unknown unit 'per'"),
        ("2 min", "unknown unit 'min'"),
        ("-1/s", "cannot be negative"),
        ("fast", "cannot read"),
        (True, "boolean"),
    ],
)
def test_parse_rate_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_rate(value)
