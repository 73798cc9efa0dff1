"""Coalesce concurrent JSON-RPC calls from many agent tasks into batches.

Each agent awaits an ordinary-looking `call`; calls issued before the event loop next runs its
ready callbacks travel together as one HTTP request. With hundreds of agents stepping at once this
turns hundreds of round trips into a few.
"""

from __future__ import annotations

import asyncio
from typing import Any

from contracts.rpc import RpcClient


class CoalescingRpc:
    def __init__(self, client: RpcClient, max_batch: int = 500):
        self.client = client
        self.max_batch = max_batch
        self._queue: list[tuple[str, tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0

    async def call(self, method: str, *params: Any) -> Any:
        return await self.submit(method, *params)

    def submit(self, method: str, *params: Any) -> asyncio.Future[Any]:
        """Queue a call and return its future: a caller with many calls gathers the futures
        themselves, with no task per call (one task each was a tenth of a busy shard's CPU)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((method, params, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        else:
            self._queued(loop)
        return fut

    def _queued(self, loop: asyncio.AbstractEventLoop) -> None:
        """A call joined a turn's queue that is already scheduled to flush (a subclass may send early)."""

    def _flush(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        for i in range(0, len(queue), self.max_batch):
            task = asyncio.ensure_future(self._send(queue[i:i + self.max_batch]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, items: list[tuple[str, tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        self.batches += 1
        try:
            if len(items) == 1:
                method, params, fut = items[0]
                try:
                    result: Any = await self.client.call(method, *params)
                except Exception as e:  # noqa: BLE001 - handed to the waiting agent
                    result = e
                results = [result]
            else:
                results = await self.client.batch([(m, p) for m, p, _ in items])
        except Exception as e:  # noqa: BLE001 - transport failure: every caller sees it
            results = [e] * len(items)
        for (_m, _p, fut), r in zip(items, results):
            if fut.done():
                continue
            if isinstance(r, Exception):
                fut.set_exception(r)
            else:
                fut.set_result(r)
