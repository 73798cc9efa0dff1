"""When an agent wants to contribute: arrival processes in chain time.

* `poisson`: independent arrivals at `rate` per second (the default): exponential gaps.
* `constant`: exactly one arrival every `1 / rate` seconds.
* `burst`: `burst_size` arrivals at once every `burst_every` seconds (`rate` is ignored).

Arrivals are events at chain times, not counts per block, so any rate works: ten a second on
one-second blocks, or one a day. `next_time` says when the next one is due, so a policy can hand it
to the orchestrator as its wake-up time and the chain skips the idle time in between instead of
ticking through a day of empty blocks. Nothing is capped: after a clock jump every arrival that fell
due is released (`max_gap` caps that only when a scenario sets it). What an agent cannot send in a
block (its in-flight limit, passed as `limit`) waits in a backlog for the next block, and the first
time that happens a warning says the rate cannot be met (in `warnings`, which the shard passes on to
the run once per distinct text), so a rate the wallet cannot keep up with is visible instead of
quietly lowered.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROCESSES = ("poisson", "constant", "burst")
_STEPS = 64  # arrivals counted one by one per draw before the rest is counted at once
log = logging.getLogger("dcai.arrivals")


@dataclass
class Arrivals:
    process: str = "poisson"
    rate: float = 0.05
    burst_size: int = 10
    burst_every: int = 60
    max_gap: int | None = None  # explicit cap on the chain time one draw covers; None: no cap
    agent: str = ""  # for the debug log only
    backlog: int = 0  # arrivals due but not yet sent (the agent had no room in earlier blocks)
    max_backlog: int = 0
    _next: float | None = None  # chain time of the next arrival (burst: the next burst)
    _load: float = 1.0  # the load `_next` was drawn under
    _last: int | None = None
    _warned: bool = False
    # Said once per agent, collected by its shard (which passes each distinct text on once).
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.process not in PROCESSES:
            raise ValueError(f"arrival process {self.process!r}: expected one of {PROCESSES}")
        if not (self.rate >= 0 and math.isfinite(self.rate)):
            raise ValueError(f"arrival rate {self.rate!r}: expected a finite number >= 0 per second")

    @classmethod
    def from_params(cls, params: dict[str, Any], agent: str = "") -> Arrivals:
        gap = params.get("max_gap")
        return cls(process=str(params.get("arrival", "poisson")), rate=float(params.get("rate", 0.05)),
                   burst_size=int(params.get("burst_size", 10)), burst_every=int(params.get("burst_every", 60)),
                   max_gap=None if gap is None else int(gap), agent=agent)

    # ---- the process --------------------------------------------------------------------------

    def _gap(self, rng: np.random.Generator, load: float) -> float:
        if self.process == "burst":
            return float(self.burst_every)
        r = self.rate * load
        if r <= 0:
            return math.inf
        if self.process == "constant":
            return 1.0 / r
        return float(rng.exponential(1.0 / r))

    def _rescale(self, now: int, load: float, rng: np.random.Generator) -> None:
        """A phase changed the load: the time left to the pending arrival shrinks or stretches with
        the rate (exact for Poisson, whose gaps are memoryless; proportional for constant)."""
        if self.process == "burst" or load == self._load or self._next is None:
            self._load = load
            return
        if math.isinf(self._next) or self._load <= 0:
            self._next = now + self._gap(rng, load)
        elif load <= 0:
            self._next = math.inf
        else:
            left = max(self._next - now, 0.0)
            self._next = now + left * self._load / load
        self._load = load

    def _due(self, now: int, rng: np.random.Generator, load: float) -> int:
        n, steps = 0, 0
        if (self._next is not None and self.process != "burst"
                and self.rate * load * (now + 1e-6 - self._next) >= _STEPS):
            # More than _STEPS expected: counting them one by one would stop at _STEPS anyway.
            return self._due_in_bulk(now, rng, load)
        # The tolerance keeps float sums of constant gaps (1/3 + 1/3 + 1/3) from missing their block.
        while self._next is not None and self._next <= now + 1e-6:
            if steps == _STEPS:  # a high rate or a long jump: count the rest at once, not one by one
                return n + self._due_in_bulk(now, rng, load)
            n += int(round(self.burst_size * load)) if self.process == "burst" else 1
            self._next += self._gap(rng, load)
            steps += 1
        return n

    def _due_in_bulk(self, now: int, rng: np.random.Generator, load: float) -> int:
        """Arrivals from `_next` up to `now` in O(1): whole periods for bursts and constant rates; for
        Poisson, one arrival at `_next`, a Poisson count for the rest of the interval, and a fresh
        exponential gap after `now` (the process is memoryless, so this is the same distribution)."""
        assert self._next is not None
        span = now + 1e-6 - self._next
        if self.process == "burst":
            k = int(span // self.burst_every) + 1
            self._next += k * self.burst_every
            return k * int(round(self.burst_size * load))
        r = self.rate * load
        if self.process == "constant":
            k = int(span * r) + 1
            self._next += k / r
            return k
        k = 1 + int(rng.poisson(r * span))
        self._next = now + self._gap(rng, load)
        return k

    def draw(self, now: int, block_time: int, rng: np.random.Generator, load: float = 1.0,
             limit: int | None = None) -> int:
        """Arrivals to act on now: those due since the last draw plus the backlog, at most `limit`
        (what the agent can send this block); the rest stays in the backlog. `load` multiplies the
        rate (and burst sizes) in phases."""
        if self._next is None:
            # The first draw covers the block just mined, as any later one covers its own.
            origin = now - block_time
            self._load = load
            self._next = float(now) if self.process == "burst" else origin + self._gap(rng, load)
        else:
            self._rescale(now, load, rng)
            if self.max_gap is not None and self._last is not None and now - self._last > self.max_gap:
                floor = now - self.max_gap
                if self._next < floor:
                    self._next = floor + (0.0 if self.process == "burst" else self._gap(rng, load))
        self._last = now
        due = self.backlog + self._due(now, rng, load)
        take = due if limit is None else max(min(due, limit), 0)
        self.backlog = due - take
        if self.backlog > self.max_backlog:
            self.max_backlog = self.backlog
        if self.backlog and not self._warned:
            self._warned = True
            # No agent or time in the text: the shard passes each distinct warning on once, so a
            # population sharing one rate gives one line, not one per agent.
            self.warnings.append(
                f"arrival rate cannot be met: {self.process} arrivals at {self.rate:.6g}/s (load {load:.3g}) on "
                f"{block_time} s blocks come faster than the agents' in-flight limit lets them send; the extra "
                "arrivals wait for later blocks")
            log.debug("arrival backlog: %s at chain time %d, %d waiting", self.agent or "an agent", now, self.backlog)
        return take

    def next_time(self) -> int | None:
        """Chain time (whole seconds) of the next arrival; None (act every block) before the first
        draw, while arrivals wait in the backlog, and for a rate of 0, which a phase may raise at any
        block."""
        if self._next is None or self.backlog or math.isinf(self._next):
            return None
        return int(math.ceil(self._next - 1e-6))
