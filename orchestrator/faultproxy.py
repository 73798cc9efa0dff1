"""A loopback JSON-RPC fault proxy: forwards requests to a node and injects faults at a seeded rate.

Put it between a run (or any client) and a node to see what the client does when the network
misbehaves:

    python -m orchestrator.faultproxy --target http://127.0.0.1:8545 --rate 0.15 --seed 1
    # prints "listening on http://127.0.0.1:PORT"; GET /faults on that address returns the counters

Fault kinds (each faulted request gets one, drawn with the plan's weights):

* `delay`: wait, then forward normally;
* `reset_before`: reset the connection without forwarding (the node never saw the request);
* `reset_after`: forward, then reset instead of answering (the node applied it, the client cannot
  know: the case that turns a careless retry into a duplicate transaction);
* `http_error`: answer 500, 502 or 503 without forwarding;
* `rpc_error`: answer a JSON-RPC "limit exceeded" error (code -32005) for every call, without
  forwarding, as rate-limiting providers do;
* `truncate`: forward, then send only part of the answer, either under the full Content-Length and
  reset (the body ends early) or under a shortened Content-Length (a well-framed but malformed body).

It speaks just enough HTTP/1.1 for JSON-RPC: keep-alive connections, bodies framed by
Content-Length (what JSON-RPC clients send). Decisions come from one seeded generator; which request
meets which fault still depends on arrival order, so the fault counts are what a test should check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import struct
import sys
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp

FAULT_KINDS = ("delay", "reset_before", "reset_after", "http_error", "rpc_error", "truncate")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass
class FaultPlan:
    rate: float = 0.15  # share of requests that get a fault
    weights: dict[str, float] = field(default_factory=lambda: {k: 1.0 for k in FAULT_KINDS})
    delay_s: tuple[float, float] = (0.05, 0.4)
    seed: int = 0
    # Requests carrying eth_sendRawTransaction are where a lost answer can become a duplicate or a
    # false drop: give them their own rate to aim the chaos there (None: the same rate).
    send_rate: float | None = None

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)} (known: {', '.join(FAULT_KINDS)})")
        for r in (self.rate, self.send_rate):
            if r is not None and not 0.0 <= r <= 1.0:
                raise ValueError(f"fault rate {r} must be within [0, 1]")


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _calls(body: bytes) -> list[dict[str, Any]]:
    """The JSON-RPC call objects of a request body ([] when it is not JSON-RPC)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return []
    items = parsed if isinstance(parsed, list) else [parsed]
    return [c for c in items if isinstance(c, dict)]


class FaultProxy:
    """The proxy, run inside an event loop: `await start()` gives its URL, `await close()` ends it."""

    def __init__(self, target: str, plan: FaultPlan | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.target = target
        self.plan = plan or FaultPlan()
        self.host = host
        self.port = port
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(self.plan.seed)
        self._kinds = [k for k, w in self.plan.weights.items() if w > 0]
        self._weights = [self.plan.weights[k] for k in self._kinds]
        self._server: asyncio.base_events.Server | None = None
        self._session: aiohttp.ClientSession | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._script: deque[tuple[str, str | None]] = deque()

    def force(self, kind: str, times: int = 1, *, method: str | None = None) -> None:
        """Give the next `times` requests (those calling `method`, if given) this fault, before any
        random draw: exact scenarios for tests."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
        self._script.extend([(kind, method)] * times)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stats(self) -> dict[str, Any]:
        return {"target": _redact(self.target), "rate": self.plan.rate, **{k: self.counts[k] for k in FAULT_KINDS},
                **{k: v for k, v in self.counts.items() if k not in FAULT_KINDS}}

    async def start(self) -> str:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60),
                                              connector=aiohttp.TCPConnector(limit=64))
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._conns):
                w.transport.abort()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- one connection ---------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                verb, path, headers, body = request
                if verb == "GET" and path.rstrip("/") == "/faults":
                    await self._respond(writer, 200, json.dumps(self.stats()).encode())
                    continue
                if verb != "POST":
                    await self._respond(writer, 404, b"POST JSON-RPC here, or GET /faults")
                    continue
                if body is None:
                    await self._respond(writer, 411, b"a Content-Length body is needed", close=True)
                    break
                if not await self._handle(writer, headers, body) or headers.get("connection") == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            self._conns.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader
                            ) -> tuple[str, str, dict[str, str], bytes | None] | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None  # the client closed its keep-alive connection
        lines = head.decode("latin-1").split("\r\n")
        verb, path, _version = (lines[0].split(" ", 2) + ["", ""])[:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            return verb, path, headers, await reader.readexactly(int(headers["content-length"]))
        return verb, path, headers, (b"" if verb != "POST" else None)

    async def _respond(self, writer: asyncio.StreamWriter, status: int, body: bytes, *,
                       length: int | None = None, close: bool = False) -> None:
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body) if length is None else length}\r\n"
                + ("Connection: close\r\n" if close else "") + "\r\n")
        writer.write(head.encode("latin-1") + body)
        await writer.drain()

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        """Abort with a TCP reset (linger 0), as a crashed or overloaded server does."""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    def _draw(self, methods: set[str]) -> str | None:
        if self._script and (self._script[0][1] is None or self._script[0][1] in methods):
            return self._script.popleft()[0]
        rate = self.plan.rate
        if self.plan.send_rate is not None and "eth_sendRawTransaction" in methods:
            rate = self.plan.send_rate
        if not self._kinds or self._rng.random() >= rate:
            return None
        return self._rng.choices(self._kinds, self._weights)[0]

    async def _handle(self, writer: asyncio.StreamWriter, headers: dict[str, str], body: bytes) -> bool:
        """Serve one JSON-RPC request. Returns whether the connection stays open."""
        self.counts["requests"] += 1
        calls = _calls(body)
        sends = sum(1 for c in calls if c.get("method") == "eth_sendRawTransaction")
        kind = self._draw({str(c.get("method")) for c in calls})
        if kind is not None:
            self.counts[kind] += 1
        if kind == "reset_before":
            self._reset(writer)
            return False
        if kind == "http_error":
            await self._respond(writer, self._rng.choice((500, 502, 503)), b"injected fault")
            return True
        if kind == "rpc_error":
            errors = [{"jsonrpc": "2.0", "id": c.get("id"),
                       "error": {"code": -32005, "message": "injected fault: request rate exceeded"}} for c in calls]
            out: Any = errors if body.lstrip().startswith(b"[") else (errors[0] if errors else {})
            await self._respond(writer, 200, json.dumps(out).encode())
            return True
        if kind == "delay":
            await asyncio.sleep(self._rng.uniform(*self.plan.delay_s))
        status, answer = await self._forward(headers, body)
        self.counts["forwarded"] += 1
        self.counts["sends_forwarded"] += sends
        if kind == "reset_after":
            self.counts["sends_answer_lost"] += sends
            self._reset(writer)
            return False
        if kind == "truncate":
            self.counts["sends_answer_lost"] += sends
            cut = self._rng.randrange(0, max(1, len(answer)))
            if self._rng.random() < 0.5:
                self.counts["truncate_reset"] += 1
                await self._respond(writer, status, answer[:cut], length=len(answer))
                self._reset(writer)
                return False
            self.counts["truncate_short"] += 1
            await self._respond(writer, status, answer[:cut])
            return True
        await self._respond(writer, status, answer)
        return True

    async def _forward(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        assert self._session is not None
        out_headers = {"Content-Type": headers.get("content-type", "application/json")}
        if "authorization" in headers:
            out_headers["Authorization"] = headers["authorization"]
        try:
            async with self._session.post(self.target, data=body, headers=out_headers) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            self.counts["upstream_errors"] += 1
            return 502, f"upstream unreachable: {type(e).__name__}".encode()


# ---- command line ---------------------------------------------------------------------------------


def _weights(text: str) -> dict[str, float]:
    """"delay,truncate" (equal weights) or "delay=2,truncate=1"."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, w = part.partition("=")
        out[name.strip()] = float(w) if w else 1.0
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m orchestrator.faultproxy",
                                description="JSON-RPC proxy that injects network faults at a seeded rate")
    p.add_argument("--target", required=True, help="the node's JSON-RPC URL")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    p.add_argument("--rate", type=float, default=0.15, help="share of requests faulted (0-1)")
    p.add_argument("--send-rate", type=float, default=None,
                   help="share of requests carrying eth_sendRawTransaction faulted (default: --rate)")
    p.add_argument("--kinds", default=",".join(FAULT_KINDS),
                   help="fault kinds with optional weights, e.g. 'delay=2,reset_after,truncate'")
    p.add_argument("--delay", default="0.05:0.4", help="delay range in seconds, MIN:MAX")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="append", default=[], metavar="KIND[@METHOD]",
                   help="give the first request (calling METHOD, if given) this fault before any random draw; "
                        "repeatable (see FaultProxy.force)")
    return p


async def _run(args: argparse.Namespace) -> None:
    lo, _, hi = args.delay.partition(":")
    plan = FaultPlan(rate=args.rate, weights=_weights(args.kinds), delay_s=(float(lo), float(hi or lo)),
                     seed=args.seed, send_rate=args.send_rate)
    proxy = FaultProxy(args.target, plan, host=args.host, port=args.port)
    for forced in args.force:
        kind, _, method = forced.partition("@")
        proxy.force(kind, method=method or None)
    await proxy.start()
    print(f"listening on {proxy.url} -> {_redact(args.target)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.close()
    print(json.dumps(proxy.stats()), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        asyncio.run(_run(args))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
