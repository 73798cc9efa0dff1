"""When an agent wants to contribute: arrival processes in chain time.

* `poisson`: independent arrivals at `rate` per second (the default).
* `constant`: exactly `rate` per second on average, evenly spread (a fractional accumulator).
* `burst`: `burst_size` arrivals at once every `burst_every` seconds (`rate` is ignored).
Each draw covers the chain time since the previous draw, capped at `max_gap` seconds so a skipped
day does not release a day's worth of arrivals in one block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PROCESSES = ("poisson", "constant", "burst")


@dataclass
class Arrivals:
    process: str = "poisson"
    rate: float = 0.05
    burst_size: int = 10
    burst_every: int = 60
    max_gap: int = 60
    _last: int | None = None
    _carry: float = 0.0
    _next_burst: int | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Arrivals:
        process = str(params.get("arrival", "poisson"))
        if process not in PROCESSES:
            raise ValueError(f"arrival process {process!r}: expected one of {PROCESSES}")
        return cls(process=process, rate=float(params.get("rate", 0.05)),
                   burst_size=int(params.get("burst_size", 10)), burst_every=int(params.get("burst_every", 60)),
                   max_gap=int(params.get("max_gap", 60)))

    def draw(self, now: int, block_time: int, rng: np.random.Generator, load: float = 1.0) -> int:
        """Arrivals since the last draw; `load` multiplies the rate (and burst sizes) in phases."""
        if self._last is None:
            dt = block_time
        else:
            dt = min(max(now - self._last, 0), self.max_gap)
        self._last = now
        if self.process == "poisson":
            return int(rng.poisson(self.rate * load * dt))
        if self.process == "constant":
            self._carry += self.rate * load * dt
            n = int(self._carry)
            self._carry -= n
            return n
        if self._next_burst is None:
            self._next_burst = now
        if now >= self._next_burst:
            self._next_burst = now + self.burst_every
            return int(round(self.burst_size * load))
        return 0
