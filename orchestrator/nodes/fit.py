"""Does a scenario fit a node kind? The capabilities each run feature needs, checked before a run.

Chaos events will declare their own needs once they are plugins; until then the built-in events'
needs live here, in capability names, so the check never asks which node it is.
"""

from __future__ import annotations

from collections.abc import Iterable

from .base import (
    BASE_FEE_CONTROL,
    DROP_TX,
    GAS_LIMIT_CONTROL,
    MINING_CONTROL,
    PRUNE_HISTORY,
    REORG,
    STATE_DUMP,
    TXPOOL,
)
from .registry import node_kind

CHAOS_NEEDS: dict[str, tuple[str, ...]] = {
    "base_fee_shock": (BASE_FEE_CONTROL,),
    "gas_limit": (GAS_LIMIT_CONTROL,),
    "pause_mining": (MINING_CONTROL,),
    "block_time": (MINING_CONTROL,),
    "drop_pending": (TXPOOL, DROP_TX),  # the pool is listed to pick what to drop
    "reorg": (REORG,),
    "kill_node": (STATE_DUMP,),  # the node restarts from its last state dump
    "kill_shard": (),  # a Ray fault; the replacement adopts from blocks where the node has no pool
}


def misfits(kind_name: str, *, chaos: Iterable[str] = (), bundle: bool = False, prune_history: bool = False,
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

    for event in dict.fromkeys(chaos):
        lacks(f"chaos event {event!r}", CHAOS_NEEDS.get(event, ()))
    if bundle:
        lacks("outputs.bundle", (STATE_DUMP,))
    if prune_history:
        lacks("chain.prune_history", (PRUNE_HISTORY,))
    if driven:
        lacks("chain.mining: driven", (MINING_CONTROL,))
    return out
