"""Node kinds: managed anvil (default), managed Hardhat, an external URL; see `base.NodeKind`."""

from .anvil import AnvilNode, mine, set_mining
from .base import (
    ALL_CAPABILITIES,
    BASE_FEE_CONTROL,
    BLOCK_RECEIPTS,
    DROP_TX,
    GAS_LIMIT_CONTROL,
    MINING_CONTROL,
    PRUNE_HISTORY,
    RAW_TX_BY_HASH,
    REORG,
    STATE_DUMP,
    TIME_TRAVEL,
    TXPOOL,
    MiningMode,
    NodeError,
    NodeKind,
    NodeSettings,
    UnsupportedByNode,
    free_port,
    pool_hashes,
    process_alive,
)
from .external import ExternalNode
from .hardhat import HardhatNode
from .registry import DEFAULT, make_node, managed_kinds, node_kind, node_kinds

__all__ = [
    "ALL_CAPABILITIES", "BASE_FEE_CONTROL", "BLOCK_RECEIPTS", "DEFAULT", "DROP_TX", "GAS_LIMIT_CONTROL",
    "MINING_CONTROL", "PRUNE_HISTORY", "RAW_TX_BY_HASH", "REORG", "STATE_DUMP", "TIME_TRAVEL", "TXPOOL",
    "AnvilNode", "ExternalNode", "HardhatNode", "MiningMode", "NodeError", "NodeKind", "NodeSettings",
    "UnsupportedByNode", "free_port", "make_node", "managed_kinds", "mine", "node_kind", "node_kinds",
    "pool_hashes", "process_alive", "set_mining",
]
