"""Async JSON-RPC client: one pooled keep-alive HTTP session, single calls and batches.

The layering follows web3.py's provider/middleware split in miniature: `RpcClient` is the provider
(transport, pooling, batching, retries on connection faults) and callers add meaning on top. The
URL may hold credentials: it is only ever shown through `redact_url`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp


class RpcError(Exception):
    """An error object returned by the node (the request reached it and was answered)."""

    def __init__(self, code: int, message: str, data: Any = None, method: str = ""):
        super().__init__(f"{method}: {message} (code {code})" if method else f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data
        self.method = method


class RpcTransportError(Exception):
    """The request did not get an answer (connection refused or reset, timeout, bad HTTP)."""


def redact_url(url: str) -> str:
    """The URL without user, password and query string (which may carry an API key)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class RpcClient:
    """One connection pool to one node. Create and use it inside a running event loop."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 30.0,
        max_connections: int = 32,
        retries: int = 3,
        backoff_s: float = 0.05,
    ):
        self.url = url
        self.display_url = redact_url(url)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_connections = max_connections
        self._retries = retries
        self._backoff_s = backoff_s
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0  # HTTP round trips, for benchmarks

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                json_serialize=json.dumps,
                headers={"Content-Type": "application/json"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _post(self, payload: Any) -> Any:
        body = json.dumps(payload)
        last: Exception | None = None
        for attempt in range(self._retries + 1):
            try:
                session = self._ensure_session()
                self.requests += 1
                async with session.post(self.url, data=body) as resp:
                    text = await resp.text()
                    if resp.status != 200:
                        raise RpcTransportError(f"HTTP {resp.status} from {self.display_url}: {text[:200]}")
                    return json.loads(text)
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError, json.JSONDecodeError) as e:
                last = e
                if attempt < self._retries:
                    await asyncio.sleep(self._backoff_s * (2**attempt))
        raise RpcTransportError(f"no answer from {self.display_url}: {type(last).__name__}: {last}")

    async def call(self, method: str, *params: Any) -> Any:
        reply = await self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        if "error" in reply:
            err = reply["error"]
            raise RpcError(err.get("code", 0), err.get("message", ""), err.get("data"), method)
        return reply.get("result")

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Send calls as one JSON-RPC batch. Each result is the value or an `RpcError` instance."""
        if not calls:
            return []
        first = next(self._ids)
        payload = [
            {"jsonrpc": "2.0", "id": first + i, "method": m, "params": list(p)} for i, (m, p) in enumerate(calls)
        ]
        # Reserve the ids used above so later requests never collide.
        for _ in range(len(calls) - 1):
            next(self._ids)
        replies = await self._post(payload)
        if not isinstance(replies, list):
            # Some nodes answer a whole batch with one error object.
            err = replies.get("error", {}) if isinstance(replies, dict) else {}
            raise RpcError(err.get("code", 0), err.get("message", "batch rejected"), err.get("data"), "batch")
        by_id = {r.get("id"): r for r in replies}
        out: list[Any] = []
        for i, (method, _params) in enumerate(calls):
            r = by_id.get(first + i)
            if r is None:
                out.append(RpcError(0, "missing reply in batch", None, method))
            elif "error" in r:
                e = r["error"]
                out.append(RpcError(e.get("code", 0), e.get("message", ""), e.get("data"), method))
            else:
                out.append(r.get("result"))
        return out

    # ---- a few typed conveniences used everywhere ----------------------------------------------

    async def block_number(self) -> int:
        return int(await self.call("eth_blockNumber"), 16)

    async def chain_id(self) -> int:
        return int(await self.call("eth_chainId"), 16)

    async def get_block(self, tag: int | str = "latest", full: bool = False) -> dict[str, Any] | None:
        t = hex(tag) if isinstance(tag, int) else tag
        return await self.call("eth_getBlockByNumber", t, full)

    async def balance(self, address: str, tag: int | str = "latest") -> int:
        t = hex(tag) if isinstance(tag, int) else tag
        return int(await self.call("eth_getBalance", address, t), 16)

    async def nonce(self, address: str, tag: str = "pending") -> int:
        return int(await self.call("eth_getTransactionCount", address, tag), 16)

    async def eth_call(self, to: str, data: bytes, tag: int | str = "latest", sender: str | None = None) -> bytes:
        t = hex(tag) if isinstance(tag, int) else tag
        tx: dict[str, str] = {"to": to, "data": "0x" + data.hex()}
        if sender:
            tx["from"] = sender
        return bytes.fromhex((await self.call("eth_call", tx, t))[2:])
