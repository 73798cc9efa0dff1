"""What every node kind is: settings, a process the run may manage, and its capabilities.

The rest of the code never asks which node it has, only what it can do: `capabilities` names the
optional features (`has`/`require`), and the few control operations whose JSON-RPC spelling differs
between nodes (mining modes, mining at a timestamp, next base fee, dropping a pooled transaction,
reading the pool) are methods here, overridden per kind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

from contracts.rpc import RpcClient

MiningMode = Literal["interval", "driven", "auto"]

# Capability names: chaos events, checkpoints and bundles refer to these strings.
TXPOOL = "txpool"  # txpool_content / txpool_status
STATE_DUMP = "state_dump"  # dump / load the whole state (checkpoints, replay bundles)
MINING_CONTROL = "mining_control"  # interval / on-demand mining, mine a block with a given timestamp
TIME_TRAVEL = "time_travel"  # evm_increaseTime, evm_setNextBlockTimestamp
REORG = "reorg"
DROP_TX = "drop_tx"  # remove one pooled transaction
BASE_FEE_CONTROL = "base_fee_control"  # set the next block's base fee
GAS_LIMIT_CONTROL = "gas_limit_control"  # evm_setBlockGasLimit
PRUNE_HISTORY = "prune_history"  # keep only recent states in memory
BLOCK_RECEIPTS = "block_receipts"  # eth_getBlockReceipts
RAW_TX_BY_HASH = "raw_tx_by_hash"  # eth_getRawTransactionByHash

ALL_CAPABILITIES = frozenset({TXPOOL, STATE_DUMP, MINING_CONTROL, TIME_TRAVEL, REORG, DROP_TX, BASE_FEE_CONTROL,
                              GAS_LIMIT_CONTROL, PRUNE_HISTORY, BLOCK_RECEIPTS, RAW_TX_BY_HASH})


class NodeError(RuntimeError):
    pass


class UnsupportedByNode(NodeError):
    """The node kind lacks a capability an operation needs; the message names both."""

    def __init__(self, kind: str, capability: str, what: str):
        super().__init__(f"{what} needs the node capability {capability!r}, which node kind {kind!r} lacks")
        self.kind, self.capability = kind, capability


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


def die_with_parent() -> None:
    # Linux: the node gets SIGTERM if the orchestrator dies without cleaning up (kill -9, crash).
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NodeKind(ABC):
    """One node the run talks to. Managed kinds start a process on a free loopback port (`start`
    returns its URL) that dies with its parent; the external kind only holds a URL."""

    name: ClassVar[str]
    capabilities: frozenset[str]  # per class; the external kind narrows it per instance after probing
    managed: ClassVar[bool] = True

    def __init__(self, settings: NodeSettings, log_path: Path, *, port: int | None = None):
        self.settings = settings
        self.log_path = log_path
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # ---- capabilities ------------------------------------------------------------------------

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def require(self, capability: str, what: str) -> None:
        if capability not in self.capabilities:
            raise UnsupportedByNode(self.name, capability, what)

    # ---- the process ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that starts this node on `self.port`."""

    @abstractmethod
    def ready_banner(self) -> bytes:
        """What the node's own log says once it listens on `self.port`."""

    def prepare(self) -> None:
        """Write what the command needs (config files) before a start; nothing by default."""

    def process_cwd(self) -> Path | None:
        return None

    def process_env(self) -> dict[str, str] | None:
        return None

    def start(self, timeout_s: float = 15.0) -> str:
        if self.proc is not None:
            raise NodeError("node already started")
        attempts = 3 if self.port is None else 1
        for attempt in range(attempts):
            if self.port is None or attempt > 0:
                self.port = free_port()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.prepare()
            self._log = open(self.log_path, "ab")
            log_start = self._log.tell()
            self.proc = subprocess.Popen(
                self.command(),
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.process_cwd(),
                env=self.process_env(),
                start_new_session=True,  # Ctrl-C reaches us; we stop the node in order
                preexec_fn=die_with_parent,
            )
            if self._wait_ready(timeout_s, log_start):
                return self.url
            self.stop()
        raise NodeError(f"{self.name} did not start; see {self.log_path}: {self._log_tail()}")

    def _wait_ready(self, timeout_s: float, log_start: int) -> bool:
        """Ready when our own process says it listens on our port. A TCP connect alone is not enough:
        if the port was taken, the node exits and the connect would reach the other server."""
        banner = self.ready_banner()
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
        """Start again from a state dump, on the same port so every client keeps its URL."""
        raise UnsupportedByNode(self.name, STATE_DUMP, "restarting from a state dump")

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

    def __enter__(self) -> NodeKind:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- chain control (the spelling of each operation on this node) -------------------------

    async def set_mining(self, client: RpcClient, mode: MiningMode, block_time_s: int = 1) -> None:
        raise UnsupportedByNode(self.name, MINING_CONTROL, "switching the mining mode")

    async def mine(self, client: RpcClient, timestamp: int | None = None) -> None:
        raise UnsupportedByNode(self.name, MINING_CONTROL, "mining a block on demand")

    async def increase_time(self, client: RpcClient, seconds: int) -> None:
        self.require(TIME_TRAVEL, "moving the clock")
        await client.call("evm_increaseTime", seconds)

    async def set_next_timestamp(self, client: RpcClient, timestamp: int) -> None:
        self.require(TIME_TRAVEL, "setting the next block's timestamp")
        await client.call("evm_setNextBlockTimestamp", timestamp)

    async def set_gas_limit(self, client: RpcClient, gas_limit: int) -> None:
        self.require(GAS_LIMIT_CONTROL, "changing the block gas limit")
        await client.call("evm_setBlockGasLimit", hex(gas_limit))

    async def set_next_base_fee(self, client: RpcClient, base_fee: int) -> None:
        raise UnsupportedByNode(self.name, BASE_FEE_CONTROL, "setting the next block's base fee")

    async def drop_transactions(self, client: RpcClient, hashes: list[str]) -> None:
        raise UnsupportedByNode(self.name, DROP_TX, "dropping pooled transactions")

    async def reorg(self, client: RpcClient, depth: int) -> None:
        raise UnsupportedByNode(self.name, REORG, "a reorg")

    async def dump_state(self, client: RpcClient) -> bytes:
        raise UnsupportedByNode(self.name, STATE_DUMP, "dumping the node's state")

    async def pool_content(self, client: RpcClient) -> dict[str, Any]:
        """txpool_content's answer: {"pending"|"queued": {sender: {nonce: tx}}}."""
        self.require(TXPOOL, "reading the transaction pool")
        content: dict[str, Any] = await client.call("txpool_content")
        return content


def pool_hashes(content: dict[str, Any]) -> list[str]:
    """Every transaction hash in a txpool_content answer, sorted."""
    return sorted(tx["hash"] for part in ("pending", "queued")
                  for by_nonce in (content.get(part) or {}).values() for tx in by_nonce.values())
