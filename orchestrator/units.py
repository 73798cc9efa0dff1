"""Natural units for scenario files (kept here for the scenario schema; the parsers live in
`contracts.units` so agents' policies can read the same units in their parameters)."""

from contracts.units import *  # noqa: F401,F403
from contracts.units import ETHER, GWEI, parse_blocks, parse_duration_s, parse_gas, parse_rate, parse_wei  # noqa: F401
