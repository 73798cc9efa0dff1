"""The built-in chaos events: fee shocks, gas limits, mining pauses, block times, dropped pending
transactions, reorgs, and crashes of the node or of a shard actor. Each is applied between two
blocks: after the agents sent this block's transactions, before the next block (so a dropped
transaction is one that was really pending, and a fee shock hits the next block)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Literal

from pydantic import Field

from orchestrator.schema_types import DurationS, Gas

from . import ChaosContext, ChaosEvent, register_chaos


@register_chaos
class BaseFeeShock(ChaosEvent):
    event: Literal["base_fee_shock"]
    factor: float = Field(gt=0, description="multiply the next base fee by this")
    needs: ClassVar[tuple[str, ...]] = ("base_fee_control",)
    primitive: ClassVar[str] = "anvil_setNextBlockBaseFeePerGas"

    async def apply(self, ctx: ChaosContext) -> dict[str, Any]:
        target = int(ctx.head.base_fee * self.factor)
        await ctx.client.call("anvil_setNextBlockBaseFeePerGas", hex(target))
        return {"factor": self.factor, "base_fee": target}


@register_chaos
class GasLimitChange(ChaosEvent):
    event: Literal["gas_limit"]
    gas_limit: Gas = Field(ge=100_000, description="the new block gas limit")
    needs: ClassVar[tuple[str, ...]] = ("gas_limit_control",)
    primitive: ClassVar[str] = "evm_setBlockGasLimit"

    async def apply(self, ctx: ChaosContext) -> dict[str, Any]:
        await ctx.client.call("evm_setBlockGasLimit", hex(self.gas_limit))
        return {"gas_limit": self.gas_limit}


@register_chaos
class PauseMining(ChaosEvent):
    event: Literal["pause_mining"]
    blocks: int = Field(ge=1, le=10_000, description="blocks' worth of time without mining")
    needs: ClassVar[tuple[str, ...]] = ("mining_control",)
    primitive: ClassVar[str] = "evm_setIntervalMining"

    async def apply(self, ctx: ChaosContext) -> dict[str, Any]:
        await ctx.clock.pause(self.blocks)
        return {"blocks": self.blocks}


@register_chaos
class BlockTimeChange(ChaosEvent):
    event: Literal["block_time"]
    block_time: DurationS = Field(ge=1, description="the new block time")
    jitter: DurationS | None = Field(None, ge=0, description="+- seconds per block (driven only)")
    needs: ClassVar[tuple[str, ...]] = ("mining_control",)
    primitive: ClassVar[str] = "evm_setIntervalMining"

    def check(self, scenario: Any) -> None:
        super().check(scenario)
        if self.jitter and scenario.chain.mining != "driven":
            raise ValueError("schedule.chaos: block_time jitter needs chain.mining: driven")

    async def apply(self, ctx: ChaosContext) -> dict[str, Any]:
        # The clock owns the block time; it travels to the policies with every block from now on.
        await ctx.clock.set_block_time(self.block_time, self.jitter or 0)
        return {"block_time": self.block_time, "jitter": self.jitter or 0}


async def pool_hashes(client: Any) -> list[str]:
    content = await client.call("txpool_content")
    return sorted(tx["hash"] for part in ("pending", "queued")
                  for by_nonce in (content.get(part) or {}).values() for tx in by_nonce.values())


@register_chaos
class DropPending(ChaosEvent):
    event: Literal["drop_pending"]
    share: float = Field(gt=0, le=1, description="share of pending transactions to drop")
    needs: ClassVar[tuple[str, ...]] = ("txpool", "drop_tx")
    primitive: ClassVar[str] = "anvil_dropTransaction"

    async def apply(self, ctx: ChaosContext) -> dict[str, Any]:
        hashes = await pool_hashes(ctx.client)
        chosen = [h for h in hashes if ctx.rng.random() < self.share]
        dropped: list[str] = []
        if chosen:
            # anvil refuses (null) transactions it cannot run yet, e.g. fee caps under the base fee.
            await ctx.client.batch([("anvil_dropTransaction", [h]) for h in chosen])
            # anvil also drops a sender's later transactions (they could never run): the set
            # removed is what left the pool and is unknown to the node now (not mined meanwhile).
            gone = sorted(set(hashes) - set(await pool_hashes(ctx.client)))
            found = await ctx.client.batch([("eth_getTransactionByHash", [h]) for h in gone]) if gone else []
            dropped = [h for h, tx in zip(gone, found) if tx is None]
            await ctx.pool.notify_dropped(dropped, ctx.head)
        return {"share": self.share, "pool": len(hashes), "chosen": len(chosen), "dropped": len(dropped)}


@register_chaos
class Reorg(ChaosEvent):
    event: Literal["reorg"]
    blocks: int = Field(ge=1, le=10_000, description="depth: how many recent blocks are replaced")
    needs: ClassVar[tuple[str, ...]] = ("reorg",)
    primitive: ClassVar[str] = "anvil_reorg"

    async def apply(self, ctx: ChaosContext) -> dict[str, Any]:
        await ctx.client.call("anvil_reorg", self.blocks, [])
        reorged_from = ctx.head.number - self.blocks + 1
        await ctx.pool.notify_reorg(reorged_from)
        ctx.monitor.rewind(reorged_from)
        return {"depth": self.blocks, "first_replaced_block": reorged_from}


@register_chaos
class KillNode(ChaosEvent):
    event: Literal["kill_node"]
    needs: ClassVar[tuple[str, ...]] = ("state_dump",)
    primitive: ClassVar[str] = "the node's process and its state dumps"

    def check(self, scenario: Any) -> None:
        super().check(scenario)
        if not scenario.chain.checkpoint_every:
            raise ValueError("schedule.chaos: kill_node needs chain.checkpoint_every above 0: the node "
                             "restarts from its last state dump")

    async def apply(self, ctx: ChaosContext) -> dict[str, Any]:
        proc = ctx.node.proc
        record = {"pid": proc.pid, "checkpoint_block": ctx.recovery.checkpoint_block}
        proc.kill()  # SIGKILL: no chance to save anything, as in a real crash
        await asyncio.to_thread(proc.wait)
        return record


@register_chaos
class KillShard(ChaosEvent):
    """A Ray fault, not the node's: fine against any node."""

    event: Literal["kill_shard"]
    shard: int | None = Field(None, ge=0, description="which shard's actor to kill (default 0)")

    def check(self, scenario: Any) -> None:
        if not scenario.chain.checkpoint_every:
            raise ValueError("schedule.chaos: kill_shard needs chain.checkpoint_every above 0: a "
                             "replacement shard starts from the last snapshot")

    async def apply(self, ctx: ChaosContext) -> dict[str, Any]:
        i = ctx.pool.kill(self.shard or 0)  # the process dies with whatever it held
        return {"shard": i, "snapshot_block": ctx.recovery.snapshot_block}
