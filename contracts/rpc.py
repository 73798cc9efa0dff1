"""Async JSON-RPC client: one pooled keep-alive HTTP session, single calls and batches, one or
several endpoints of the same chain.

The layering follows web3.py's provider/middleware split in miniature: `RpcClient` is the provider
(transport, pooling, batching, retries, fail-over) and callers add meaning on top. A URL may hold
credentials: it is only ever shown through `redact_url`.

Faults and what is done about them:

* a fault before the request reached the node (connection refused), one that may have come after
  it (reset, disconnect, timeout, truncated or malformed body, HTTP 429/5xx) and a JSON-RPC
  "limit exceeded" answer are retried with exponential back-off and jitter, up to `retries` more
  attempts, then `RpcTransportError` says what happened on each endpoint tried;
* with several endpoints, a faulting endpoint is set aside for a cool-down and the next attempt
  goes to the next one; the caller's own order is the preference (so callers spread load by
  rotating it), and an endpoint is tried again once its cool-down is over;
* a request that may already have been applied is resent only when resending is harmless.
  `eth_sendRawTransaction` is: the same signed bytes have the same hash, so a node answering a
  resend with "already known" or "nonce too low" is asked for that hash, and if it holds the
  transaction the send counts as done (no false drop, and never a second transaction). Methods
  that change the node each time they run (mining, clock moves, reorgs) are not resent after such
  a fault: the error says their fate is unknown.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from .signing import keccak256

# HTTP statuses worth another attempt: overload and gateway trouble, not a bad request or bad auth.
RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
# JSON-RPC codes meaning "not processed, try later" (EIP-1474 limit exceeded, used by providers for
# rate limits). Execution errors are answers, never retried.
RETRYABLE_RPC_CODES = frozenset({-32005})
# Methods that change the node on every run: never resent once the request may have arrived.
NOT_IDEMPOTENT = frozenset({"evm_mine", "anvil_mine", "evm_increaseTime", "anvil_reorg", "anvil_rollback",
                            "evm_revert", "hardhat_mine"})


class RpcError(Exception):
    """An error object returned by the node (the request reached it and was answered)."""

    def __init__(self, code: int, message: str, data: Any = None, method: str = ""):
        super().__init__(f"{method}: {message} (code {code})" if method else f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data
        self.method = method


class RpcTransportError(Exception):
    """The request did not get a usable answer (connection refused or reset, timeout, bad HTTP,
    truncated body), after every attempt allowed."""


class _Fault(Exception):
    """One failed attempt. `delivered`: the node may have received (and applied) the request."""

    def __init__(self, kind: str, detail: str, *, delivered: bool, retryable: bool = True):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.delivered = delivered
        self.retryable = retryable


def redact_url(url: str) -> str:
    """The URL without user, password and query string (which may carry an API key)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact_urls(value: str | Sequence[str] | None) -> str | list[str] | None:
    """`redact_url` over one URL or a list of them (what `chain.rpc_url` may hold)."""
    if value is None or isinstance(value, str):
        return None if value is None else redact_url(value)
    return [redact_url(u) for u in value]


def endpoint_list(value: str | Sequence[str]) -> list[str]:
    urls = [value] if isinstance(value, str) else list(value)
    if not urls:
        raise ValueError("no RPC endpoint given")
    return urls


def rotate_endpoints(value: str | Sequence[str], i: int) -> list[str]:
    """The endpoints with the i-th first: give consumer i this order and the load spreads round-robin
    while every consumer can still fail over to all the others."""
    urls = endpoint_list(value)
    k = i % len(urls)
    return urls[k:] + urls[:k]


def merge_stats(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Sum `RpcClient.stats()` of several clients (the shards of a run)."""
    out: dict[str, Any] = {"http_requests": 0, "retried": 0, "failovers": 0, "faults": {}, "sends_confirmed": 0,
                           "gave_up": 0}
    for p in parts:
        for k, v in p.items():
            if k == "faults":
                for kind, n in v.items():
                    out["faults"][kind] = out["faults"].get(kind, 0) + n
            elif isinstance(v, int):
                out[k] = out.get(k, 0) + v
    return out


def tx_hash_of(raw_hex: str) -> str:
    """The hash of a signed raw transaction (keccak of its bytes, typed envelope included)."""
    raw = bytes.fromhex(raw_hex[2:] if raw_hex.startswith("0x") else raw_hex)
    return "0x" + keccak256(raw).hex()


class RpcClient:
    """A connection pool to one node through one or several endpoints. Create and use it inside a
    running event loop."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        timeout_s: float = 30.0,
        max_connections: int = 32,
        retries: int = 5,
        backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
        cooldown_s: float = 5.0,
    ):
        self.urls = endpoint_list(url)
        self.url = self.urls[0]
        self.display_url = ", ".join(redact_url(u) for u in self.urls)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_connections = max_connections
        self._retries = retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._cooldown_s = cooldown_s
        self._down_until = [0.0] * len(self.urls)
        self._strikes = [0] * len(self.urls)  # consecutive failures per endpoint
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._jitter = random.Random()  # wall-clock spreading only: no effect on any result
        self.requests = 0  # HTTP round trips, for benchmarks
        self.retried = 0  # attempts after the first (whole requests and re-sent batch items)
        self.failovers = 0  # times an attempt moved to another endpoint
        self.faults: Counter[str] = Counter()  # failed attempts by kind
        self.sends_confirmed = 0  # raw transactions refused on a resend but found held by the node
        self.gave_up = 0  # requests that ended in RpcTransportError

    def stats(self) -> dict[str, Any]:
        return {"http_requests": self.requests, "retried": self.retried, "failovers": self.failovers,
                "faults": dict(self.faults), "sends_confirmed": self.sends_confirmed, "gave_up": self.gave_up}

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

    # ---- transport ----------------------------------------------------------------------------

    def _pick(self) -> int:
        """The first endpoint in preference order not cooling down (else the one back soonest)."""
        now = time.monotonic()
        for i, until in enumerate(self._down_until):
            if until <= now:
                return i
        return min(range(len(self.urls)), key=lambda i: self._down_until[i])

    def _backoff(self, attempt: int) -> float:
        # Equal jitter: at least half the exponential step, so retries of many clients that failed
        # together spread out instead of hitting the node in lockstep.
        step = min(self._max_backoff_s, self._backoff_s * (2**attempt))
        return step / 2 + self._jitter.random() * step / 2

    async def _attempt(self, i: int, body: str) -> Any:
        url = self.urls[i]
        session = self._ensure_session()
        self.requests += 1
        try:
            async with session.post(url, data=body) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    snippet = raw[:200].decode("utf-8", errors="replace")
                    raise _Fault(f"http_{resp.status}", f"HTTP {resp.status}: {snippet}", delivered=True,
                                 retryable=resp.status in RETRYABLE_HTTP)
        except aiohttp.InvalidURL as e:
            raise _Fault("bad_url", f"invalid URL: {e}", delivered=False, retryable=False) from None
        except aiohttp.ClientConnectorError as e:
            # Could not even connect: the request certainly did not arrive.
            raise _Fault("connect", f"cannot connect: {e.os_error or e}", delivered=False) from None
        except aiohttp.ServerDisconnectedError:
            raise _Fault("disconnected", "server closed the connection before answering", delivered=True) from None
        except aiohttp.ClientOSError as e:
            raise _Fault("reset", f"connection lost: {e}", delivered=True) from None
        except aiohttp.ClientPayloadError as e:
            raise _Fault("truncated", f"response body cut short: {e}", delivered=True) from None
        except asyncio.TimeoutError:
            raise _Fault("timeout", f"no answer within {self._timeout.total:.0f} s", delivered=True) from None
        except aiohttp.ClientError as e:
            raise _Fault("connection", f"{type(e).__name__}: {e}", delivered=True) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise _Fault("malformed", f"unparseable body ({len(raw)} bytes)", delivered=True) from None

    async def _post(self, payload: Any, methods: Sequence[str]) -> Any:
        """One request, retried on faults. Returns the decoded JSON reply."""
        body = json.dumps(payload)
        resend_ok = not any(m in NOT_IDEMPOTENT for m in methods)
        what = methods[0] if len(methods) == 1 else f"batch of {len(methods)}"
        tried: list[str] = []
        for attempt in range(self._retries + 1):
            i = self._pick()
            try:
                reply = await self._attempt(i, body)
                code = _whole_reply_error_code(reply)
                if code in RETRYABLE_RPC_CODES:
                    message = reply["error"].get("message", "")
                    raise _Fault(f"rpc_{code}", f"node busy: {message} (code {code})", delivered=False)
                self._strikes[i] = 0
                return reply
            except _Fault as f:
                self.faults[f.kind] += 1
                tried.append(f"{redact_url(self.urls[i])}: {f.detail}")
                if len(self.urls) > 1:
                    # A dead endpoint is probed again after a cool-down that doubles with each
                    # consecutive failure (capped), so it costs one refused connection now and then.
                    self._strikes[i] += 1
                    pause = min(60.0, self._cooldown_s * 2 ** (self._strikes[i] - 1))
                    self._down_until[i] = time.monotonic() + pause
                    if self._pick() != i:
                        self.failovers += 1
                last_attempt = attempt == self._retries
                if not f.retryable or last_attempt or (f.delivered and not resend_ok):
                    self.gave_up += 1
                    unknown = " (it may have been applied: not resent)" if f.delivered and not resend_ok else ""
                    raise RpcTransportError(
                        f"{what}: no usable answer after {attempt + 1} attempt(s){unknown}; "
                        + "; ".join(tried[-4:])) from None
                self.retried += 1
                await asyncio.sleep(self._backoff(attempt))
        raise AssertionError("unreachable")

    # ---- calls --------------------------------------------------------------------------------

    async def call(self, method: str, *params: Any) -> Any:
        reply = await self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)},
                                 (method,))
        if not isinstance(reply, dict):
            raise RpcTransportError(f"{method}: reply is not a JSON-RPC object from {self.display_url}")
        if "error" in reply:
            err = reply["error"] or {}
            error = RpcError(err.get("code", 0), err.get("message", ""), err.get("data"), method)
            if method == "eth_sendRawTransaction" and params:
                (resolved,) = await self._confirm_sends([str(params[0])], [error])
                if isinstance(resolved, Exception):
                    raise resolved
                return resolved
            raise error
        return reply.get("result")

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Send calls as one JSON-RPC batch. Each result is the value or an `RpcError` instance
        (an `RpcTransportError` instance for a raw transaction whose fate could not be learnt)."""
        if not calls:
            return []
        out: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for round_ in range(self._retries + 1):
            first = next(self._ids)
            payload = [{"jsonrpc": "2.0", "id": first + k, "method": calls[i][0], "params": list(calls[i][1])}
                       for k, i in enumerate(todo)]
            # Reserve the ids used above so later requests never collide.
            for _ in range(len(todo) - 1):
                next(self._ids)
            replies = await self._post(payload, [calls[i][0] for i in todo])
            if not isinstance(replies, list):
                # Some nodes answer a whole batch with one error object.
                err = replies.get("error", {}) if isinstance(replies, dict) else {}
                raise RpcError(err.get("code", 0), err.get("message", "batch rejected"), err.get("data"), "batch")
            by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
            again: list[int] = []
            for k, i in enumerate(todo):
                method = calls[i][0]
                r = by_id.get(first + k)
                if r is None:
                    out[i] = RpcError(0, "missing reply in batch", None, method)
                    again.append(i)
                elif "error" in r:
                    e = r["error"] or {}
                    out[i] = RpcError(e.get("code", 0), e.get("message", ""), e.get("data"), method)
                    if out[i].code in RETRYABLE_RPC_CODES:
                        again.append(i)
                else:
                    out[i] = r.get("result")
            # Items the node skipped or was too busy for go again on their own; a skipped one may have
            # been applied, so only what is safe to resend is.
            again = [i for i in again if calls[i][0] not in NOT_IDEMPOTENT]
            if not again or round_ == self._retries:
                break
            for i in again:
                self.faults["rpc_item"] += 1
            self.retried += len(again)
            todo = again
            await asyncio.sleep(self._backoff(round_))
        sends = [i for i, (m, p) in enumerate(calls)
                 if m == "eth_sendRawTransaction" and p and isinstance(out[i], RpcError)]
        if sends:
            resolved = await self._confirm_sends([str(calls[i][1][0]) for i in sends], [out[i] for i in sends])
            for i, r in zip(sends, resolved):
                out[i] = r
        return out

    async def _confirm_sends(self, raws: list[str], errors: list[RpcError]) -> list[Any]:
        """For raw transactions the node refused: the hash where the node holds that very
        transaction (a resend of one that arrived, answered "already known" or, once mined, "nonce
        too low"), else the refusal. The lookup costs one call per refusal, and refusals are rare."""
        hashes = [tx_hash_of(r) for r in raws]
        try:
            if len(hashes) == 1:
                found = [await self.call("eth_getTransactionByHash", hashes[0])]
            else:
                found = await self.batch([("eth_getTransactionByHash", [h]) for h in hashes])
        except (RpcTransportError, RpcError) as e:
            # The refusal may be for a transaction the node holds: its fate is unknown, not "refused".
            return [RpcTransportError(f"eth_sendRawTransaction refused ({err.message}) and the lookup of "
                                      f"{h} failed: {e}") for h, err in zip(hashes, errors)]
        out: list[Any] = []
        for h, tx, err in zip(hashes, found, errors):
            if isinstance(tx, dict) and str(tx.get("hash", "")).lower() == h:
                self.sends_confirmed += 1
                out.append(h)
            elif isinstance(tx, RpcError):
                out.append(RpcTransportError(f"eth_sendRawTransaction refused ({err.message}) and the lookup "
                                             f"of {h} failed: {tx.message}"))
            else:
                out.append(err)
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


def _whole_reply_error_code(reply: Any) -> int | None:
    """The code of an error object answering the whole request (a single call, or a batch refused
    as one)."""
    if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
        code = reply["error"].get("code")
        return code if isinstance(code, int) else None
    return None
