"""The managed anvil node (the default kind), from the project's pinned npm package.

The node starts in automine mode so set-up (deployment, funding: one sender, sequential) is quick,
or with mining on demand for driven runs, whose set-up blocks then get fixed timestamps too;
`set_mining` then switches to the run's mode. Automine is never used under load: with many
concurrent senders it stalls (foundry issue 10122, measured here).
"""

from __future__ import annotations

from pathlib import Path

from contracts.rpc import RpcClient
from contracts.toolchain import anvil_binary

from .base import (
    ALL_CAPABILITIES,
    MiningMode,
    NodeKind,
    NodeSettings,
)


class AnvilNode(NodeKind):
    """A managed anvil process on a free loopback port, logging into `log_path`."""

    name = "anvil"
    capabilities = ALL_CAPABILITIES

    def __init__(self, settings: NodeSettings, log_path: Path, *, port: int | None = None):
        super().__init__(settings, log_path, port=port)
        self.load_state: Path | None = None  # a state dump to start from (restart after a crash)

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

    def ready_banner(self) -> bytes:
        return f"Listening on 127.0.0.1:{self.port}".encode()

    def restart(self, state: Path, timeout_s: float = 30.0) -> str:
        """Start again from a state dump (`anvil_dumpState`, decompressed), on the same port so that
        every client keeps its URL. The dump holds the blocks, transactions and historical states,
        not the pool: what was pending is gone."""
        self.stop()
        self.load_state = state
        return self.start(timeout_s)

    async def set_mining(self, client: RpcClient, mode: MiningMode, block_time_s: int = 1) -> None:
        await set_mining(client, mode, block_time_s)

    async def mine(self, client: RpcClient, timestamp: int | None = None) -> None:
        await mine(client, timestamp)

    async def set_next_base_fee(self, client: RpcClient, base_fee: int) -> None:
        await client.call("anvil_setNextBlockBaseFeePerGas", hex(base_fee))

    async def drop_transactions(self, client: RpcClient, hashes: list[str]) -> None:
        # anvil refuses (null) transactions it cannot run yet, e.g. fee caps under the base fee, and
        # drops a sender's later transactions with the one named (they could never run).
        if hashes:
            await client.batch([("anvil_dropTransaction", [h]) for h in hashes])

    async def reorg(self, client: RpcClient, depth: int) -> None:
        await client.call("anvil_reorg", depth, [])

    async def dump_state(self, client: RpcClient) -> bytes:
        dump: str = await client.call("anvil_dumpState")  # hex of a gzipped JSON document
        return bytes.fromhex(dump[2:] if dump.startswith("0x") else dump)


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
