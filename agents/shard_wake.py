"""Which agents a tick steps: a wake-time heap, so that idle agents cost nothing.

Each agent's next wake (its policy's `next_wake`, evaluated after it last stepped) keys a heap. A
tick steps only the agents that are due:
* those whose wake is None (act every block), or never evaluated yet, or that asked the node's
  pool last time (a front-runner watches every block for others' pending transactions);
* those whose wake has come (wake <= the block's chain time);
* those with a transaction of theirs pending (its receipt is news to them);
* everyone, when something that moves every wake changes: acting or settlement switches, the
  schedule's load or the block time changes, the public list shrinks (a reorg), or a restore.
A contribution that becomes public may bring an asleep agent's wake forward, but not before its
`added_time + policy.public_horizon(mechanism)` (the claim loop takes others' contributions in
once their refund wait has passed; a policy that reacts at once keeps the default horizon 0):
agents asleep past that moment get their wake evaluated again (not a step, which would not act).

Stepping an agent before its wake is what every tick did before this schedule (it does nothing),
so the same scenario and seed give the same transactions. An asleep agent's stored wake is the
one its policy gave when last evaluated; the built-in policies' wakes only move at the events
above, except at two time boundaries (a claim loop's `give_up_s`, a Points contribution's last
window) where the stored wake may be earlier than a fresh one: the agent then wakes, does nothing
and reports its later wake.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from .policies.base import FINISHED

UNSET = -1  # never evaluated: step at the next tick


@dataclass
class WakeSchedule:
    size: int
    wake: list[int | None] = field(default_factory=list)  # per agent slot: its stored next wake
    every_block: set[int] = field(default_factory=set)  # slots stepped every tick
    horizon: list[float] = field(default_factory=list)  # per slot: its policy's public_horizon
    _heap: list[tuple[int, int]] = field(default_factory=list)  # (wake, slot); entries not in _queued are stale
    _queued: dict[int, int] = field(default_factory=dict)  # slot -> the wake of its live heap entry
    _none: int = 0  # slots whose wake is None (or not evaluated yet)
    _context: tuple[object, ...] | None = None
    _public_len: int = 0
    _all_next: bool = True

    def __post_init__(self) -> None:
        self.wake = [UNSET] * self.size
        self.every_block = set(range(self.size))
        self.horizon = [0.0] * self.size
        self._none = self.size

    def grow(self, horizons: list[int]) -> None:
        """Slots for agents added to the shard: stepped at the next tick."""
        first = self.size
        self.size += len(horizons)
        self.wake += [UNSET] * len(horizons)
        self.every_block.update(range(first, self.size))
        self.horizon += [float(h) for h in horizons]
        self._none += len(horizons)

    def wake_all(self) -> None:
        """Step every agent at the next tick (after a restore, say)."""
        self._all_next = True

    def due(self, now: int, context: tuple[object, ...], public: list[object], pending: set[int]) -> list[int]:
        """Slots to step at chain time `now`, in agent order (the order every tick used to step).
        `context`: what moves every wake (acting, settling, load, block time); `pending`: slots with a
        transaction in flight."""
        if context != self._context:
            self._context = context
            self._all_next = True
        if len(public) < self._public_len:
            self._all_next = True  # a reorg cut the public list: every view of it changed
            self._public_len = len(public)
        if self._all_next:
            self._all_next = False
            return list(range(self.size))
        out = self.every_block | pending
        heap = self._heap
        while heap and heap[0][0] <= now:
            w, slot = heapq.heappop(heap)
            if self._queued.get(slot) == w:
                del self._queued[slot]
                out.add(slot)
        return sorted(out)

    def stale_by_public(self, public: list[object], stepped: set[int]) -> list[int]:
        """Asleep slots (not in `stepped`) whose wake a contribution made public since the last call
        could bring forward: their wake is later than the new contribution's horizon."""
        new = public[self._public_len:]
        self._public_len = len(public)
        if not new:
            return []
        first = min(int(getattr(c, "added_time", 0)) for c in new)
        return [slot for slot, w in enumerate(self.wake)
                if w is not None and w != UNSET and slot not in stepped and w > first + self.horizon[slot]]

    def set(self, slot: int, wake: int | None, every_block: bool = False) -> None:
        """An agent's wake, evaluated now; `every_block`: step it every tick whatever its wake."""
        old = self.wake[slot]
        self._none += (wake is None) - (old is None or old == UNSET)
        self.wake[slot] = wake
        if wake is None or every_block:
            self.every_block.add(slot)
        else:
            self.every_block.discard(slot)
        if wake is None or wake == FINISHED:
            self._queued.pop(slot, None)
        elif self._queued.get(slot) != wake:
            self._queued[slot] = wake
            heapq.heappush(self._heap, (wake, slot))

    def next_wake(self) -> int | None:
        """The shard's next wake: None if some agent acts every block, else the earliest stored wake
        (FINISHED when every agent is done)."""
        if self._none:
            return None
        heap = self._heap
        while heap and self._queued.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # stale
        return heap[0][0] if heap else FINISHED
