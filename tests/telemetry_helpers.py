"""Shared by the MQTT telemetry tests (test_telemetry*.py): records shaped like the run's, a real
mosquitto started on a free loopback port (tests/setup_debian.sh installs Debian's package; its tests
skip only when the binary is absent), its fixtures, and a subscriber that collects what a run publishes."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
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

from orchestrator.telemetry import MQTT_LOGGER, Telemetry

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
