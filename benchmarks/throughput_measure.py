"""Throughput, the measuring side shared by the three paths: settings, the wall/CPU window, the
figures of one run, the senders and a fresh chain."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import Chain, fresh_chain, machine_busy_s, proc_cpu_s

from contracts.signing import LocalAccount, derive_key

QUIET: list[float] = []  # foreign load measured before each run
PER_SENDER = 10  # transactions per sender in every path
CONTRACTS = ("CollaborativeTrainer", "DataHandler", "Stakeable", "SparsePerceptron")


class Settings(argparse.Namespace):
    n: int
    n_web3: int
    repeats: int
    block_ms: int
    gas_limit: int
    raw_batch: int
    raw_concurrency: int
    shards: int
    ray: bool
    inprocess: bool
    web3_fixed_gas: bool
    out: Path
    quick: bool
    wait_idle: float


class Window:
    """Wall time and CPU (this process, given other pids, the node) from start to marks."""

    def __init__(self, node_pid: int, other_pids: list[int] | None = None):
        self.node_pid = node_pid
        self.other = other_pids or []
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.other0 = sum(proc_cpu_s(p) for p in self.other)
        self.node0 = proc_cpu_s(node_pid)
        self.busy0 = machine_busy_s()

    def mark(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        cpu = time.process_time() - self.cpu0 + sum(proc_cpu_s(p) for p in self.other) - self.other0
        node = proc_cpu_s(self.node_pid) - self.node0
        foreign = max(0.0, machine_busy_s() - self.busy0 - cpu - node)
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "driver_cpu_s": time.process_time() - self.cpu0,
            "node_cpu_s": node,
            "foreign_cores": foreign / wall,  # other processes' load on the machine meanwhile
        }


def figures(n: int, submitted: dict[str, float], included: dict[str, float]) -> dict[str, float]:
    return {
        "n": n,
        "submit_s": submitted["wall_s"],
        "include_s": included["wall_s"],
        "submitted_tps": n / submitted["wall_s"],
        "included_tps": n / included["wall_s"],
        "client_cpu_ms_per_tx": included["cpu_s"] / n * 1e3,
        "client_cpu_ms_per_tx_submit": submitted["cpu_s"] / n * 1e3,
        "driver_cpu_ms_per_tx": included["driver_cpu_s"] / n * 1e3,
        "node_cpu_ms_per_tx": included["node_cpu_s"] / n * 1e3,
        "foreign_cores": included["foreign_cores"],
        "quiet_before": QUIET[-1] if QUIET else None,
    }


def senders_for(n: int, tag: int, run: int) -> list[LocalAccount]:
    return [LocalAccount.from_key(derive_key("bench", tag, run, i)) for i in range((n + PER_SENDER - 1) // PER_SENDER)]


async def new_chain(s: Settings) -> Chain:
    return await fresh_chain(gas_limit=s.gas_limit, base_fee=0)
