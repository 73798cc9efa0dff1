"""Live run telemetry and control over MQTT (aiomqtt), never at the run's expense.

The run loop calls plain, non-blocking methods (`block`, `accuracy`, `counters`, `event`,
`status`); each serialises its record and puts it on a bounded queue, or drops and counts it when
the broker is unreachable. A background task owns the connection: it connects, reconnects with
back-off forever, drains the queue with a few concurrent publishes (aiomqtt warns above ten
outstanding calls), republishes the retained status after every reconnect and delivers control
commands (pause, resume, stop) from `<prefix>/<run-id>/control` to the handlers the run loop
registered. Topics and payloads: docs/telemetry.md. Every record also goes to the sinks added with
`add_sink` (the Prometheus metrics, orchestrator/metrics.py), unthrottled and whether or not MQTT is
on, so the run loop makes one set of calls for both.

Everything here runs on the caller's event loop: call the publishers from that loop's thread.
Passwords are read from the environment when connecting and never stored, logged or published.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import math
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import aiomqtt
import structlog

from .broker import EmbeddedBroker
from .telemetry_config import BrokerEndpoint, TelemetryConfig, TLSConfig, parse_broker_url

log = structlog.get_logger("dcai.telemetry")

# aiomqtt logs "There are N pending publish calls" above 10 outstanding calls, and paho logs every
# packet at DEBUG: both go to this logger, which keeps errors only.
MQTT_LOGGER = logging.getLogger("dcai.telemetry.mqtt")
MQTT_LOGGER.setLevel(logging.ERROR)

CONTROL_COMMANDS = ("pause", "resume", "stop")
MAX_OUTSTANDING = 8  # concurrent publishes per connection: below aiomqtt's warning threshold of 10
JSON_SAFE_INT = 2**53 - 1  # larger integers (wei amounts) are sent as decimal strings
KEEPALIVE_S = 15

ControlHandler = Callable[[str], Awaitable[None] | None]


class TelemetrySink(Protocol):
    """Receives every record the run publishes, unthrottled (orchestrator/metrics.py's RunMetrics)."""

    def on_block(self, record: Any) -> None: ...

    def on_accuracy(self, record: Any) -> None: ...

    def on_counters(self, per_group: dict[str, dict[str, Any]], block: int | None) -> None: ...

    def on_event(self, kind: str, fields: dict[str, Any]) -> None: ...

    def on_status(self, fields: dict[str, Any]) -> None: ...


class TelemetryError(RuntimeError):
    pass


# ---- shared helpers (also used by `dcai watch`) -------------------------------------------------


def check_run_id(run_id: str) -> str:
    if not run_id or any(c in run_id for c in "/+#") or run_id.startswith("$"):
        raise TelemetryError(f"run id {run_id!r} cannot be an MQTT topic level (no '/', '+', '#', leading '$')")
    return run_id


def topic_level(name: str) -> str:
    """A policy or group name as one topic level."""
    return "".join("_" if c in "/+#" else c for c in name) or "_"


def jsonable(value: Any) -> Any:
    """A payload value as JSON: dataclasses as objects, big integers as strings, NaN/inf as null."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if -JSON_SAFE_INT <= value <= JSON_SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        with contextlib.suppress(Exception):
            return jsonable(item())
    return str(value)


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(jsonable(payload), separators=(",", ":"), allow_nan=False).encode()


def read_credentials(endpoint: BrokerEndpoint | None, username_env: str | None,
                     password_env: str | None) -> tuple[str | None, str | None]:
    """The user name and password from the named environment variables (error names the variable)."""
    username = endpoint.username if endpoint else None
    password = None
    for name in (username_env, password_env):
        if name and not os.environ.get(name):
            raise TelemetryError(f"the MQTT credentials variable {name} is not set (or empty) in the environment")
    if username_env:
        username = os.environ[username_env]
    if password_env:
        password = os.environ[password_env]
    return username, password


def make_tls_context(tls: TLSConfig | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file if tls else None)
    if tls is not None and tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls is not None and tls.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_options(endpoint: BrokerEndpoint, *, username_env: str | None = None, password_env: str | None = None,
                   tls: TLSConfig | None = None) -> dict[str, Any]:
    """Keyword arguments for `aiomqtt.Client` (holds the password: never log or keep this dict)."""
    username, password = read_credentials(endpoint, username_env, password_env)
    opts: dict[str, Any] = {"hostname": endpoint.host, "port": endpoint.port, "logger": MQTT_LOGGER}
    if username is not None:
        opts["username"] = username
        opts["password"] = password
    if endpoint.tls:
        opts["tls_context"] = make_tls_context(tls)
        if tls is not None and tls.insecure:
            opts["tls_insecure"] = True
    return opts


# ---- the publisher ------------------------------------------------------------------------------


class Telemetry:
    """Publishes one run's telemetry under `<topic_prefix>/<run_id>/` and receives its control commands.

    `await start()` (never fails because a broker is down), then the non-blocking publishers from
    the run loop, then `stats = await stop()`.
    """

    def __init__(self, run_id: str, config: TelemetryConfig | None = None, *, endpoint_file: Path | None = None,
                 max_outstanding: int = MAX_OUTSTANDING, flush_timeout_s: float = 2.0):
        self.run_id = check_run_id(run_id)
        self.config = config if config is not None else TelemetryConfig()
        self.enabled = self.config.enabled
        self.base = f"{self.config.topic_prefix}/{run_id}"
        self.control_topic = f"{self.base}/control"
        self.endpoint_file = endpoint_file
        self.max_outstanding = max(1, min(max_outstanding, 9))
        self.flush_timeout_s = flush_timeout_s
        self.broker: EmbeddedBroker | None = None
        self._endpoint: BrokerEndpoint | None = self.config.endpoint()
        self._queue: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue(maxsize=self.config.queue_limit)
        self._handlers: list[ControlHandler] = []
        self._sinks: list[TelemetrySink] = []
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        self._status: dict[str, Any] = {"run_id": run_id}
        self._status_set = False
        self._conn_task: asyncio.Task[None] | None = None
        self._stop_event = asyncio.Event()
        self._first_connection = asyncio.Event()
        self._connected = False
        self._started = False
        self._stopping = False
        self._last_block: int | None = None
        self._counter_calls = 0
        self._inflight = 0
        self._last_error: str | None = None
        self._last_failure_log = 0.0
        self.published = 0
        self.dropped = 0
        self.queue_overflow = 0
        self.disconnects = 0
        self.reconnects = 0
        self.connect_failures = 0
        self.control_received = 0
        self.control_errors = 0
        self.queue_high_water = 0

    def __repr__(self) -> str:
        return (f"Telemetry(run_id={self.run_id!r}, broker={self.url!r}, connected={self._connected}, "
                f"published={self.published}, dropped={self.dropped})")

    # ---- properties ------------------------------------------------------------------------------

    @property
    def url(self) -> str | None:
        """The broker's URL without credentials (None when disabled or not started)."""
        if self._endpoint is None:
            return None
        return self._endpoint.display_url

    @property
    def connected(self) -> bool:
        return self._connected

    def topic(self, suffix: str) -> str:
        return f"{self.base}/{suffix}"

    # ---- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the embedded broker if configured and the connection task; wait briefly for a first
        connection. Raises only for configuration errors (a named credentials variable unset)."""
        if not self.enabled or self._started:
            return
        if not self.config.embedded:
            assert self._endpoint is not None
            # fail now, before the run, if a named variable is missing or a TLS file unreadable
            try:
                client_options(self._endpoint, username_env=self.config.username_env,
                               password_env=self.config.password_env, tls=self.config.tls)
            except (OSError, ssl.SSLError) as e:
                raise TelemetryError(f"telemetry TLS files: {e}") from None
        self._started = True
        if self.config.embedded:
            self.broker = EmbeddedBroker(self.config.embedded_mode)
            try:
                self._endpoint = parse_broker_url(await self.broker.start())
            except Exception as e:  # noqa: BLE001 - no telemetry is better than no run
                log.error("embedded MQTT broker failed to start: telemetry disabled", error=f"{type(e).__name__}: {e}")
                self.broker = None
                self.enabled = False
                return
        self._conn_task = asyncio.create_task(self._connection_loop(), name=f"telemetry-{self.run_id}")
        if self.config.connect_wait_s > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._first_connection.wait(), self.config.connect_wait_s)
        self._write_endpoint(live=True)
        log.info("telemetry started", broker=self.url, topics=f"{self.base}/#", connected=self._connected,
                 embedded=self.broker is not None)

    async def stop(self) -> dict[str, Any]:
        """Flush what is queued (briefly), disconnect, stop the embedded broker; the final stats."""
        if not self._started or self._stopping:
            return self.stats()
        deadline = time.monotonic() + self.flush_timeout_s
        while (self._connected and (not self._queue.empty() or self._inflight)
               and time.monotonic() < deadline):
            await asyncio.sleep(0.005)
        self._stopping = True
        self._stop_event.set()
        if self._conn_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._conn_task), 5)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                self._conn_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._conn_task
            self._conn_task = None
        self._drop_queue()
        for t in list(self._handler_tasks):
            t.cancel()
        if self.broker is not None:
            await self.broker.stop()
        self._write_endpoint(live=False)
        stats = self.stats()
        log.info("telemetry stopped", **{k: v for k, v in stats.items() if k != "broker"})
        return stats

    def stats(self) -> dict[str, Any]:
        return {
            "broker": self.url,
            "embedded": self.config.embedded,
            "connected": self._connected,
            "published": self.published,
            "dropped": self.dropped,
            "queue_overflow": self.queue_overflow,
            "disconnects": self.disconnects,
            "reconnects": self.reconnects,
            "connect_failures": self.connect_failures,
            "control_received": self.control_received,
            "control_errors": self.control_errors,
            "queue_high_water": self.queue_high_water,
            "last_error": self._last_error,
        }

    def add_sink(self, sink: TelemetrySink) -> None:
        """Forward every record to `sink` too (e.g. the Prometheus metrics), whether or not MQTT is
        enabled, connected or throttled: the run loop makes one set of calls for both."""
        self._sinks.append(sink)

    def _forward(self, method: str, *args: Any) -> None:
        for sink in self._sinks:
            try:
                getattr(sink, method)(*args)
            except Exception as e:  # noqa: BLE001 - a faulty sink must never cost the run anything
                log.warning("telemetry sink failed", sink=type(sink).__name__, method=method, error=_describe(e))

    def on_control(self, callback: ControlHandler) -> None:
        """Call `callback(command)` (sync, or async: run as a task) for each pause / resume / stop."""
        self._handlers.append(callback)

    # ---- publishers (non-blocking) ---------------------------------------------------------------

    def block(self, record: Any) -> None:
        """One block record (a dict or the monitor's BlockRecord); one in every publish_every_blocks."""
        self._forward("on_block", record)
        if not self.enabled:
            return
        number = _field(record, "number")
        every = self.config.publish_every_blocks
        if isinstance(number, int):
            if self._last_block is not None and 0 <= number - self._last_block < every:
                return
            self._last_block = number
        self._put("blocks", record, retain=self.config.retain_latest)

    def accuracy(self, record: Any) -> None:
        """One accuracy sample (a dict or the evaluator's ModelRecord)."""
        self._forward("on_accuracy", record)
        if self.enabled:
            self._put("accuracy", record, retain=self.config.retain_latest)

    def counters(self, per_policy: dict[str, dict[str, Any]], *, block: int | None = None) -> None:
        """Transaction counters per policy (one message per policy), one call in every publish_every_blocks."""
        self._forward("on_counters", per_policy, block)
        if not self.enabled:
            return
        self._counter_calls += 1
        if (self._counter_calls - 1) % self.config.publish_every_blocks:
            return
        for policy, values in per_policy.items():
            payload = {"policy": policy, **values}
            if block is not None:
                payload.setdefault("block", block)
            self._put(f"counters/{topic_level(policy)}", payload, retain=self.config.retain_latest)

    def event(self, kind: str, **fields: Any) -> None:
        """A run event (phase change, chaos event, pause, warning, ...)."""
        self._forward("on_event", kind, fields)
        if self.enabled:
            self._put("events", {"kind": kind, **fields})

    def status(self, fields: dict[str, Any]) -> None:
        """Merge `fields` into the run's retained status (republished after every reconnect)."""
        self._forward("on_status", fields)
        if not self.enabled:
            return
        self._status.update(fields)
        self._status["run_id"] = self.run_id
        self._status["ts"] = time.time()
        self._status_set = True
        if self._connected:
            self._put("status", self._status, retain=True)
        # while disconnected the status is not lost: it goes out when the connection is back

    def _put(self, suffix: str, record: Any, *, retain: bool = False) -> None:
        if not self._connected:
            self.dropped += 1
            return
        payload = record if isinstance(record, dict) else jsonable(record)
        if not isinstance(payload, dict):
            payload = {"value": payload}
        if "ts" not in payload:
            payload = {**payload, "ts": time.time()}
        try:
            self._queue.put_nowait((f"{self.base}/{suffix}", encode(payload), retain))
        except asyncio.QueueFull:
            self.queue_overflow += 1
            self.dropped += 1
            return
        size = self._queue.qsize()
        if size > self.queue_high_water:
            self.queue_high_water = size

    def _drop_queue(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            self.dropped += 1

    # ---- the connection ----------------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        assert self._endpoint is not None
        cfg = self.config
        opts = client_options(self._endpoint, username_env=cfg.username_env, password_env=cfg.password_env,
                              tls=cfg.tls)
        lost = encode({"run_id": self.run_id, "state": "lost", "ts": time.time()})
        client = aiomqtt.Client(
            **opts, keepalive=KEEPALIVE_S, timeout=5, max_queued_incoming_messages=1000,
            will=aiomqtt.Will(f"{self.base}/status", lost, qos=cfg.qos, retain=True),
        )
        client.pending_calls_threshold = self.max_outstanding + 16
        return client

    async def _connection_loop(self) -> None:
        cfg = self.config
        delay = cfg.reconnect_min_s
        ever_connected = False
        while not self._stopping:
            was_connected = False
            try:
                client = self._client()
                async with client:
                    await client.subscribe(self.control_topic, qos=1)
                    if self._status_set:
                        await client.publish(f"{self.base}/status", encode(self._status), qos=cfg.qos, retain=True)
                        self.published += 1
                    was_connected = True
                    self._connected = True
                    if ever_connected:
                        self.reconnects += 1
                        log.info("telemetry reconnected", broker=self.url, dropped_so_far=self.dropped)
                    else:
                        log.debug("telemetry connected", broker=self.url)
                    ever_connected = True
                    self._first_connection.set()
                    delay = cfg.reconnect_min_s
                    await self._serve(client)
            except asyncio.CancelledError:
                self._connected = False
                raise
            except Exception as e:  # noqa: BLE001 - any failure means: reconnect later
                self._last_error = _describe(e)
            finally:
                self._connected = False
                self._drop_queue()
            if self._stopping:
                break
            now = time.monotonic()
            if was_connected:
                self.disconnects += 1
                log.warning("telemetry connection lost: dropping messages until it is back",
                            broker=self.url, error=self._last_error)
                self._last_failure_log = now
            else:
                self.connect_failures += 1
                if now - self._last_failure_log > 60 or self.connect_failures == 1:
                    log.warning("telemetry broker unreachable: retrying with back-off", broker=self.url,
                                error=self._last_error, attempts=self.connect_failures)
                    self._last_failure_log = now
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, cfg.reconnect_max_s)

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Publish from the queue and read control messages until the connection drops or stop()."""
        tasks = [asyncio.create_task(self._worker(client)) for _ in range(self.max_outstanding)]
        reader = asyncio.create_task(self._reader(client))
        stopper = asyncio.create_task(self._stop_event.wait())
        everything = [reader, stopper, *tasks]
        try:
            done, _ = await asyncio.wait(everything, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in everything:
                t.cancel()
            await asyncio.gather(*everything, return_exceptions=True)
        if stopper in done:
            return
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        raise aiomqtt.MqttError("connection closed")

    async def _worker(self, client: aiomqtt.Client) -> None:
        qos = self.config.qos
        while True:
            topic, payload, retain = await self._queue.get()
            self._inflight += 1
            try:
                await client.publish(topic, payload, qos=qos, retain=retain)
                self.published += 1
            except aiomqtt.MqttCodeError:
                self.dropped += 1
                raise  # not connected any more
            except aiomqtt.MqttError as e:  # timed out waiting for the broker: drop this one, go on
                self.dropped += 1
                self._last_error = _describe(e)
            except asyncio.CancelledError:
                self.dropped += 1
                raise
            finally:
                self._inflight -= 1

    async def _reader(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if message.topic.matches(self.control_topic):
                self._control(message.payload, retained=bool(message.retain))

    # ---- control -----------------------------------------------------------------------------------

    def _control(self, payload: Any, *, retained: bool = False) -> None:
        text = payload.decode(errors="replace") if isinstance(payload, (bytes, bytearray)) else str(payload or "")
        text = text.strip()
        shown = text[:80]
        if retained:
            # a retained command was meant for an earlier run with this id: never act on it
            self._control_error("retained control messages are ignored", shown)
            return
        command: Any = text
        if text.startswith("{"):
            try:
                command = json.loads(text).get("command")
            except (ValueError, AttributeError):
                command = None
        command = command.strip().lower() if isinstance(command, str) else None
        if command not in CONTROL_COMMANDS:
            self._control_error("unknown control command (expected pause, resume or stop)", shown)
            return
        self.control_received += 1
        log.info("control command received", command=command)
        self.event("control", command=command)
        for handler in list(self._handlers):
            try:
                result = handler(command)
            except Exception as e:  # noqa: BLE001 - a faulty handler must not break the connection
                self._control_error(f"handler failed: {_describe(e)}", command)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._handler_tasks.add(task)
                task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Future[Any]) -> None:
        self._handler_tasks.discard(task)  # type: ignore[arg-type]
        if not task.cancelled() and task.exception() is not None:
            self._control_error(f"handler failed: {_describe(task.exception())}", "")

    def _control_error(self, error: str, payload: str) -> None:
        self.control_errors += 1
        log.warning("control message rejected", error=error, payload=payload)
        self.event("control_error", error=error, payload=payload)

    # ---- discovery for `dcai watch` ----------------------------------------------------------------

    def _write_endpoint(self, *, live: bool) -> None:
        if self.endpoint_file is None or self.url is None:
            return
        info = {"run_id": self.run_id, "broker": self.url, "topic_prefix": self.config.topic_prefix,
                "topics": f"{self.base}/#", "embedded": self.config.embedded, "live": live, "pid": os.getpid(),
                "username_env": self.config.username_env, "password_env": self.config.password_env,
                "updated": time.time()}
        try:
            self.endpoint_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.endpoint_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(info, indent=2) + "\n")
            os.replace(tmp, self.endpoint_file)
        except OSError as e:
            log.warning("could not write the telemetry endpoint file", path=str(self.endpoint_file), error=str(e))


def _field(record: Any, name: str) -> Any:
    if isinstance(record, dict):
        return record.get(name)
    return getattr(record, name, None)


def _describe(e: BaseException | None) -> str:
    if e is None:
        return ""
    text = str(e) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:200]
