"""Live invariant monitors: properties of the deployed system checked against the chain every block
(docs/telemetry.md, "Invariants"). `Invariant` and `register` for users; `InvariantMonitor` for the
run loop (`await monitor.check(block)`)."""

from .base import (ENTRY_POINT_GROUP, ChangeView, Claim, Contribution, Invariant, InvariantContext, InvariantError,
                   Violation, available, builtin_names, register, resolve, unregister)
from .monitor import InvariantMonitor

__all__ = ["ENTRY_POINT_GROUP", "ChangeView", "Claim", "Contribution", "Invariant", "InvariantContext",
           "InvariantError", "InvariantMonitor", "Violation", "available", "builtin_names", "register", "resolve",
           "unregister"]
