"""Riding out crashes during a run: checkpoints, a dead node restarted from its dump, a dead shard
actor replaced from its snapshot. Semantics: docs/architecture.md, "Node crash and restart" and
"Shard actor death and replacement".

A mixin of `Run` (orchestrator/runner.py): it works on the run's node, client, monitor, evaluator,
shards and state, and keeps the checkpoint bookkeeping (`_checkpoint_block`, `_snapshot_block`,
`_shard_snapshots`, `_next_checkpoint_at`) that `Run.__init__` sets up.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import time
from typing import Any

import structlog

from agents.shard import BlockInfo, TickReport

from .nodes import STATE_DUMP, set_mining

log = structlog.get_logger("dcai.run")

NODE_CHECKPOINT = "node_state.json.gz"  # the managed node's last state dump, in the run folder
MAX_NODE_RESTARTS = 5  # a node that keeps dying is not a fault to ride out
MAX_SHARD_RESTARTS = 10
CHECKPOINT_SHARE = 0.05  # at most this share of the run's wall time goes to slow checkpoints
CHECKPOINT_SLOW_S = 0.5


class RecoveryMixin:
    # Provided by Run.
    scenario: Any
    node: Any
    client: Any
    monitor: Any
    evaluator: Any
    shards: list[Any]
    state: Any
    telemetry: Any
    run_dir: Any
    driven: bool
    block_time: int
    _pause_left: int
    _head_seen_at: float
    _checkpoint_block: int
    _snapshot_block: int
    _shard_snapshots: list[bytes]
    _shard_configs: list[Any]
    _actor_cls: Any
    _next_checkpoint_at: float

    async def _latest(self) -> BlockInfo:  # implemented by Run
        raise NotImplementedError

    async def _checkpoint(self, head: BlockInfo) -> None:
        """Between ticks: dump the managed node's state, and keep every shard's snapshot (a shard
        that dies is rebuilt from it and the chain)."""
        if not self.scenario.chain.checkpoint_every:
            return
        t0 = time.perf_counter()
        await self._checkpoint_node(head)
        t = time.perf_counter()
        self._shard_snapshots = list(await asyncio.gather(*(s.snapshot.remote(head.number) for s in self.shards)))
        self._snapshot_block = head.number
        cp = self.state.checkpoints
        cp["shard_snapshots"] = cp.get("shard_snapshots", 0) + 1
        cp["shard_snapshot_bytes"] = sum(len(b) for b in self._shard_snapshots)
        cp["shard_snapshot_s"] = cp.get("shard_snapshot_s", 0.0) + time.perf_counter() - t
        # A node's dump grows with its history: once one takes long, keep checkpoints under
        # CHECKPOINT_SHARE of the wall time, however often `checkpoint_every` asks for them. (Quick
        # ones keep the exact block cadence, so a restart point is predictable.)
        took = time.perf_counter() - t0
        if took > CHECKPOINT_SLOW_S:
            self._next_checkpoint_at = time.monotonic() + took / CHECKPOINT_SHARE
        cp["max_s"] = max(cp.get("max_s", 0.0), took)

    async def _checkpoint_node(self, head: BlockInfo) -> None:
        """Dump the managed node's state (blocks, transactions, historical states; not the pool) to
        the run folder, replacing the previous dump only once the new one is whole on disk."""
        if self.node is None or not self.node.has(STATE_DUMP):
            return  # a node without dumps cannot be restarted: shard snapshots are still taken
        assert self.client is not None
        t = time.perf_counter()
        data = await self.node.dump_state(self.client)  # a gzipped JSON document
        path = self.run_dir / NODE_CHECKPOINT
        tmp = path.with_suffix(".tmp")
        await asyncio.to_thread(tmp.write_bytes, data)
        os.replace(tmp, path)
        # The dump may hold a block or two more than `head` (interval mining): pruning by `head`
        # keeps a little more than needed, never less.
        self._checkpoint_block = head.number
        await asyncio.gather(*(s.checkpoint.remote(head.number) for s in self.shards))
        cp = self.state.checkpoints
        cp["count"] = cp.get("count", 0) + 1
        cp["last_block"] = head.number
        cp["last_bytes"] = len(data)
        cp["total_s"] = cp.get("total_s", 0.0) + time.perf_counter() - t

    async def _tick_all(self, head: BlockInfo) -> list[TickReport]:
        """Every shard ticks concurrently; a shard whose actor died is replaced and ticks again."""
        from ray.exceptions import RayActorError

        results = await asyncio.gather(*(s.tick.remote(head) for s in self.shards), return_exceptions=True)
        reports: list[TickReport] = []
        for i, r in enumerate(results):
            if isinstance(r, RayActorError) and self._shard_snapshots \
                    and len(self.state.shard_restarts) < MAX_SHARD_RESTARTS:
                await self._restart_shard(i, head, f"{type(r).__name__}")
                r = await self.shards[i].tick.remote(head)
            if isinstance(r, BaseException):
                raise r
            reports.append(r)
        return reports

    async def _restart_shard(self, i: int, head: BlockInfo, why: str) -> None:
        """A new actor for shard i: same configuration (so the same keys from the seed), the dead
        one's last snapshot, and what its agents sent since, adopted from the chain."""
        t = time.perf_counter()
        log.warning("shard actor died: replacing it from its last snapshot", shard=i, error=why,
                    snapshot_block=self._snapshot_block)
        shard = self._actor_cls.remote(self._shard_configs[i])
        await shard.start.remote()
        outcome = await shard.restore.remote(self._shard_snapshots[i], head.number)
        self.shards[i] = shard
        record = {"event": "shard_restart", "block": head.number, "offset": head.number - self.state.start_block,
                  "shard": i, "snapshot_block": self._snapshot_block, "error": why, "wall": time.time(),
                  "restart_s": time.perf_counter() - t, **outcome}
        self.state.shard_restarts.append(record)
        self.state.events.append(record)
        self.telemetry.event("shard_restart", **{k: v for k, v in record.items() if k != "event"})
        log.warning("shard replaced", **{k: v for k, v in record.items() if k not in ("event", "wall")})

    async def _node_lost(self) -> bool:
        """True when the managed node's process is gone (crashed or killed) and a dump exists to
        restart from. Tell a dead node from a slow one by the process, not by a failed call."""
        if self.node is None or not self.scenario.chain.checkpoint_every or self._checkpoint_block < 0:
            return False
        if self.node.running:
            await asyncio.sleep(0.2)  # a crash in progress: the process may need a moment to exit
        return not self.node.running and len(self.state.restarts) < MAX_NODE_RESTARTS

    async def _recover_node(self) -> BlockInfo:
        """Restart the node from its last dump on the same port and bring everyone back in line:
        monitors forget the lost blocks, shards undo outcomes read from them and re-broadcast what
        is now unknown to the node (docs/architecture.md, "Node crash and restart")."""
        assert self.node is not None and self.client is not None and self.monitor is not None
        t = time.perf_counter()
        lost_head = self.monitor.last
        state_file = self.run_dir / "node_state.json"
        raw = (self.run_dir / NODE_CHECKPOINT).read_bytes()
        await asyncio.to_thread(state_file.write_bytes, gzip.decompress(raw))
        log.warning("node process gone: restarting it from its last state dump", checkpoint=self._checkpoint_block)
        await asyncio.to_thread(self.node.restart, state_file)
        state_file.unlink(missing_ok=True)
        if not self.driven and self._pause_left == 0:
            await self.node.set_mining(self.client, "interval", self.block_time)
        restored = await self._latest()
        if not self.driven and restored.timestamp >= time.time():
            # Skipped idle time put the chain ahead of the wall clock; the new process starts from the
            # wall clock, and a block must not go back in time.
            await self.client.call("evm_setNextBlockTimestamp", restored.timestamp + self.block_time)
        self.monitor.rewind(restored.number + 1)
        if self.evaluator is not None:
            self.evaluator.records = [r for r in self.evaluator.records if r.block <= restored.number]
        outcomes = await asyncio.gather(*(s.notify_restart.remote(restored.number + 1) for s in self.shards))
        record = {"event": "node_restart", "block": restored.number, "offset": restored.number - self.state.start_block,
                  "lost_from_block": restored.number + 1, "lost_head": lost_head, "wall": time.time(),
                  "restart_s": time.perf_counter() - t,
                  **{k: sum(o[k] for o in outcomes) for k in ("undone", "resent", "refused")}}
        self.state.restarts.append(record)
        self.state.events.append(record)
        self.telemetry.event("node_restart", **{k: v for k, v in record.items() if k != "event"})
        log.warning("node restarted", **{k: v for k, v in record.items() if k not in ("event", "wall")})
        self._head_seen_at = time.monotonic()
        return restored

