"""Free calls answering policies' questions: each (predict of a sample, remainder of a contribution,
a counter) is made once per tick however many agents ask, as futures shared through a per-tick cache,
and the calls of one loop turn travel as one JSON-RPC batch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from contracts.abi import ContractABI

from .coalescing import CoalescingRpc
from .policies.base import Observation
from .shard_types import Agent, ShardConfig


class FreeCalls:
    """Mixed into ShardCore."""

    config: ShardConfig
    rpc: CoalescingRpc | None
    trainer_abi: ContractABI
    handler_abi: ContractABI | None
    incentive_abi: ContractABI | None
    _cache: dict[Any, asyncio.Future[Any]]

    def _shared(self, key: Any, make: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        fut = self._cache.get(key)
        if fut is None:
            fut = asyncio.ensure_future(make())
            self._cache[key] = fut
        return fut

    async def _view(self, to: str, abi: ContractABI, fn: str, *args: Any) -> Any:
        assert self.rpc is not None
        f = abi.fn(fn)
        out = await self.rpc.call("eth_call", {"to": to, "data": "0x" + f.encode(*args).hex()}, "latest")
        return f.decode(bytes.fromhex(out[2:]))

    async def _answer(self, agent: Agent, obs: Observation) -> None:
        wants = agent.policy.wants(obs)
        agent.wants_pool = wants.pool
        if not wants:
            return
        jobs: list[tuple[str, Any, asyncio.Future[Any]]] = []
        for data in wants.predictions:
            jobs.append(("p", data, self._shared(("predict", data), lambda d=data: self._view(
                self.config.trainer, self.trainer_abi, "predict", list(d)))))
        if self.handler_abi is not None and self.config.data_handler:
            for c in wants.claimable:
                jobs.append(("c", c.key, self._shared(("claimable", c.key), lambda c=c: self._view(
                    self.config.data_handler, self.handler_abi, "getClaimableAmount", list(c.data), c.label,
                    c.added_time, c.author))))
            for c in wants.claimed:
                jobs.append(("h", c.key, self._shared(("claimed", c.key, obs.address), lambda c=c: self._view(
                    self.config.data_handler, self.handler_abi, "hasClaimed", list(c.data), c.label,
                    c.added_time, c.author, obs.address))))
        if wants.num_valid and self.incentive_abi is not None:
            jobs.append(("v", None, self._shared(("numValid", obs.address), lambda: self._view(
                self.config.incentive, self.incentive_abi, "numValid", obs.address))))
            jobs.append(("t", None, self._shared(("totalGood",), lambda: self._view(
                self.config.incentive, self.incentive_abi, "totalGoodDataCount"))))
        if wants.pool:
            assert self.rpc is not None
            jobs.append(("q", None, self._shared(("pool",), lambda: self._pool.pending_count(self.rpc))))  # type: ignore[arg-type]
        results = await asyncio.gather(*(j[2] for j in jobs), return_exceptions=True)
        for (kind, key, _), r in zip(jobs, results):
            if isinstance(r, BaseException):
                continue  # unanswered: the policy sees nothing for it this block
            if kind == "p":
                obs.predictions[key] = int(r)
            elif kind == "c":
                obs.claimable[key] = int(r)
            elif kind == "h":
                obs.claimed[key] = bool(r)
            elif kind == "v":
                obs.num_valid = int(r)
            elif kind == "t":
                obs.total_good = int(r)
            elif kind == "q":
                obs.pool_pending = int(r)
