"""A node the run does not manage, reached by URL (`chain.rpc_url`).

Its capabilities are found by asking it: the client version names a node whose dialect we know
(anvil, Hardhat); for any other node only read-only probes decide (`txpool_status`). The run never
mines or moves time on an external node, so mining control is not claimed even when the node has it.
"""

from __future__ import annotations

from pathlib import Path

from contracts.rpc import RpcClient, RpcError

from .anvil import AnvilNode
from .base import MINING_CONTROL, TXPOOL, NodeKind, NodeSettings
from .hardhat import HardhatNode

# web3_clientVersion prefixes of the nodes whose dialect a kind here speaks.
KNOWN_CLIENTS: tuple[tuple[str, type[NodeKind]], ...] = (("anvil/", AnvilNode), ("hardhatnetwork/", HardhatNode))


class ExternalNode(NodeKind):
    name = "external"
    managed = False
    capabilities: frozenset[str] = frozenset()  # until `probe`

    def __init__(self, url: str | list[str], settings: NodeSettings | None = None, log_path: Path | None = None):
        super().__init__(settings or NodeSettings(), log_path or Path("external-node.log"))
        self._url = url if isinstance(url, str) else url[0]
        self._dialect: NodeKind | None = None
        self.client_version: str | None = None

    @property
    def url(self) -> str:
        return self._url

    def command(self) -> list[str]:
        return []

    def ready_banner(self) -> bytes:
        return b""

    def start(self, timeout_s: float = 15.0) -> str:
        return self._url  # nothing to start

    def stop(self, timeout_s: float = 5.0) -> None:
        pass  # not ours to stop

    async def probe(self, client: RpcClient) -> frozenset[str]:
        """Find what the node at the URL can do, with read-only calls only."""
        try:
            self.client_version = str(await client.call("web3_clientVersion"))
        except RpcError:
            self.client_version = ""
        lowered = self.client_version.lower()
        kind = next((k for prefix, k in KNOWN_CLIENTS if lowered.startswith(prefix)), None)
        if kind is not None:
            self._dialect = kind(self.settings, self.log_path)
            self.capabilities = kind.capabilities - {MINING_CONTROL}
        else:
            try:
                await client.call("txpool_status")
                self.capabilities = frozenset({TXPOOL})
            except RpcError:
                self.capabilities = frozenset()
        return self.capabilities

    async def set_next_base_fee(self, client: RpcClient, base_fee: int) -> None:
        if self._dialect is None:
            await super().set_next_base_fee(client, base_fee)
        else:
            await self._dialect.set_next_base_fee(client, base_fee)

    async def drop_transactions(self, client: RpcClient, hashes: list[str]) -> None:
        if self._dialect is None:
            await super().drop_transactions(client, hashes)
        else:
            await self._dialect.drop_transactions(client, hashes)
