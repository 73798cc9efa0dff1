"""Soak, the memory side: the RSS of every process of a run (driver, shard actors, Ray's own, the node),
sampled on a thread with how many transactions were final at that moment."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import descendants, machine_busy_s, proc_cpu_s, proc_name, proc_rss_bytes

MIB = 2**20


def label(pid: int, node_pid: int, shard_pids: list[int]) -> str:
    if pid == os.getpid():
        return "driver"
    if pid == node_pid:
        return "anvil"
    if pid in shard_pids:
        return f"shard-{shard_pids.index(pid)}"
    cmd = proc_name(pid)
    first = cmd.split(" ", 1)[0]
    if first.startswith("ray::"):
        return f"ray:{first.removeprefix('ray::')}-{pid}"
    # Ray's helpers are python scripts: name them by the script (log_monitor.py, dashboard agent...)
    parts = [Path(p).name for p in cmd.split() if p.endswith(".py")]
    return f"ray:{parts[0] if parts else Path(first).name}-{pid}"


@dataclass
class Sampler:
    """Every `period_s`: the RSS of each of our processes and the count of final transactions."""

    period_s: float
    node_pid: int
    shard_pids: list[int]
    final: int = 0  # updated by the driver loop
    block: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        pids = {os.getpid(), self.node_pid, *self.shard_pids, *descendants(os.getpid())}
        rss = {}
        ours_cpu = sum(proc_cpu_s(pid) for pid in pids)
        for pid in sorted(pids):
            b = proc_rss_bytes(pid)
            if b:
                rss[label(pid, self.node_pid, self.shard_pids)] = round(b / MIB, 1)
        self.samples.append({"t": time.time(), "final": self.final, "block": self.block,
                             "node_cpu_s": proc_cpu_s(self.node_pid), "busy_s": machine_busy_s(),
                             "ours_cpu_s": ours_cpu, "rss_mib": rss})

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True, name="soak-rss")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
