"""A transaction of ours the node has not settled yet, with what a replacement or a restart needs.

Its own module so that the shard and its recovery share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .ledger import LedgerRecord
from .policies.base import Contribution, PublicContribution


@dataclass
class Pending:
    record: LedgerRecord
    agent: Any  # agents.shard.Agent: typed loosely so this module needs nothing from the shard
    contribution: Contribution | None
    raw_args: tuple[bytes, int, int]  # calldata, value, gas: what a replacement re-sends
    target: PublicContribution | None = None
