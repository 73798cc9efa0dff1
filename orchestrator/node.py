"""Start, control and always stop a local anvil node from the project's pinned npm package.

The node starts in automine mode so set-up (deployment, funding: one sender, sequential) is quick,
or with mining on demand for driven runs, whose set-up blocks then get fixed timestamps too;
`set_mining` then switches to the run's mode. Automine is never used under load: with many
concurrent senders it stalls (foundry issue 10122, measured here).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from contracts.rpc import RpcClient
from contracts.toolchain import anvil_binary

MiningMode = Literal["interval", "driven", "auto"]


class NodeError(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeSettings:
    gas_limit: int = 30_000_000
    base_fee: int = 1_000_000_000
    accounts: int = 10
    balance_ether: int = 1_000_000
    chain_id: int = 31337
    order: str = "fees"
    genesis_timestamp: int | None = None  # fixed for reproducible (driven) runs
    no_mining: bool = False  # start with mining on demand only (driven runs mine even set-up blocks)
    # Keep only this many past states in memory (0: none); None keeps them all. Bounds anvil's memory
    # in long runs, at the cost of calls against past blocks.
    prune_history: int | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # Linux: the node gets SIGTERM if the orchestrator dies without cleaning up (kill -9, crash).
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class AnvilNode:
    """A managed anvil process on a free loopback port, logging into `log_path`."""

    def __init__(self, settings: NodeSettings, log_path: Path, *, port: int | None = None):
        self.settings = settings
        self.log_path = log_path
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.load_state: Path | None = None  # a state dump to start from (restart after a crash)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        s = self.settings
        return [
            str(anvil_binary()),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--gas-limit", str(s.gas_limit),
            "--base-fee", str(s.base_fee),
            "--accounts", str(s.accounts),
            "--balance", str(s.balance_ether),
            "--chain-id", str(s.chain_id),
            "--order", s.order,
            *(["--timestamp", str(s.genesis_timestamp)] if s.genesis_timestamp is not None else []),
            *(["--no-mining"] if s.no_mining else []),
            *((["--prune-history"] + ([str(s.prune_history)] if s.prune_history else []))
              if s.prune_history is not None else []),
            *(["--load-state", str(self.load_state)] if self.load_state is not None else []),
        ]

    def start(self, timeout_s: float = 15.0) -> str:
        if self.proc is not None:
            raise NodeError("node already started")
        attempts = 3 if self.port is None else 1
        for attempt in range(attempts):
            if self.port is None or attempt > 0:
                self.port = free_port()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")
            log_start = self._log.tell()
            self.proc = subprocess.Popen(
                self.command(),
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us; we stop the node in order
                preexec_fn=_die_with_parent,
            )
            if self._wait_ready(timeout_s, log_start):
                return self.url
            self.stop()
        raise NodeError(f"anvil did not start; see {self.log_path}: {self._log_tail()}")

    def _wait_ready(self, timeout_s: float, log_start: int) -> bool:
        """Ready when our own process says it listens on our port. A TCP connect alone is not enough:
        if the port was taken, anvil exits and the connect would reach the other server."""
        banner = f"Listening on 127.0.0.1:{self.port}".encode()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False  # exited: port taken or bad flags
            try:
                with open(self.log_path, "rb") as fh:
                    fh.seek(log_start)
                    if banner in fh.read():
                        return self.proc.poll() is None
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-800:]
        except OSError:
            return ""

    def restart(self, state: Path, timeout_s: float = 30.0) -> str:
        """Start again from a state dump (`anvil_dumpState`, decompressed), on the same port so that
        every client keeps its URL. The dump holds the blocks, transactions and historical states,
        not the pool: what was pending is gone."""
        self.stop()
        self.load_state = state
        return self.start(timeout_s)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> AnvilNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def set_mining(client: RpcClient, mode: MiningMode, block_time_s: int = 1) -> None:
    """Switch a running anvil between automine, interval mining and manual (driven) mining."""
    if mode == "interval":
        await client.call("evm_setIntervalMining", block_time_s)  # also turns automine off
    elif mode == "driven":
        await client.call("evm_setIntervalMining", 0)
        await client.call("evm_setAutomine", False)
    else:
        await client.call("evm_setIntervalMining", 0)
        await client.call("evm_setAutomine", True)


async def mine(client: RpcClient, timestamp: int | None = None) -> None:
    """Mine one block now (driven mode), optionally with a given timestamp."""
    if timestamp is None:
        await client.call("evm_mine")
    else:
        await client.call("evm_mine", {"timestamp": timestamp})


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
