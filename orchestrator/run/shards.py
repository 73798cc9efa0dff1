"""The shard pool: the Ray actors that hold the agents. Starts them (sized to the cluster, or to a
sweep's share of it), ticks them together, replaces one that died, tells them about chain events
and collects their ledgers. The sizing helpers are shared with the sweep."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from agents.shard import AgentSpec, BlockInfo, ShardConfig, TickReport, make_actor_class
from agents.wallet import FeeStance
from contracts.rpc import rotate_endpoints

log = structlog.get_logger("dcai.run")


def user_pythonpath() -> str:
    """Importable user modules (policies, plugins as `module.path:Class`) must import in Ray workers
    too: the driver's own source folders, then PYTHONPATH."""
    user = [p for p in sys.path if p and os.path.isdir(p) and "site-packages" not in p
            and not p.startswith(sys.base_prefix)]
    return os.pathsep.join(user + [os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)


def shard_cpus_for(cluster_cpus: float, runs_at_once: int, shards_per_run: int) -> float:
    """CPUs per shard when several runs share one cluster: their shards together fit in it, so no
    run's shards wait for another's CPUs (they would wait for ever)."""
    return min(1.0, cluster_cpus / (runs_at_once * shards_per_run))


def ensure_ray(address: str | None) -> bool:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a private one on this machine; a
    Ray the caller already initialised is used as it is. True when this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=True, configure_logging=False)
    else:
        ray.init(address="local", num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False,
                 log_to_driver=True, configure_logging=False)
    log.info("ray ready", address=address or "local", nodes=len([n for n in ray.nodes() if n.get("Alive")]))
    return True


Replacer = Callable[[int, BlockInfo, BaseException], Awaitable[bool]]


class ShardPool:
    def __init__(self, count: int | None, cpus: float, ray_address: str | None):
        self.count = count  # None: one shard per cluster CPU
        self.cpus = cpus
        self.ray_address = ray_address
        self.shards: list[Any] = []
        self.configs: list[ShardConfig] = []
        self.started_ray = False
        self._actor_cls: Any = None
        self.settle_supported: bool | None = None  # whether the shards know stop_acting(settle=...)

    def ensure_ray(self) -> None:
        self.started_ray = ensure_ray(self.ray_address) or self.started_ray

    async def start(self, base: dict[str, Any], url: str | list[str], specs: list[AgentSpec]) -> list[str]:
        """One actor per shard, agents dealt round-robin; `base` holds the ShardConfig fields every
        shard shares. Returns the agents' addresses in the pool's order (shard by shard)."""
        import ray

        self.ensure_ray()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n = max(1, min(len(specs), self.count if self.count is not None else cpus))
        # SPREAD: on a cluster of several machines the shards go to different nodes, not the driver's.
        self._actor_cls = make_actor_class(num_cpus=self.cpus).options(
            runtime_env={"env_vars": {"PYTHONPATH": user_pythonpath()}}, scheduling_strategy="SPREAD")
        for i in range(n):
            # Several endpoints: shard i prefers the i-th (load spread round-robin), fails over to the rest.
            cfg = ShardConfig(shard_id=i, rpc_url=rotate_endpoints(url, i), agents=specs[i::n], fees=FeeStance(),
                              **base)
            self.shards.append(self._actor_cls.remote(cfg))
            self.configs.append(cfg)
        await asyncio.gather(*(s.start.remote() for s in self.shards))
        log.info("shards started", shards=n, agents=len(specs))
        return [a for addrs in await asyncio.gather(*(s.addresses.remote() for s in self.shards)) for a in addrs]

    def ordered(self, specs: list[AgentSpec]) -> list[AgentSpec]:
        """Specs in the order `start` returns addresses."""
        n = len(self.shards)
        return [s for i in range(n) for s in specs[i::n]]

    async def tick(self, head: BlockInfo, replace_dead: Replacer | None = None) -> list[TickReport]:
        """Every shard ticks concurrently; a shard whose actor died is replaced (if `replace_dead`
        can) and ticks again."""
        from ray.exceptions import RayActorError

        results = await asyncio.gather(*(s.tick.remote(head) for s in self.shards), return_exceptions=True)
        reports: list[TickReport] = []
        for i, r in enumerate(results):
            if isinstance(r, RayActorError) and replace_dead is not None and await replace_dead(i, head, r):
                r = await self.shards[i].tick.remote(head)
            if isinstance(r, BaseException):
                raise r
            reports.append(r)
        return reports

    async def replace(self, i: int, snapshot: bytes, head_number: int) -> dict[str, int]:
        """A new actor for shard i: same configuration (so the same keys from the seed), the dead
        one's snapshot, and what its agents sent since, adopted from the chain."""
        shard = self._actor_cls.remote(self.configs[i])
        await shard.start.remote()
        outcome = await shard.restore.remote(snapshot, head_number)
        self.shards[i] = shard
        return dict(outcome)

    def kill(self, i: int) -> int:
        import ray

        i %= len(self.shards)
        ray.kill(self.shards[i], no_restart=True)
        return i

    async def stop_acting(self, settle: bool) -> bool:
        """No new data from now on. With `settle`, agents keep their claim loops (refund, report and
        take, take-all) until nothing is left they could claim. Returns whether the shards settle
        (shards without the `settle` keyword only stop)."""
        if settle and self.settle_supported is not False:
            try:
                await asyncio.gather(*(s.stop_acting.remote(settle=True) for s in self.shards))
                self.settle_supported = True
                return True
            except TypeError:  # an older shard: Ray checks the signature when the call is made
                self.settle_supported = False
        await asyncio.gather(*(s.stop_acting.remote() for s in self.shards))
        return False

    async def notify_dropped(self, hashes: list[str], head: BlockInfo) -> None:
        await asyncio.gather(*(s.notify_dropped.remote(hashes, head) for s in self.shards))

    async def notify_reorg(self, first_replaced: int) -> None:
        await asyncio.gather(*(s.notify_reorg.remote(first_replaced) for s in self.shards))

    async def notify_restart(self, first_lost: int) -> list[dict[str, int]]:
        return list(await asyncio.gather(*(s.notify_restart.remote(first_lost) for s in self.shards)))

    async def market_collect(self, head: BlockInfo) -> int:
        return sum(await asyncio.gather(*(s.market_collect.remote(head) for s in self.shards)))

    async def snapshots(self, block: int) -> list[bytes]:
        return list(await asyncio.gather(*(s.snapshot.remote(block) for s in self.shards)))

    async def checkpoint(self, block: int) -> None:
        await asyncio.gather(*(s.checkpoint.remote(block) for s in self.shards))

    async def finalize(self, last_block: int, timeout: float = 60) -> list[dict[str, list[Any]]]:
        return list(await asyncio.wait_for(
            asyncio.gather(*(s.finalize.remote(last_block) for s in self.shards)), timeout=timeout))

    async def stats(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(s.stats.remote() for s in self.shards)))

    async def agent_summaries(self) -> list[dict[str, Any]]:
        return [a for part in await asyncio.gather(*(s.agent_summaries.remote() for s in self.shards))
                for a in part]

    async def close(self) -> None:
        """Close every shard's connections, kill the actors, and shut Ray down if this pool started it."""
        for s in self.shards:
            try:
                await asyncio.wait_for(s.close.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - a dead shard has nothing to close
                pass
        if self.shards or self.started_ray:
            import ray

            for s in self.shards:
                ray.kill(s)
            self.shards = []
            if self.started_ray:
                ray.shutdown()
                self.started_ray = False
