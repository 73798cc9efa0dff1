"""Node kinds by name: the built-ins plus any installed package's, from the `dcai.nodes` entry points.

A plugin registers `name = "pkg.module:NodeKindSubclass"` under `[project.entry-points."dcai.nodes"]`;
`chain.node: name` then picks it. A plugin cannot replace a built-in (one name, one meaning).
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from .anvil import AnvilNode
from .base import NodeError, NodeKind, NodeSettings
from .external import ExternalNode
from .hardhat import HardhatNode

GROUP = "dcai.nodes"
BUILTIN: dict[str, type[NodeKind]] = {"anvil": AnvilNode, "hardhat": HardhatNode, "external": ExternalNode}
DEFAULT = "anvil"


@cache
def node_kinds() -> dict[str, type[NodeKind]]:
    kinds = dict(BUILTIN)
    for ep in entry_points(group=GROUP):
        if ep.name in BUILTIN:
            raise NodeError(f"entry point {GROUP}:{ep.name} ({ep.value}) would replace the built-in node kind")
        try:
            kind = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin is named, not a traceback
            raise NodeError(f"entry point {GROUP}:{ep.name} ({ep.value}) failed to load: {e}") from e
        if not (isinstance(kind, type) and issubclass(kind, NodeKind)):
            raise NodeError(f"entry point {GROUP}:{ep.name} ({ep.value}) is not a NodeKind subclass")
        kinds[ep.name] = kind
    return kinds


def managed_kinds() -> list[str]:
    """Names `chain.node` accepts: kinds the run starts itself."""
    return sorted(name for name, kind in node_kinds().items() if kind.managed)


def node_kind(name: str) -> type[NodeKind]:
    try:
        return node_kinds()[name]
    except KeyError:
        raise NodeError(f"unknown node kind {name!r}; known: {', '.join(sorted(node_kinds()))}") from None


def make_node(name: str, settings: NodeSettings, log_path: Path | None = None) -> NodeKind:
    """A managed node of kind `name`, logging into `log_path` (default: `<name>.log` here)."""
    kind = node_kind(name)
    if not kind.managed:
        raise NodeError(f"node kind {name!r} is not started by the run; give its URL as chain.rpc_url")
    return kind(settings, log_path or Path(f"{name}.log"))
