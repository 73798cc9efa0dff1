"""The chain's clock as the run sees it: how the next block comes (the run mines it, the node mines
on its interval, or an external node mines on its own), idle-time warps, mining pauses and block
time changes. The clock owns `block_time` and stamps it on every block it hands out, so a block
time change reaches the policies with the next block. Chosen by name: `make_clock`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from agents.policies.base import FINISHED
from agents.shard import BlockInfo
from contracts.rpc import RpcError, RpcTransportError

from ..monitor import next_base_fee

log = structlog.get_logger("dcai.run")

MIN_WARP_BLOCKS = 10  # skip idle chain time only when the gap is worth this many blocks
POLL_S = 0.01


class Clock:
    """Interval mining on a node the run manages (the default)."""

    kind = "interval"
    can_control = True  # mining mode and time can be changed (a managed node)

    def __init__(self, client: Any, block_time: int, rng: Any, node: Any = None):
        self.client = client
        self.node = node  # the managed node kind (None for an external node): it spells the control calls
        self.block_time = block_time
        self.jitter = 0
        self.pause_left = 0  # blocks' worth of time without mining, from a pause_mining event
        self.rng = rng  # jitter draws: seeded, so the same scenario gives the same block times
        self._head_seen_at = time.monotonic()

    async def latest(self) -> BlockInfo:
        b = await self.client.get_block("latest")
        assert b is not None
        base_fee = int(b.get("baseFeePerGas", "0x0"), 16)
        used, limit = int(b["gasUsed"], 16), int(b["gasLimit"], 16)
        return BlockInfo(int(b["number"], 16), int(b["timestamp"], 16), next_base_fee(base_fee, used, limit),
                         fill=used / limit if limit else 0.0, block_time=self.block_time)

    async def start(self) -> None:
        """After set-up (automine): the scenario's own mining."""
        await self.node.set_mining(self.client, "interval", self.block_time)

    async def after_restart(self) -> None:
        if self.pause_left == 0:
            await self.node.set_mining(self.client, "interval", self.block_time)

    # ---- chaos --------------------------------------------------------------------------------

    async def pause(self, blocks: int) -> None:
        await self.node.set_mining(self.client, "driven")
        self.pause_left = blocks

    async def set_block_time(self, block_time: int, jitter: int) -> None:
        self.block_time = block_time
        self.jitter = jitter
        if self.pause_left == 0:
            await self.node.set_mining(self.client, "interval", block_time)

    async def _resume(self) -> None:
        await self.node.set_mining(self.client, "interval", self.block_time)

    async def paused_block(self) -> bool:
        """While paused: one block's worth of wall time passes without a block. Returns True when
        mining resumed with this call (the caller records it)."""
        self.pause_left -= 1
        resumed = self.pause_left == 0
        if resumed:
            await self._resume()
        await asyncio.sleep(self.block_time)
        return resumed

    # ---- moving on ----------------------------------------------------------------------------

    def warp_target(self, reports: list[Any], head: BlockInfo) -> int | None:
        """The chain time to skip to when every agent is waiting for a later moment, or None."""
        if any(r.next_wake is None or r.in_flight for r in reports):
            return None
        wake = min(r.next_wake for r in reports if r.next_wake is not None)
        if wake == FINISHED or wake <= head.timestamp + MIN_WARP_BLOCKS * self.block_time:
            return None
        return wake

    async def advance(self, head: BlockInfo, warp_to: int | None) -> int | None:
        """Let the next block come, at `warp_to` if given. Returns the warp applied, if any."""
        if warp_to is None:
            return None
        try:
            seconds = warp_to - head.timestamp - self.block_time
            if self.node is not None:
                await self.node.increase_time(self.client, seconds)
            else:  # a node given by URL: a dev node (anvil, Hardhat) answers this; others refuse it
                await self.client.call("evm_increaseTime", seconds)
        except (RpcTransportError, RpcError) as e:
            # A warp is only a shortcut, and one that may have been applied is never resent (the
            # clock would move twice): go on, the next block's time tells.
            log.warning("clock warp got no answer", block=head.number, error=str(e))
            return None
        return warp_to

    async def next_block(self, head: BlockInfo, deadline: float, stopping: Callable[[], bool]) -> BlockInfo:
        """Wait for the next block. The node mines on its own clock: sleep through most of the block
        time instead of polling it, then poll briefly (polling all the time cost the driver a core)."""
        nap = self._head_seen_at + 0.85 * self.block_time - time.monotonic()
        if nap > 0:
            await asyncio.sleep(nap)
        return await self._poll(head, deadline, stopping)

    async def _poll(self, head: BlockInfo, deadline: float, stopping: Callable[[], bool]) -> BlockInfo:
        while True:
            latest = await self.latest()
            if latest.number > head.number:
                self._head_seen_at = time.monotonic()
                return latest
            if stopping() and time.monotonic() > deadline:
                return head
            await asyncio.sleep(POLL_S)

    def seen_now(self) -> None:
        self._head_seen_at = time.monotonic()


class ExternalClock(Clock):
    """A node the run does not manage: it mines on its own; nothing about its clock can be changed
    (chaos against it is refused at validation, by capability)."""

    kind = "external"
    can_control = False

    async def start(self) -> None:
        return None

    async def after_restart(self) -> None:
        return None


class DrivenClock(Clock):
    """The run mines every block itself, `block_time` (plus seeded jitter) after the last one: the
    same scenario and seed give the same chain times, so driven runs replay exactly."""

    kind = "driven"
    GENESIS = 1_700_000_000  # chain time of block 0 in driven runs: the same every run

    async def start(self) -> None:
        await self.node.set_mining(self.client, "driven", self.block_time)

    async def after_restart(self) -> None:
        return None

    async def pause(self, blocks: int) -> None:
        self.pause_left = blocks

    async def set_block_time(self, block_time: int, jitter: int) -> None:
        self.block_time = block_time
        self.jitter = jitter

    async def _resume(self) -> None:
        return None

    async def paused_block(self) -> bool:
        self.pause_left -= 1
        return self.pause_left == 0  # no wall time to let pass: nobody mines but us

    async def mine_next(self) -> None:
        """One block, block_time after the last one (set-up blocks too: the Transactor's miner)."""
        head = await self.client.get_block("latest")
        assert head is not None
        await self.node.mine(self.client, int(head["timestamp"], 16) + self.block_time)

    async def advance(self, head: BlockInfo, warp_to: int | None) -> int | None:
        step = self.block_time
        if self.jitter:
            step = max(1, self.block_time + int(self.rng.integers(-self.jitter, self.jitter + 1)))
        await self.node.mine(self.client, warp_to if warp_to is not None else head.timestamp + step)
        return warp_to

    async def next_block(self, head: BlockInfo, deadline: float, stopping: Callable[[], bool]) -> BlockInfo:
        return await self._poll(head, deadline, stopping)


def make_clock(kind: str, client: Any, block_time: int, rng: Any, node: Any = None) -> Clock:
    return {"interval": Clock, "driven": DrivenClock, "external": ExternalClock}[kind](client, block_time, rng, node)


def clock_kind(scenario: Any) -> str:
    chain = scenario.chain
    if chain.rpc_url:
        return "external"
    return "driven" if chain.mining == "driven" else "interval"


