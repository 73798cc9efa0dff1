"""Parsers for quantities that people write naturally in scenario files.

Each parser accepts a plain number (already in the base unit) or a string
with an optional unit ("10 ether", "1.5d", "30M", "2/min") and returns the
value in the base unit. Bad input raises ValueError with a message meant to
be shown to the person who wrote the file, so it repeats the offending value
and lists the accepted units.

Numbers are read with decimal.Decimal and scaled with fractions.Fraction, so
"0.1 ether" is exactly 10**17 wei rather than whatever binary floating point
(or Decimal's default 28-digit context) would round it to.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

__all__ = [
    "ETHER",
    "GWEI",
    "parse_blocks",
    "parse_duration_s",
    "parse_gas",
    "parse_rate",
    "parse_wei",
]

GWEI = 10**9
ETHER = 10**18

# A number with optional single underscores between digits (as in Python
# literals and YAML 1.1 ints) and an optional exponent, followed by an
# optional unit that must start with something other than a digit.
_QUANTITY = re.compile(
    r"""
    \s*
    (?P<num>[+-]?
        (?: \d(?:_?\d)* (?:\.(?:\d(?:_?\d)*)?)?   # 12, 1_000, 1.5, 1.
          | \.\d(?:_?\d)*                          # .5
        )
        (?:[eE][+-]?\d+)?
    )
    \s*
    (?P<unit>[^\d\s.].*?)?
    \s*
    """,
    re.VERBOSE,
)

# Written-out magnitudes beyond 10**60 are typos, not quantities.
_MAX_EXPONENT = 60

_WEI_UNITS = {"wei": 1, "gwei": GWEI, "ether": ETHER, "eth": ETHER}

_SECOND_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86_400),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), 604_800),
}

_DURATION_UNITS_HELP = "s, m, h, d, w, or spelled out: seconds, minutes, hours, days, weeks"

_BLOCK_UNITS = {"block": 1, "blocks": 1}

# Gas is never fractional, so a lower-case "m" can safely mean million.
_GAS_UNITS = {"k": 10**3, "m": 10**6}


def _unknown_unit(unit: str, value: object, what: str, allowed: str) -> ValueError:
    return ValueError(f"unknown unit {unit!r} in {value!r} for {what} (allowed units: {allowed})")


def _quantity(value: object, what: str, example: str) -> tuple[Fraction, str | None]:
    """Split `value` into an exact magnitude and a lower-cased unit.

    The unit is None when the value carried none (a bare number). Units are
    checked and applied by the callers because rates divide by theirs.
    """
    # bool is an int subclass; `true` in YAML must not silently become 1.
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, got a boolean ({value!r}); write e.g. {example!r}")
    if isinstance(value, int):
        return Fraction(value), None

    unit: str | None = None
    if isinstance(value, float):
        # repr() is the shortest string that round-trips, so the float 0.1
        # stays 0.1 instead of becoming 0.1000000000000000055511151231257827...
        number = Decimal(repr(value))
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        match = _QUANTITY.fullmatch(value)
        if match is None:
            raise ValueError(f"cannot read {value!r} as {what}; write e.g. {example!r}")
        number = Decimal(match["num"].replace("_", ""))
        if match["unit"] is not None:
            unit = match["unit"].strip().lower()
    else:
        raise ValueError(
            f"expected {what} as a number or a string like {example!r}, got {type(value).__name__}"
        )

    if not number.is_finite():
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    # Fraction(Decimal("1e999999999")) would build a gigantic integer.
    if number and not -_MAX_EXPONENT <= number.adjusted() <= _MAX_EXPONENT:
        raise ValueError(f"{value!r} is out of range for {what}")
    return Fraction(number), unit


def _scaled(
    value: object, what: str, example: str, units: dict[str, int], allowed: str
) -> Fraction:
    number, unit = _quantity(value, what, example)
    if unit is None:
        return number
    if unit not in units:
        raise _unknown_unit(unit, value, what, allowed)
    return number * units[unit]


def _whole(number: Fraction, original: object, base_unit: str) -> int:
    if number.denominator != 1:
        raise ValueError(f"{original!r} is not a whole number of {base_unit}")
    return int(number)


def _non_negative(result: int, original: object, what: str) -> int:
    if result < 0:
        raise ValueError(f"{what} cannot be negative (got {original!r})")
    return result


def parse_wei(value: object) -> int:
    """Amount of ether in wei: 10**18, 1e15, "0.5 ether", "2 gwei", "100 wei"."""
    what = "an amount of wei"
    number = _scaled(value, what, "10 ether", _WEI_UNITS, "wei, gwei, ether")
    return _non_negative(_whole(number, value, "wei"), value, what)


def parse_duration_s(value: object) -> int:
    """Duration in whole seconds: 30, "30s", "5m", "1.5d", "2 hours", "1w"."""
    what = "a duration"
    number = _scaled(value, what, "1d", _SECOND_UNITS, _DURATION_UNITS_HELP)
    return _non_negative(_whole(number, value, "seconds"), value, what)


def parse_blocks(value: object) -> int:
    """Number of blocks: 600, "600", "600 blocks", "1 block"."""
    what = "a number of blocks"
    number = _scaled(value, what, "600 blocks", _BLOCK_UNITS, "blocks")
    return _non_negative(_whole(number, value, "blocks"), value, what)


def parse_gas(value: object) -> int:
    """Amount of gas: 30_000_000, "30_000_000", "30M", "15 M", "500k"."""
    what = "an amount of gas"
    number = _scaled(value, what, "30M", _GAS_UNITS, "k (thousand), M (million)")
    return _non_negative(_whole(number, value, "gas"), value, what)


# "/s", "/ min", "per hour": the time unit after the slash or "per".
_PER_UNIT = re.compile(r"(?:/|per\s)\s*(?P<unit>\S.*)")
_RATE_UNITS_HELP = "/s, /min, /h, /d, /w, or 'per' followed by a time unit"


def parse_rate(value: object) -> float:
    """Events per second of chain time: 0.2, "0.2/s", "2/min", "12/h", "0.2 per s"."""
    what = "a rate"
    number, unit = _quantity(value, what, "2/min")
    if unit is not None:
        per = _PER_UNIT.fullmatch(unit)
        if per is None or per["unit"] not in _SECOND_UNITS:
            raise _unknown_unit(unit, value, what, _RATE_UNITS_HELP)
        number /= _SECOND_UNITS[per["unit"]]
    if number < 0:
        raise ValueError(f"{what} cannot be negative (got {value!r})")
    return float(number)
