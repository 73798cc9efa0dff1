"""Riding out crashes during a run: checkpoints, a dead node restarted from its dump, a dead shard
actor replaced from its snapshot. Semantics: docs/architecture.md, "Node crash and restart" and
"Shard actor death and replacement". A collaborator of the loop: it holds the checkpoint
bookkeeping and works through the node, the clock, the shard pool and the recorder it is given."""

from __future__ import annotations

import asyncio
import gzip
import os
import time
from pathlib import Path
from typing import Any

import structlog

from agents.shard import BlockInfo

from .clock import Clock
from .recorder import Recorder
from .shards import ShardPool

log = structlog.get_logger("dcai.run")

NODE_CHECKPOINT = "node_state.json.gz"  # the managed node's last state dump, in the run folder
MAX_NODE_RESTARTS = 5  # a node that keeps dying is not a fault to ride out
MAX_SHARD_RESTARTS = 10
CHECKPOINT_SHARE = 0.05  # at most this share of the run's wall time goes to slow checkpoints
CHECKPOINT_SLOW_S = 0.5


class Recovery:
    def __init__(self, *, every: int, node: Any, client: Any, pool: ShardPool, clock: Clock, recorder: Recorder,
                 run_dir: Path):
        self.every = every  # blocks between checkpoints (0: none, and no recovery)
        self.node = node  # the managed node, or None
        self.client = client
        self.pool = pool
        self.clock = clock
        self.recorder = recorder
        self.state = recorder.state
        self.run_dir = run_dir
        self.checkpoint_block = -1  # the node's last state dump
        self.snapshot_block = -1  # the shards' last snapshots
        self.snapshots: list[bytes] = []
        self._next_at = 0.0  # monotonic time before which no checkpoint is taken

    def due(self, head: BlockInfo) -> bool:
        return bool(self.every) and head.number - self.snapshot_block >= self.every \
            and time.monotonic() >= self._next_at

    async def checkpoint(self, head: BlockInfo) -> None:
        """Between ticks: dump the managed node's state, and keep every shard's snapshot (a shard
        that dies is rebuilt from it and the chain)."""
        if not self.every:
            return
        t0 = time.perf_counter()
        await self._checkpoint_node(head)
        t = time.perf_counter()
        self.snapshots = await self.pool.snapshots(head.number)
        self.snapshot_block = head.number
        cp = self.state.checkpoints
        cp["shard_snapshots"] = cp.get("shard_snapshots", 0) + 1
        cp["shard_snapshot_bytes"] = sum(len(b) for b in self.snapshots)
        cp["shard_snapshot_s"] = cp.get("shard_snapshot_s", 0.0) + time.perf_counter() - t
        # A node's dump grows with its history: once one takes long, keep checkpoints under
        # CHECKPOINT_SHARE of the wall time, however often `checkpoint_every` asks for them. (Quick
        # ones keep the exact block cadence, so a restart point is predictable.)
        took = time.perf_counter() - t0
        if took > CHECKPOINT_SLOW_S:
            self._next_at = time.monotonic() + took / CHECKPOINT_SHARE
        cp["max_s"] = max(cp.get("max_s", 0.0), took)

    async def _checkpoint_node(self, head: BlockInfo) -> None:
        """Dump the managed node's state (blocks, transactions, historical states; not the pool) to
        the run folder, replacing the previous dump only once the new one is whole on disk."""
        if self.node is None:
            return
        t = time.perf_counter()
        dump = await self.client.call("anvil_dumpState")  # hex of a gzipped JSON document
        data = bytes.fromhex(dump[2:] if dump.startswith("0x") else dump)
        path = self.run_dir / NODE_CHECKPOINT
        tmp = path.with_suffix(".tmp")
        await asyncio.to_thread(tmp.write_bytes, data)
        os.replace(tmp, path)
        # The dump may hold a block or two more than `head` (interval mining): pruning by `head`
        # keeps a little more than needed, never less.
        self.checkpoint_block = head.number
        await self.pool.checkpoint(head.number)
        cp = self.state.checkpoints
        cp["count"] = cp.get("count", 0) + 1
        cp["last_block"] = head.number
        cp["last_bytes"] = len(data)
        cp["total_s"] = cp.get("total_s", 0.0) + time.perf_counter() - t

    async def replace_shard(self, i: int, head: BlockInfo, error: BaseException) -> bool:
        """The pool's replacer: a dead shard comes back from its last snapshot (if there is one)."""
        if not self.snapshots or len(self.state.shard_restarts) >= MAX_SHARD_RESTARTS:
            return False
        t = time.perf_counter()
        why = type(error).__name__
        log.warning("shard actor died: replacing it from its last snapshot", shard=i, error=why,
                    snapshot_block=self.snapshot_block)
        outcome = await self.pool.replace(i, self.snapshots[i], head.number)
        record = self.recorder.event("shard_restart", head.number, log_level="warning", shard=i,
                                     snapshot_block=self.snapshot_block, error=why,
                                     restart_s=time.perf_counter() - t, **outcome)
        self.state.shard_restarts.append(record)
        return True

    async def node_lost(self) -> bool:
        """True when the managed node's process is gone (crashed or killed) and a dump exists to
        restart from. Tell a dead node from a slow one by the process, not by a failed call."""
        if self.node is None or not self.every or self.checkpoint_block < 0:
            return False
        if self.node.running:
            await asyncio.sleep(0.2)  # a crash in progress: the process may need a moment to exit
        return not self.node.running and len(self.state.restarts) < MAX_NODE_RESTARTS

    async def recover_node(self, monitor: Any, evaluator: Any) -> BlockInfo:
        """Restart the node from its last dump on the same port and bring everyone back in line:
        monitors forget the lost blocks, shards undo outcomes read from them and re-broadcast what
        is now unknown to the node (docs/architecture.md, "Node crash and restart")."""
        t = time.perf_counter()
        lost_head = monitor.last
        state_file = self.run_dir / "node_state.json"
        raw = (self.run_dir / NODE_CHECKPOINT).read_bytes()
        await asyncio.to_thread(state_file.write_bytes, gzip.decompress(raw))
        log.warning("node process gone: restarting it from its last state dump", checkpoint=self.checkpoint_block)
        await asyncio.to_thread(self.node.restart, state_file)
        state_file.unlink(missing_ok=True)
        await self.clock.after_restart()
        restored = await self.clock.latest()
        if self.clock.kind != "driven" and restored.timestamp >= time.time():
            # Skipped idle time put the chain ahead of the wall clock; the new process starts from the
            # wall clock, and a block must not go back in time.
            await self.client.call("evm_setNextBlockTimestamp", restored.timestamp + self.clock.block_time)
        monitor.rewind(restored.number + 1)
        if evaluator is not None:
            evaluator.records = [r for r in evaluator.records if r.block <= restored.number]
        outcomes = await self.pool.notify_restart(restored.number + 1)
        record = self.recorder.event(
            "node_restart", restored.number, log_level="warning", lost_from_block=restored.number + 1,
            lost_head=lost_head, restart_s=time.perf_counter() - t,
            **{k: sum(o[k] for o in outcomes) for k in ("undone", "resent", "refused")})
        self.state.restarts.append(record)
        self.clock.seen_now()
        return restored

    def remove_dump(self) -> None:
        # The dump only serves a restart during the run (and may be large); replay bundles keep
        # what is needed to re-execute a run.
        (self.run_dir / NODE_CHECKPOINT).unlink(missing_ok=True)
