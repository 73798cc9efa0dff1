"""What a streaming shard forgets, so that its memory stays flat however long the run.

The ledger's settled records leave with each tick (shard_ledger.py). Beside them a shard holds two
lists that grow with every transaction, both indexed from the start of the run (agents/window.py):
* each agent's own contributions: one is forgotten when the record that settled it for good (its
  refund included, or its add reverted or dropped) is forgotten by the ledger, that is, once no
  reorg within `reorg_depth` and no node restart from the last state dump can reopen it;
* the public list: entries below every agent's `policy.public_needed_from()` (what the claim loops
  have already taken into their own schedules) and settled as deep as the ledger's records.
  A policy that declares nothing needs the whole list, and the shard keeps it.
Policies never see a difference: what they may still read is kept, so a seed gives the same
transactions whether or not the ledger streams.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from .ledger import LedgerRecord, TxStatus
from .policies.base import Contribution, ContributionState, PublicContribution
from .shard_types import Agent
from .window import Window

# The public list's bound is an O(agents) question (a method call per agent, ~0.3 us each): asked
# when the list holds this many entries, then each time it has doubled since the last answer, so
# it costs O(agents) per doubling and the list stays within twice what the agents still need.
PUBLIC_MIN_KEPT = 256


class ForgettingShard(Protocol):
    agents: list[Agent]
    public: Window[PublicContribution]


def settled_contribution(r: LedgerRecord, c: Contribution | None) -> Contribution | None:
    """The contribution this forgotten record settled for good, if any."""
    if c is None:
        return None
    if r.action == "refund" and r.status is TxStatus.INCLUDED and c.state is ContributionState.REFUNDED:
        return c
    if r.action == "add" and r.status in (TxStatus.REVERTED, TxStatus.DROPPED) and c.state is ContributionState.FAILED:
        return c
    return None


def forget_contributions(settled: Iterable[tuple[Agent, Contribution]]) -> int:
    n = 0
    for agent, c in settled:
        if agent.contributions.get(c.id) is c:
            agent.contributions.forget(c.id)
            n += 1
    return n


def forget_public(shard: ForgettingShard, safe_block: int) -> int:
    """Drop the public entries no agent can read again, settled no deeper than `safe_block`."""
    public = shard.public
    if public.kept == 0 or public[public.start].block > safe_block:
        return 0
    needed = min((a.policy.public_needed_from() for a in shard.agents), default=len(public))
    if needed <= public.start:
        return 0
    end = min(needed, len(public))
    i = public.start
    while i < end and public[i].block <= safe_block:
        i += 1
    return public.forget_before(i)
