"""Moved to `orchestrator.nodes` (node kinds). Kept so that code written against the old module
keeps importing while the branches that still use it are merged; import from `orchestrator.nodes`."""

from .nodes import AnvilNode, NodeError, NodeSettings, free_port, mine, process_alive, set_mining
from .nodes.base import MiningMode

__all__ = ["AnvilNode", "MiningMode", "NodeError", "NodeSettings", "free_port", "mine", "process_alive",
           "set_mining"]
