"""MQTT telemetry and control against real brokers: the embedded amqtt broker and Debian's mosquitto.

Nothing is mocked. mosquitto is started by the tests on a free loopback port with a small config
file (tests/setup_debian.sh installs the package); its tests skip only when the binary is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import io
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import structlog
from pydantic import ValidationError

from orchestrator import logs
from orchestrator.broker import EmbeddedBroker
from orchestrator.telemetry import MQTT_LOGGER, Telemetry, TelemetryError, encode
from orchestrator.telemetry_config import TelemetryConfig, TLSConfig
from orchestrator.watch import WatchState, build_watch_parser, snapshot_text, watch

pytestmark = pytest.mark.timeout(60)

RUN = "unit-run"
BLOCK_FIELDS = {"number", "timestamp", "wall", "base_fee", "gas_used", "gas_limit", "tx_count", "pool_pending",
                "pool_queued", "expected_base_fee", "ts"}
ACCURACY_FIELDS = {"block", "timestamp", "accuracy", "accuracy_class0", "accuracy_class1", "n_test", "spot_checks",
                   "spot_mismatches", "ts"}


def block_record(n: int) -> dict[str, Any]:
    """Shaped like orchestrator.monitor.BlockRecord."""
    return {"number": n, "timestamp": 1_700_000_000 + n, "wall": time.time(), "base_fee": 1_000_000_000 + n,
            "gas_used": 15_000_000, "gas_limit": 30_000_000, "tx_count": 120, "pool_pending": 40, "pool_queued": 2,
            "expected_base_fee": 1_000_000_000 + n}


def accuracy_record(block: int, acc: float = 0.875) -> dict[str, Any]:
    """Shaped like orchestrator.evaluator.ModelRecord."""
    return {"block": block, "timestamp": 1_700_000_000 + block, "accuracy": acc, "accuracy_class0": 0.9,
            "accuracy_class1": 0.85, "n_test": 400, "spot_checks": 5, "spot_mismatches": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)


# ---- mosquitto -----------------------------------------------------------------------------------


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)


class Mosquitto:
    """A mosquitto process on a loopback port, restartable on the same port."""

    def __init__(self, binary: str, folder: Path, *, users: dict[str, str] | None = None,
                 tls: tuple[Path, Path] | None = None):
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / "mosquitto.log"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", f"log_dest file {self.log}",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "max_queued_messages 100000", f"user {pwd.getpwuid(os.getuid()).pw_name}"]
        if users:
            passwd = folder / "passwd"
            tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
            for i, (user, password) in enumerate(users.items()):
                args = [tool, "-b"] + (["-c"] if i == 0 else []) + [str(passwd), user, password]
                subprocess.run(args, check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            cert, key = tls
            lines += [f"certfile {cert}", f"keyfile {key}"]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 5
        while not accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log.read_text(errors="replace") if self.log.exists() else ""
                raise RuntimeError(f"mosquitto did not start (exit {self.proc.poll()}): {log[-800:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def mosquitto_bin() -> str:
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (tests/setup_debian.sh installs Debian's package as root)")
    return binary


@pytest.fixture
def mosquitto(mosquitto_bin: str, tmp_path: Path):
    m = Mosquitto(mosquitto_bin, tmp_path)
    m.start()
    try:
        yield m
    finally:
        m.stop()


# ---- a subscriber --------------------------------------------------------------------------------


class Subscriber:
    """An aiomqtt client collecting (topic, payload, retain) in the background."""

    def __init__(self, port: int, topic: str, **client_kwargs: Any):
        self.port = port
        self.topic = topic
        self.kwargs = client_kwargs
        self.messages: list[tuple[str, Any, bool]] = []
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscriber:
        self._client = aiomqtt.Client("127.0.0.1", self.port, logger=MQTT_LOGGER, **self.kwargs)
        await self._client.__aenter__()
        await self._client.subscribe(self.topic, qos=1)
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._client is not None
        async for m in self._client.messages:
            payload = bytes(m.payload)
            try:
                data: Any = json.loads(payload)
            except ValueError:
                data = payload.decode(errors="replace")
            self.messages.append((m.topic.value, data, bool(m.retain)))

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.__aexit__(None, None, None)

    def on(self, suffix: str) -> list[Any]:
        return [d for t, d, _ in self.messages if t.endswith("/" + suffix)]

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got {[(t, d) for t, d, _ in self.messages][-10:]}")
            await asyncio.sleep(0.01)


async def publish_sample(tel: Telemetry, first_block: int = 100) -> None:
    tel.status({"state": "running", "scenario": "unit", "started_at": time.time()})
    for n in range(first_block, first_block + 3):
        tel.block(block_record(n))
    tel.accuracy(accuracy_record(first_block + 2))
    tel.counters({"honest": {"sent": 10, "included": 8, "reverted": 1, "dropped": 0, "in_flight": 1},
                  "label/flip": {"sent": 4, "included": 4, "reverted": 0, "dropped": 0, "in_flight": 0}},
                 block=first_block + 2)
    tel.event("phase", name="ramp", block=first_block + 1)


def check_sample(sub: Subscriber, first_block: int = 100) -> None:
    blocks = sub.on("blocks")
    assert [b["number"] for b in blocks] == [first_block, first_block + 1, first_block + 2]
    assert set(blocks[0]) == BLOCK_FIELDS
    assert blocks[0]["base_fee"] == 1_000_000_000 + first_block
    (acc,) = sub.on("accuracy")
    assert set(acc) == ACCURACY_FIELDS and acc["accuracy"] == 0.875
    honest = sub.on("counters/honest")[-1]
    assert honest["policy"] == "honest" and honest["sent"] == 10 and honest["block"] == first_block + 2
    assert sub.on("counters/label_flip")[-1]["policy"] == "label/flip"  # '/' cannot be part of one level
    events = [e for e in sub.on("events") if e["kind"] == "phase"]
    assert events and events[0]["name"] == "ramp" and "ts" in events[0]
    status = sub.on("status")[-1]
    assert status["state"] == "running" and status["run_id"] == RUN


# ---- configuration -------------------------------------------------------------------------------


def test_config_defaults_and_errors():
    c = TelemetryConfig()
    assert (c.mqtt, c.qos, c.publish_every_blocks, c.queue_limit, c.topic_prefix) == ("embedded", 0, 1, 10_000, "dcai")
    assert c.enabled and c.embedded and c.endpoint() is None
    ext = TelemetryConfig.model_validate({"mqtt": "mqtts://broker.example:8884", "username_env": "MQ_USER",
                                          "password_env": "MQ_PASS", "tls": {"ca_file": "/ca.pem"}, "qos": 1})
    assert ext.endpoint().tls and ext.endpoint().port == 8884 and ext.required_env() == ["MQ_USER", "MQ_PASS"]
    assert TelemetryConfig(mqtt="mqtt://h").endpoint().port == 1883
    assert not TelemetryConfig(mqtt="none").enabled
    bad = [
        ({"mqtt": "mqtt://u:hunter2@h:1883"}, "password"),
        ({"mqtt": "http://h"}, "mqtt://"),
        ({"mqtt": "mqtt://h", "tls": {"insecure": True}}, "mqtts://"),
        ({"mqtt": "embedded", "username_env": "X"}, "no credentials"),
        ({"mqtt": "mqtt://h", "password_env": "P"}, "user name"),
        ({"mqtt": "mqtt://h", "username_env": "not a name"}, "environment variable"),
        ({"qos": 2}, "qos"),
        ({"publish_every_blocks": 0}, "publish_every_blocks"),
        ({"topic_prefix": "dcai/#"}, "topic prefix"),
        ({"brokr": "x"}, "brokr"),
        ({"tls": {"key_file": "k.pem"}, "mqtt": "mqtts://h"}, "cert_file"),
    ]
    for data, needle in bad:
        with pytest.raises(ValidationError) as e:
            TelemetryConfig.model_validate(data)
        assert needle in str(e.value), (data, str(e.value))
        assert "hunter2" not in str(e.value)
    with pytest.raises(TelemetryError):
        Telemetry("a/b")


def test_encode_big_integers_and_dataclasses():
    from orchestrator.monitor import BlockRecord

    rec = BlockRecord(1, 2, 3.5, 10**20, 4, 5, 6, 7, 8, -1)
    data = json.loads(encode({"rec": rec, "nan": float("nan"), "small": 2**53 - 1}))
    assert data["rec"]["base_fee"] == str(10**20) and data["rec"]["number"] == 1
    assert data["nan"] is None and data["small"] == 2**53 - 1


# ---- end to end ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["subprocess", "inprocess"])
async def test_embedded_broker_end_to_end(mode: str):
    tel = Telemetry(RUN, TelemetryConfig(embedded_mode=mode))
    await tel.start()
    try:
        assert tel.connected and tel.broker is not None and tel.url.startswith("mqtt://127.0.0.1:")
        async with Subscriber(tel.broker.port, f"dcai/{RUN}/#") as sub:
            await publish_sample(tel)
            await sub.wait_for(lambda: len(sub.on("events")) >= 1 and len(sub.on("counters/label_flip")) >= 1)
            check_sample(sub)
    finally:
        stats = await tel.stop()
    assert stats["published"] == 8 and stats["dropped"] == 0 and stats["disconnects"] == 0
    assert tel.broker is not None and tel.broker.url is None  # the embedded broker is stopped
    if mode == "subprocess":
        assert tel.broker.pid is None


async def test_embedded_broker_alone():
    async with EmbeddedBroker() as b:
        assert b.url == f"mqtt://127.0.0.1:{b.port}" and accepts(b.port)
        pid = b.pid
        assert pid is not None
    assert not accepts(b.port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_mosquitto_end_to_end(mosquitto: Mosquitto):
    tel = Telemetry(RUN, TelemetryConfig(mqtt=mosquitto.url, qos=1, publish_every_blocks=2))
    await tel.start()
    try:
        assert tel.connected and tel.broker is None
        async with Subscriber(mosquitto.port, f"dcai/{RUN}/#") as sub:
            tel.status({"state": "running", "started_at": time.time()})
            for n in range(10, 16):  # every second block is published
                tel.block(block_record(n))
            tel.accuracy(accuracy_record(15))
            tel.event("chaos", action="base_fee_shock", block=12)
            await sub.wait_for(lambda: sub.on("events") and sub.on("accuracy"))
            assert [b["number"] for b in sub.on("blocks")] == [10, 12, 14]
            assert set(sub.on("blocks")[0]) == BLOCK_FIELDS
            assert set(sub.on("accuracy")[0]) == ACCURACY_FIELDS
            assert sub.on("events")[0]["kind"] == "chaos" and sub.on("events")[0]["action"] == "base_fee_shock"
        # the status is retained: a late subscriber gets it at once
        async with Subscriber(mosquitto.port, f"dcai/{RUN}/status") as late:
            await late.wait_for(lambda: late.messages)
            assert late.messages[0][2] is True and late.messages[0][1]["state"] == "running"
    finally:
        stats = await tel.stop()
    assert stats["published"] == 6 and stats["dropped"] == 0


async def test_queue_overflow_is_counted_not_raised():
    tel = Telemetry(RUN, TelemetryConfig(queue_limit=5, embedded_mode="inprocess"))
    await tel.start()
    try:
        for n in range(100):  # no await: the sender cannot run, the queue fills
            tel.block(block_record(n))
    finally:
        stats = await tel.stop()
    assert stats["queue_overflow"] == 95 and stats["published"] == 5
    assert stats["published"] + stats["dropped"] == 100


async def test_disabled_and_unreachable_broker_never_fail():
    off = Telemetry(RUN, TelemetryConfig(mqtt="none"))
    await off.start()
    off.block(block_record(1))
    assert (await off.stop())["published"] == 0
    port = free_port()  # nothing listens there
    tel = Telemetry(RUN, TelemetryConfig(mqtt=f"mqtt://127.0.0.1:{port}", connect_wait_s=0.3,
                                         reconnect_min_s=0.05, reconnect_max_s=0.1))
    t = time.monotonic()
    await tel.start()  # does not raise
    assert time.monotonic() - t < 2 and not tel.connected
    for n in range(50):
        tel.block(block_record(n))
    await asyncio.sleep(0.3)
    stats = await tel.stop()
    assert stats["dropped"] == 50 and stats["published"] == 0 and stats["connect_failures"] >= 2
    assert "ConnectionRefused" in (stats["last_error"] or "") or "refused" in (stats["last_error"] or "").lower()
    # configuration errors do fail start, before the run: an unreadable CA file
    with pytest.raises(TelemetryError, match="TLS"):
        await Telemetry(RUN, TelemetryConfig(mqtt=f"mqtts://127.0.0.1:{port}",
                                             tls=TLSConfig(ca_file="/nonexistent/ca.pem"))).start()


# ---- control -------------------------------------------------------------------------------------


async def test_control_reaches_the_handler():
    tel = Telemetry(RUN, TelemetryConfig(embedded_mode="inprocess"))
    got: list[str] = []
    async_got: list[str] = []

    async def async_handler(command: str) -> None:
        await asyncio.sleep(0)
        async_got.append(command)

    tel.on_control(got.append)
    tel.on_control(async_handler)
    await tel.start()
    try:
        async with Subscriber(tel.broker.port, f"dcai/{RUN}/events") as sub:
            async with aiomqtt.Client("127.0.0.1", tel.broker.port, logger=MQTT_LOGGER) as ctl:
                topic = f"dcai/{RUN}/control"
                await ctl.publish(topic, b"pause", qos=1)
                await ctl.publish(topic, b"  Resume\n", qos=1)
                await ctl.publish(topic, b"self-destruct", qos=1)
                await ctl.publish(topic, json.dumps({"command": "stop"}).encode(), qos=1)
                await ctl.publish(topic, b'{"command": 3}', qos=1)
            await sub.wait_for(lambda: len(sub.on("events")) >= 5)
            await asyncio.sleep(0.05)
        assert got == ["pause", "resume", "stop"] and async_got == ["pause", "resume", "stop"]
        kinds = [(e["kind"], e.get("command")) for e in sub.on("events")]
        assert kinds.count(("control_error", None)) == 2
        assert [c for k, c in kinds if k == "control"] == ["pause", "resume", "stop"]
        assert any(e.get("payload") == "self-destruct" for e in sub.on("events") if e["kind"] == "control_error")
        # a retained command (left over for this run id) is never acted on
        async with aiomqtt.Client("127.0.0.1", tel.broker.port, logger=MQTT_LOGGER) as ctl:
            await ctl.publish(f"dcai/{RUN}/control", b"stop", qos=1, retain=True)
        await asyncio.sleep(0.1)
        assert got == ["pause", "resume", "stop", "stop"]  # live delivery of a retained publish has retain=0
        tel2 = Telemetry(RUN, TelemetryConfig(mqtt=tel.url))
        late: list[str] = []
        tel2.on_control(late.append)
        await tel2.start()
        await asyncio.sleep(0.2)
        stats2 = await tel2.stop()
        assert late == [] and stats2["control_errors"] >= 1  # amqtt delivers it once or twice
    finally:
        stats = await tel.stop()
    assert stats["control_received"] == 4 and stats["control_errors"] == 2


# ---- broker outage -------------------------------------------------------------------------------


async def test_broker_outage_drops_counts_and_recovers(mosquitto: Mosquitto):
    tel = Telemetry(RUN, TelemetryConfig(mqtt=mosquitto.url, reconnect_min_s=0.05, reconnect_max_s=0.2))
    await tel.start()
    assert tel.connected
    calls: list[float] = []
    gaps: list[float] = []
    number = 0
    stop_ticker = False

    async def ticker() -> None:  # stands for the run loop: it must never stall
        last = time.perf_counter()
        while not stop_ticker:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def publish_for(seconds: float) -> None:
        nonlocal number
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            tel.block(block_record(number))
            tel.counters({"honest": {"sent": number}}, block=number)
            tel.event("tick", block=number)
            calls.append(time.perf_counter() - t)
            number += 1
            await asyncio.sleep(0.005)

    tick_task = asyncio.create_task(ticker())
    try:
        async with Subscriber(mosquitto.port, f"dcai/{RUN}/blocks"):
            await publish_for(0.3)
        await asyncio.to_thread(mosquitto.stop)
        await publish_for(0.8)  # the broker is gone: calls return at once, nothing raises
        outage_end = number
        assert not tel.connected and tel.disconnects == 1
        await asyncio.to_thread(mosquitto.start)  # the same port
        t = time.monotonic()
        while not tel.connected:
            assert time.monotonic() - t < 5, "no reconnect within 5 s"
            await publish_for(0.02)
        async with Subscriber(mosquitto.port, f"dcai/{RUN}/blocks") as sub:
            first_after = number
            await publish_for(0.3)
            await sub.wait_for(lambda: any(b["number"] >= first_after for b in sub.on("blocks")))
            numbers = [b["number"] for b in sub.on("blocks")]
            assert numbers == sorted(numbers) and min(numbers) > outage_end - 1
    finally:
        stop_ticker = True
        await tick_task
        stats = await tel.stop()
    sent = 3 * number
    assert stats["disconnects"] == 1 and stats["reconnects"] == 1
    assert stats["dropped"] >= 3 * 50  # at least ~0.8 s of three messages every 5 ms
    assert stats["published"] + stats["dropped"] == sent
    calls.sort()
    # never waits on the network: microseconds each (wall clock, so a busy machine gets some slack)
    assert calls[len(calls) // 2] < 0.0005 and calls[-1] < 0.1, (calls[len(calls) // 2], calls[-1])
    assert max(gaps) < 0.5, f"the loop stalled for {max(gaps) * 1000:.0f} ms"


# ---- credentials ---------------------------------------------------------------------------------


async def test_password_auth_and_no_leak(mosquitto_bin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]):
    password = "s3cr3t-Pa55-telemetry"
    m = Mosquitto(mosquitto_bin, tmp_path, users={"dcai": password, "viewer": "viewer-pass"})
    m.start()
    monkeypatch.setenv("DCAI_MQTT_USER", "dcai")
    monkeypatch.setenv("DCAI_MQTT_PASSWORD", password)
    log_file = tmp_path / "run.log.jsonl"
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    logs.configure(log_file, console=True)
    MQTT_LOGGER.setLevel("DEBUG")  # paho's packet log too: it must not carry the password either
    cfg = TelemetryConfig(mqtt=m.url, username_env="DCAI_MQTT_USER", password_env="DCAI_MQTT_PASSWORD",
                          reconnect_min_s=0.05, reconnect_max_s=0.1)
    endpoint_file = tmp_path / "telemetry.json"
    try:
        # anonymous clients are refused: the broker really checks
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", m.port, logger=MQTT_LOGGER, timeout=3):
                pass
        tel = Telemetry(RUN, cfg, endpoint_file=endpoint_file)
        await tel.start()
        assert tel.connected
        async with Subscriber(m.port, f"dcai/{RUN}/#", username="viewer", password="viewer-pass") as sub:
            await publish_sample(tel)
            await sub.wait_for(lambda: sub.on("events") and sub.on("counters/label_flip"))
            check_sample(sub)
        stats = await tel.stop()
        assert stats["published"] == 8
        texts = [repr(tel), str(stats), repr(cfg), str(tel.stats()), endpoint_file.read_text()]

        # a wrong password: start does not fail, the run goes on, the failures are counted
        monkeypatch.setenv("DCAI_MQTT_PASSWORD", "wrong-" + password)
        bad = Telemetry(RUN, cfg.model_copy(update={"connect_wait_s": 0.3}))
        await bad.start()
        bad.block(block_record(1))
        await asyncio.sleep(0.2)
        bad_stats = await bad.stop()
        assert not bad_stats["connected"] and bad_stats["connect_failures"] >= 1 and bad_stats["dropped"] == 1
        texts += [repr(bad), str(bad_stats)]

        # a named variable that is not set is a configuration error, named (not a silent anonymous connect)
        monkeypatch.delenv("DCAI_MQTT_PASSWORD")
        with pytest.raises(TelemetryError, match="DCAI_MQTT_PASSWORD"):
            await Telemetry(RUN, cfg).start()
    finally:
        MQTT_LOGGER.setLevel("ERROR")
        logs.close()
        for h in list(root.handlers):  # the console handler writes to this test's captured stderr
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        structlog.reset_defaults()
        m.stop()
    captured = capsys.readouterr()
    texts += [log_file.read_text(), captured.out, captured.err]
    assert "telemetry" in texts[-3]  # the log file did receive telemetry lines
    for text in texts:
        assert password not in text
    assert json.loads(endpoint_file.read_text())["password_env"] == "DCAI_MQTT_PASSWORD"


def _make_certs(folder: Path) -> tuple[Path, Path, Path]:
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=dcai test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))
    return ca, cert, key


async def test_tls_broker(mosquitto_bin: str, tmp_path: Path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    ca, cert, key = _make_certs(tmp_path)
    m = Mosquitto(mosquitto_bin, tmp_path, tls=(cert, key))
    m.start()
    try:
        url = f"mqtts://127.0.0.1:{m.port}"
        tel = Telemetry(RUN, TelemetryConfig(mqtt=url, tls=TLSConfig(ca_file=str(ca))))
        await tel.start()
        assert tel.connected
        out = io.StringIO()
        watcher = asyncio.create_task(watch(url, RUN, tls=TLSConfig(ca_file=str(ca)), once=True, timeout=10, out=out))
        for n in range(40):
            tel.block(block_record(7000 + n))
            await asyncio.sleep(0.05)
            if watcher.done():
                break
        assert await watcher == 0 and "block 70" in out.getvalue()
        assert (await tel.stop())["published"] >= 1
        # without the CA the certificate is not trusted: never connected, never raised
        untrusted = Telemetry(RUN, TelemetryConfig(mqtt=url, connect_wait_s=0.5))
        await untrusted.start()
        assert not untrusted.connected
        assert (await untrusted.stop())["connect_failures"] >= 1
    finally:
        m.stop()


# ---- dcai watch ----------------------------------------------------------------------------------


async def _feed(tel: Telemetry, first: int, stop: asyncio.Event) -> None:
    tel.status({"state": "running", "scenario": "unit", "started_at": time.time()})
    n = first
    while not stop.is_set():
        tel.block(block_record(n))
        tel.counters({"honest": {"sent": n, "included": n - 1, "dropped": 0}}, block=n)
        if n % 3 == 0:
            tel.accuracy(accuracy_record(n))
            tel.event("phase", name=f"p{n}")
        n += 1
        await asyncio.sleep(0.05)


async def test_watch_once_prints_a_snapshot(mosquitto: Mosquitto, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]):
    tel = Telemetry(RUN, TelemetryConfig(mqtt=mosquitto.url), endpoint_file=tmp_path / RUN / "telemetry.json")
    got: list[str] = []
    tel.on_control(got.append)
    await tel.start()
    stop = asyncio.Event()
    feeder = asyncio.create_task(_feed(tel, 4242, stop))
    try:
        out = io.StringIO()
        assert await watch(mosquitto.url, None, prefix="dcai", once=True, timeout=10, out=out) == 0
        text = out.getvalue()
        assert f"run {RUN} (running)" in text and "block 424" in text and "base fee 1 gwei" in text
        assert "honest" in text and "txpool pending 40 queued 2" in text

        # the command line: broker and run found through the run folder's telemetry.json
        parser = argparse.ArgumentParser(prog="dcai")
        build_watch_parser(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["watch", "--run-dir", str(tmp_path / RUN), "--once", "--timeout", "10"])
        assert await asyncio.to_thread(args.func, args) == 0
        assert f"run {RUN}" in capsys.readouterr().out
        args = parser.parse_args(["watch", "--results", str(tmp_path), "--send", "pause"])
        assert await asyncio.to_thread(args.func, args) == 0
        t = time.monotonic()
        while not got and time.monotonic() - t < 5:
            await asyncio.sleep(0.02)
        assert got == ["pause"]
        # live mode (rich) runs until the run reaches a final state
        live_out = io.StringIO()
        live = asyncio.create_task(watch(mosquitto.url, RUN, once=False, timeout=20, out=live_out))
        await asyncio.sleep(0.5)
        assert not live.done()
        stop.set()
        await feeder
        t = time.monotonic()
        tel.status({"state": "completed"})
        assert await live == 0 and time.monotonic() - t < 5
        assert "completed" in live_out.getvalue() and "honest" in live_out.getvalue()
    finally:
        stop.set()
        await feeder
        tel.status({"state": "completed"})
        await tel.stop()
    # once the run has ended and published its final status, a live watch shows it and returns
    # the endpoint file says the run has ended; the broker kept the final status and the latest
    # block, accuracy and counters (retained), so a late watcher still sees the last state
    assert json.loads((tmp_path / RUN / "telemetry.json").read_text())["live"] is False
    out = io.StringIO()
    t = time.monotonic()
    assert await watch(mosquitto.url, RUN, once=False, timeout=10, out=out) == 0
    assert time.monotonic() - t < 3  # a finished run given by id: shown, then the watch ends
    assert f"{RUN} (completed)" in out.getvalue() and "block 42" in out.getvalue()
    # without retained records there is no block to show: exit code 1 at the timeout
    quiet = Telemetry("quiet-run", TelemetryConfig(mqtt=mosquitto.url, retain_latest=False))
    await quiet.start()
    quiet.block(block_record(5))
    quiet.status({"state": "completed"})
    await quiet.stop()
    out = io.StringIO()
    assert await watch(mosquitto.url, "quiet-run", once=True, timeout=1, out=out) == 1
    assert "run quiet-run (completed)" in out.getvalue() and "block: none received yet" in out.getvalue()


async def test_watch_picks_the_newest_run_and_renders():
    state = WatchState("dcai")
    old = {"run_id": "old", "state": "completed", "started_at": 100.0}
    state.handle("dcai/old/status", json.dumps(old).encode(), retained=True)
    state.handle("dcai/new/status", json.dumps({"state": "running", "started_at": 200.0}).encode(), retained=True)
    state.handle("dcai/new/blocks", encode(block_record(77)))
    state.handle("dcai/new/blocks", encode(block_record(76)))  # late duplicate: the newest block stays
    state.handle("dcai/new/control", b"pause")
    state.handle("dcai/new/events", b"not json")
    assert state.current().run_id == "new" and state.current().block["number"] == 77
    assert state.bad_messages == 1
    text = snapshot_text(state, "mqtt://127.0.0.1:1")
    assert "block 77" in text and "run new (running)" in text and "gas 15.00M/30.00M (50%)" in text
    from rich.console import Console

    from orchestrator.watch import render

    console = Console(file=io.StringIO(), width=120)
    console.print(render(state, "mqtt://127.0.0.1:1"))
    assert "77" in console.file.getvalue()
