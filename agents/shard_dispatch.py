"""Coalesced calls whose batches leave while the loop turn that fills them is still running.

`CoalescingRpc` sends the calls of one loop turn when the turn ends. In a shard's busy tick that
turn is long: every agent's transactions are signed in it (about 0.1 ms each), so with 3,000 to
send the node sat idle for 300-500 ms and then received everything at once. Here, as soon as
`early_batch` calls are queued in the current turn, they leave at once through a helper thread
with its own event loop and its own `RpcClient` (same endpoints and settings, so the same retries,
fail-over and send confirmation), while the turn goes on signing; what is left goes at the end of
the turn as before. The GIL is shared, but the helper only encodes, writes and parses (the
signing's C calls and the socket waits release it), and the node works on the first batch while
the next is signed.

What every caller sees is unchanged: the same calls in the same order, each answered through its
own future on the shard's loop (results are handed back with `call_soon_threadsafe`). The order
in which the shard signs, records and counts its transactions does not move; only the moment a
batch reaches the node does, as network timing always could.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Sequence
from typing import Any

from contracts.rpc import RpcClient, merge_stats

from .coalescing import CoalescingRpc

_Item = tuple[str, tuple[Any, ...], "asyncio.Future[Any]"]


class EarlyCoalescingRpc(CoalescingRpc):
    def __init__(self, client: RpcClient, url: str | Sequence[str], *, early_batch: int = 250,
                 max_connections: int = 8, max_batch: int = 500):
        super().__init__(client, max_batch=max_batch)
        self.early_batch = early_batch
        self._url = url
        self._max_connections = max_connections
        self._helper_loop: asyncio.AbstractEventLoop | None = None
        self._helper_thread: threading.Thread | None = None
        self._helper_client: RpcClient | None = None
        self.early_batches = 0

    def _queued(self, loop: asyncio.AbstractEventLoop) -> None:
        if len(self._queue) >= self.early_batch:
            # The turn is still filling the queue: this part leaves now, the rest at the turn's end.
            items, self._queue = self._queue, []
            try:
                self._dispatch(loop, items)
            except Exception:  # noqa: BLE001 - no helper (thread limit...): these go from this loop
                task = asyncio.ensure_future(self._send(items))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _dispatch(self, loop: asyncio.AbstractEventLoop, items: list[_Item]) -> None:
        helper = self._helper()
        assert self._helper_client is not None
        calls = [(m, p) for m, p, _ in items]
        done = asyncio.run_coroutine_threadsafe(self._helper_client.batch(calls), helper)
        self.batches += 1
        self.early_batches += 1
        done.add_done_callback(lambda f: loop.call_soon_threadsafe(self._deliver, items, f))

    @staticmethod
    def _deliver(items: list[_Item], done: concurrent.futures.Future[list[Any]]) -> None:
        try:
            results: list[Any] = done.result()
        except Exception as e:  # noqa: BLE001 - transport failure: every caller sees it, as in _send
            results = [e] * len(items)
        for (_m, _p, fut), r in zip(items, results):
            if fut.done():
                continue
            if isinstance(r, Exception):
                fut.set_exception(r)
            else:
                fut.set_result(r)

    def _helper(self) -> asyncio.AbstractEventLoop:
        if self._helper_loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="shard-rpc-dispatch", daemon=True)
            thread.start()
            self._helper_loop, self._helper_thread = loop, thread
            # Built on the helper's loop: an aiohttp session belongs to the loop it was made on.
            self._helper_client = RpcClient(self._url, max_connections=self._max_connections)
        return self._helper_loop

    def stats(self) -> dict[str, Any]:
        """The main client's counters plus the helper's (retries, faults, HTTP requests)."""
        parts = [self.client.stats()] + ([self._helper_client.stats()] if self._helper_client else [])
        return merge_stats(parts)

    async def close(self) -> None:
        loop, thread, client = self._helper_loop, self._helper_thread, self._helper_client
        self._helper_loop = self._helper_thread = self._helper_client = None
        if loop is None or thread is None or client is None:
            return
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(client.close(), loop))
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join, 5)
            if not thread.is_alive():
                loop.close()
