"""A managed Hardhat node (Hardhat 2's `hardhat node` on EDR), from the project's pinned npm package.

Hardhat 2 reads its settings from a config file, so one is generated next to the node's log (the run
folder). It refuses to run unless the `hardhat` package resolves from its working directory, so the
process starts in the folder that holds the pinned `node_modules`. Measured against Hardhat 2.29.1
(EDR 0.12): it has no txpool_* methods, no eth_getBlockReceipts, no eth_getRawTransactionByHash, no
state dump/load and no reorg; it spells base-fee and drop control `hardhat_*`, takes `evm_mine`'s
timestamp as a bare number and `evm_setIntervalMining` in milliseconds, and does not turn automine off
when interval mining starts.

Its automine cannot queue: a transaction whose nonce is ahead is refused ("Nonce too high ... can't be
queued when automining"), and its server runs the items of a JSON-RPC batch concurrently, so a batch
of one sender's transactions (the run's funding) arrives out of order: 8 of 10 batches of 20 had
refusals. The "auto" mode of set-up is therefore interval mining every AUTO_INTERVAL_MS, which
queues like anvil's automine; blocks may then share a timestamp, as they would on anvil.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from contracts.rpc import RpcClient
from contracts.toolchain import ToolchainError, node_executable, node_modules

from .base import (
    BASE_FEE_CONTROL,
    DROP_TX,
    GAS_LIMIT_CONTROL,
    MINING_CONTROL,
    TIME_TRAVEL,
    MiningMode,
    NodeError,
    NodeKind,
    NodeSettings,
)

# The default of Hardhat 2.29 is osaka, whose per-transaction gas cap (EIP-7825, 2^24) would refuse
# the large model deployments anvil accepts (anvil enforces that cap only on request). Contracts are
# compiled for cancun; prague runs them.
HARDFORK = "prague"
AUTO_INTERVAL_MS = 100  # set-up's "auto" mining: short enough for sequential deploys, queues like anvil
DEV_MNEMONIC = "test test test test test test test test test test test junk"  # public, dev chains only
CONFIG_NAME = "hardhat.config.js"


def hardhat_cli() -> Path:
    """The pinned Hardhat's CLI entry (its bootstrap only adds a Node-version warning)."""
    path = node_modules() / "hardhat" / "internal" / "cli" / "cli.js"
    if not path.exists():
        raise ToolchainError(f"hardhat not found at {path}; run `make setup` (npm ci)")
    return path


def hardhat_config(settings: NodeSettings) -> dict[str, object]:
    """The `networks.hardhat` section for these settings (the same chain anvil would start)."""
    s = settings
    if s.prune_history is not None:
        raise NodeError("chain.prune_history: node kind 'hardhat' cannot prune its history (anvil only)")
    net: dict[str, object] = {
        "chainId": s.chain_id,
        "hardfork": HARDFORK,
        "blockGasLimit": s.gas_limit,
        "initialBaseFeePerGas": s.base_fee,
        "accounts": {"mnemonic": DEV_MNEMONIC, "count": s.accounts, "accountsBalance": str(s.balance_ether * 10**18)},
        "mining": {"auto": False, "interval": 0 if s.no_mining else AUTO_INTERVAL_MS,
                   "mempool": {"order": "priority" if s.order == "fees" else "fifo"}},
        "allowBlocksWithSameTimestamp": True,  # several set-up blocks a second keep wall-clock time
        # Logging every call costs the node CPU and fills the log under load.
        "loggingEnabled": False,
    }
    if s.genesis_timestamp is not None:
        net["initialDate"] = datetime.fromtimestamp(s.genesis_timestamp, timezone.utc).isoformat()
    return net


class HardhatNode(NodeKind):
    """A managed `hardhat node` process on a free loopback port, logging into `log_path`."""

    name = "hardhat"
    capabilities = frozenset({MINING_CONTROL, TIME_TRAVEL, DROP_TX, BASE_FEE_CONTROL, GAS_LIMIT_CONTROL})

    @property
    def config_path(self) -> Path:
        return self.log_path.parent / CONFIG_NAME

    def prepare(self) -> None:
        network = json.dumps(hardhat_config(self.settings), indent=2)
        self.config_path.write_text(f"// written by dcai-arena for this node\nmodule.exports = "
                                    f"{{ networks: {{ hardhat: {network} }} }};\n")

    def command(self) -> list[str]:
        return [node_executable(), str(hardhat_cli()), "--config", str(self.config_path),
                "node", "--hostname", "127.0.0.1", "--port", str(self.port)]

    def process_cwd(self) -> Path:
        return node_modules().parent

    def process_env(self) -> dict[str, str]:
        # No prompts, no telemetry, no update checks: the node runs unattended and offline.
        return {**os.environ, "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true", "CI": "true", "NO_COLOR": "1"}

    def ready_banner(self) -> bytes:
        return f"JSON-RPC server at http://127.0.0.1:{self.port}/".encode()

    def start(self, timeout_s: float = 30.0) -> str:
        return super().start(timeout_s)  # loading Hardhat takes a few seconds on a busy machine

    async def set_mining(self, client: RpcClient, mode: MiningMode, block_time_s: int = 1) -> None:
        await client.call("evm_setAutomine", False)  # independent of interval mining here
        interval = {"auto": AUTO_INTERVAL_MS, "interval": block_time_s * 1000, "driven": 0}[mode]
        await client.call("evm_setIntervalMining", interval)

    async def mine(self, client: RpcClient, timestamp: int | None = None) -> None:
        if timestamp is None:
            await client.call("evm_mine")
        else:
            await client.call("evm_mine", timestamp)

    async def set_next_base_fee(self, client: RpcClient, base_fee: int) -> None:
        await client.call("hardhat_setNextBlockBaseFeePerGas", hex(base_fee))

    async def drop_transactions(self, client: RpcClient, hashes: list[str]) -> None:
        if hashes:
            await client.batch([("hardhat_dropTransaction", [h]) for h in hashes])
