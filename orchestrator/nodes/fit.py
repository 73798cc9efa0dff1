"""Does a scenario fit a node kind? The capabilities each run feature needs, checked before a run.
Chaos events declare their own needs (`ChaosEvent.needs`) and are checked by their class."""

from __future__ import annotations

from collections.abc import Iterable

from .base import MINING_CONTROL, PRUNE_HISTORY, STATE_DUMP
from .registry import node_kind


def misfits(kind_name: str, *, bundle: bool = False, prune_history: bool = False,
            driven: bool = False) -> list[str]:
    """One sentence per feature the scenario asks for that node kind `kind_name` cannot do."""
    kind = node_kind(kind_name)
    caps = kind.capabilities
    out: list[str] = []

    def lacks(what: str, needs: Iterable[str]) -> None:
        missing = [c for c in needs if c not in caps]
        if missing:
            out.append(f"{what} needs the node capabilit{'y' if len(missing) == 1 else 'ies'} "
                       f"{', '.join(repr(m) for m in missing)}, which node kind {kind_name!r} lacks")

    if bundle:
        lacks("outputs.bundle", (STATE_DUMP,))
    if prune_history:
        lacks("chain.prune_history", (PRUNE_HISTORY,))
    if driven:
        lacks("chain.mining: driven", (MINING_CONTROL,))
    return out
