"""Prometheus `/metrics` for a live run (prometheus_client), fed by the run's telemetry calls.

`RunMetrics` is a telemetry sink: `Telemetry` forwards every block record, counter set, accuracy
sample, event and status to it (before MQTT's own throttling, and also with `mqtt: none`), so the run
loop makes no second set of calls. Series (all labelled `run`; names in docs/telemetry.md):

* transactions by group, role and final status (counters), pending per group (gauge), sent (counter)
* inclusion latency in blocks (a histogram built from the shards' cumulative bucket counts)
* base fee, gas used / limit, pool depth (pending, queued), block number, chain time (gauges)
* accuracy (and per class), events by kind, invariant violations by invariant (counters)
* P&L per group and role: the ether flow of the group's transactions (received - value - fees)

One HTTP server per port per process, shared by the runs of that process (a run and its
counterfactual baseline): series are told apart by `run`. The server binds loopback by default;
a port already taken costs the run its metrics (a warning), never the run.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import HistogramMetricFamily

from agents.shard import LATENCY_BUCKETS  # the shards count included transactions in these buckets

log = structlog.get_logger("dcai.metrics")

FINAL_STATUSES = ("included", "reverted", "dropped", "replaced")


def latency_key(bound: int) -> str:
    """The per-group counter key (from the shards) holding included transactions with latency <= bound."""
    return f"latency_le_{bound}"


class _Servers:
    """Process-wide: one registry and HTTP server per (host, port), reference counted by runs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_port: dict[tuple[str, int], tuple[CollectorRegistry, Any, dict[str, Any], int]] = {}

    def acquire(self, host: str, port: int) -> tuple[CollectorRegistry, dict[str, Any], int] | None:
        with self.lock:
            key = (host, port)
            if key in self.by_port:
                registry, server, families, refs = self.by_port[key]
                self.by_port[key] = (registry, server, families, refs + 1)
                return registry, families, server.server_port
            registry = CollectorRegistry(auto_describe=True)
            try:
                server, _thread = start_http_server(port, addr=host, registry=registry)
            except OSError as e:
                log.warning("metrics port unavailable: no /metrics for this run", host=host, port=port, error=str(e))
                return None
            families = _families(registry)
            self.by_port[key] = (registry, server, families, 1)
            return registry, families, server.server_port

    def release(self, host: str, port: int) -> None:
        with self.lock:
            key = (host, port)
            if key not in self.by_port:
                return
            registry, server, families, refs = self.by_port[key]
            if refs > 1:
                self.by_port[key] = (registry, server, families, refs - 1)
                return
            del self.by_port[key]
        server.shutdown()
        server.server_close()


_SERVERS = _Servers()


def _families(registry: CollectorRegistry) -> dict[str, Any]:
    run = ["run"]
    grp = ["run", "group", "role"]
    f: dict[str, Any] = {
        "tx": Counter("dcai_transactions", "agent transactions reaching a final status",
                      grp + ["status"], registry=registry),
        "sent": Counter("dcai_transactions_sent", "agent transactions sent", grp, registry=registry),
        "pending": Gauge("dcai_transactions_pending", "agent transactions sent and not final yet", grp,
                         registry=registry),
        "pnl": Gauge("dcai_pnl_wei", "ether flow of the group's transactions so far: received - value - fees (wei)",
                     grp, registry=registry),
        "pnl_ether": Gauge("dcai_pnl_ether", "dcai_pnl_wei in ether", grp, registry=registry),
        "block": Gauge("dcai_block_number", "latest block read by the run", run, registry=registry),
        "chain_time": Gauge("dcai_chain_time_seconds", "chain time of the latest block", run, registry=registry),
        "base_fee": Gauge("dcai_base_fee_wei", "base fee of the latest block (wei)", run, registry=registry),
        "base_fee_gwei": Gauge("dcai_base_fee_gwei", "base fee of the latest block (gwei)", run, registry=registry),
        "gas_used": Gauge("dcai_block_gas_used", "gas used by the latest block", run, registry=registry),
        "fill": Gauge("dcai_block_fill_ratio", "gas used / gas limit of the latest block", run, registry=registry),
        "block_tx": Histogram("dcai_block_transactions", "transactions per block", run, registry=registry,
                              buckets=(0, 1, 10, 50, 100, 300, 1000, 3000)),
        "blocks": Counter("dcai_blocks", "blocks read by the run", run, registry=registry),
        "pool_pending": Gauge("dcai_pool_pending", "transactions pending in the node's pool", run, registry=registry),
        "pool_queued": Gauge("dcai_pool_queued", "transactions queued in the node's pool (nonce gaps)", run,
                             registry=registry),
        "accuracy": Gauge("dcai_accuracy", "model accuracy on the held-out test set", run, registry=registry),
        "accuracy_class": Gauge("dcai_accuracy_class", "per-class accuracy on the held-out test set",
                                run + ["class_index"], registry=registry),
        "events": Counter("dcai_events", "run events by kind (chaos, warp, control, invariant_violation, ...)",
                          run + ["kind"], registry=registry),
        "violations": Counter("dcai_invariant_violations", "invariant violations found by the live monitors",
                              run + ["invariant"], registry=registry),
        "state": Gauge("dcai_run_state", "1 for the run's current state", run + ["state"], registry=registry),
    }
    latency = _LatencyCollector()
    registry.register(latency)
    f["latency"] = latency
    scrapes = _ScrapeClock()
    registry.register(scrapes)
    f["scrapes"] = scrapes
    return f


class _ScrapeClock:
    """Notes when /metrics was last read (a collector that yields nothing), so a run that ends can
    wait for one scrape of its final values."""

    def __init__(self) -> None:
        self.last = 0.0
        self.count = 0

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        self.last = time.monotonic()
        self.count += 1
        return []


class _LatencyCollector:
    """`dcai_inclusion_latency_blocks` as a real histogram from the shards' cumulative bucket counts
    (the counts arrive already bucketed: prometheus_client's Histogram only takes observations)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.series: dict[tuple[str, str, str], tuple[list[int], int, int]] = {}  # buckets, count, sum

    def set(self, run: str, group: str, role: str, buckets: list[int], count: int, total: int) -> None:
        with self.lock:
            self.series[(run, group, role)] = (buckets, count, total)

    def describe(self) -> list[Any]:
        return [HistogramMetricFamily("dcai_inclusion_latency_blocks",
                                      "blocks from the block an agent saw when sending to the including block",
                                      labels=["run", "group", "role"])]

    def collect(self) -> list[Any]:
        fam = HistogramMetricFamily("dcai_inclusion_latency_blocks",
                                    "blocks from the block an agent saw when sending to the including block",
                                    labels=["run", "group", "role"])
        with self.lock:
            items = list(self.series.items())
        for (run, group, role), (buckets, count, total) in items:
            pairs = [(str(b), float(c)) for b, c in zip(LATENCY_BUCKETS, buckets)] + [("+Inf", float(count))]
            fam.add_metric([run, group, role], pairs, float(total))
        return [fam]


class RunMetrics:
    """One run's series on the process's metrics server. `start()` (False if the port is taken),
    then the sink methods (called by Telemetry from the run loop's thread), then `stop()`."""

    def __init__(self, run_id: str, port: int, *, host: str = "127.0.0.1", roles: Mapping[str, str] | None = None,
                 linger_s: float = 5.0):
        self.run_id = run_id
        self.linger_s = linger_s
        self.requested_port = port
        self.host = host
        self.roles = dict(roles or {})
        self.port: int | None = None
        self._f: dict[str, Any] = {}
        self._last: dict[tuple[str, str], int] = {}  # (group, key) -> last cumulative count
        self._state: str | None = None
        self.updates = 0
        self._updated_at = 0.0

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> bool:
        got = _SERVERS.acquire(self.host, self.requested_port)
        if got is None:
            return False
        _registry, self._f, self.port = got
        log.info("metrics served", url=self.url)
        return True

    async def stop(self) -> None:
        """Stop serving, once a scrape has read the final values (or after `linger_s`): a short run
        could otherwise end between two scrapes and its last figures never reach Prometheus."""
        if self.port is None:
            return
        clock = self._f["scrapes"]
        deadline = time.monotonic() + self.linger_s
        while clock.count and clock.last < self._updated_at and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        _SERVERS.release(self.host, self.requested_port)
        self.port = None
        self._f = {}

    # ---- the sink interface (Telemetry forwards to these) ------------------------------------------

    def on_block(self, record: Any) -> None:
        if not self._f:
            return
        f, r = self._f, self.run_id
        number = _get(record, "number")
        if isinstance(number, int):
            f["block"].labels(r).set(number)
        ts = _get(record, "timestamp")
        if isinstance(ts, (int, float)):
            f["chain_time"].labels(r).set(ts)
        base_fee = _get(record, "base_fee")
        if isinstance(base_fee, int):
            f["base_fee"].labels(r).set(base_fee)
            f["base_fee_gwei"].labels(r).set(base_fee / 1e9)
        used, limit = _get(record, "gas_used"), _get(record, "gas_limit")
        if isinstance(used, int):
            f["gas_used"].labels(r).set(used)
            if isinstance(limit, int) and limit > 0:
                f["fill"].labels(r).set(used / limit)
        tx_count = _get(record, "tx_count")
        if isinstance(tx_count, int):
            f["block_tx"].labels(r).observe(tx_count)
        for key, name in (("pool_pending", "pool_pending"), ("pool_queued", "pool_queued")):
            v = _get(record, key)
            if isinstance(v, int) and v >= 0:  # -1: the node has no txpool API
                f[name].labels(r).set(v)
        f["blocks"].labels(r).inc()
        self.updates += 1
        self._updated_at = time.monotonic()

    def on_counters(self, per_group: Mapping[str, Mapping[str, Any]], block: int | None = None) -> None:
        """Cumulative counts per group (the shards' `by_group`): counters grow by the increase."""
        if not self._f:
            return
        f, r = self._f, self.run_id
        for group, values in per_group.items():
            role = self.roles.get(group, "unspecified")
            sent = _int(values.get("sent"))
            if sent is not None:
                f["sent"].labels(r, group, role).inc(self._delta(group, "sent", sent))
            for status in FINAL_STATUSES:
                n = _int(values.get(status))
                if n is not None:
                    f["tx"].labels(r, group, role, status).inc(self._delta(group, status, n))
            pending = _int(values.get("pending"))
            if pending is not None:
                f["pending"].labels(r, group, role).set(pending)
            pnl = _int(values.get("pnl_wei"))
            if pnl is not None:
                f["pnl"].labels(r, group, role).set(pnl)
                f["pnl_ether"].labels(r, group, role).set(pnl / 1e18)
            buckets = [_int(values.get(latency_key(b))) for b in LATENCY_BUCKETS]
            included = _int(values.get("included"))
            total = _int(values.get("latency_blocks_sum"))
            if all(b is not None for b in buckets) and included is not None and total is not None:
                f["latency"].set(r, group, role, [b or 0 for b in buckets], included, total)
        self.updates += 1
        self._updated_at = time.monotonic()

    def on_accuracy(self, record: Any) -> None:
        if not self._f:
            return
        acc = _get(record, "accuracy")
        if isinstance(acc, (int, float)) and math.isfinite(acc):
            self._f["accuracy"].labels(self.run_id).set(acc)
        per_class = _get(record, "accuracy_per_class")
        if isinstance(per_class, (list, tuple)):
            for i, a in enumerate(per_class):
                if isinstance(a, (int, float)) and math.isfinite(a):
                    self._f["accuracy_class"].labels(self.run_id, str(i)).set(a)
        self.updates += 1
        self._updated_at = time.monotonic()

    def on_event(self, kind: str, fields: Mapping[str, Any]) -> None:
        if not self._f:
            return
        self._f["events"].labels(self.run_id, kind).inc()
        if kind == "invariant_violation":
            self._f["violations"].labels(self.run_id, str(fields.get("invariant", "unknown"))).inc()

    def on_status(self, fields: Mapping[str, Any]) -> None:
        state = fields.get("state")
        if not self._f or not isinstance(state, str) or state == self._state:
            return
        g = self._f["state"]
        if self._state is not None:
            g.labels(self.run_id, self._state).set(0)
        g.labels(self.run_id, state).set(1)
        self._state = state
        self._updated_at = time.monotonic()

    def _delta(self, group: str, key: str, value: int) -> int:
        # Cumulative counts can step back (a reorg or node restart reopens outcomes): counters never do.
        last = self._last.get((group, key), 0)
        self._last[(group, key)] = max(last, value)
        return max(0, value - last)


def _get(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return None
    return None
