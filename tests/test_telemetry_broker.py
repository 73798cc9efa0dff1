"""MQTT telemetry against a real mosquitto when things go wrong or are locked down: a broker outage
(drops counted, the run recovers), password authentication without leaking it, and TLS."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
import subprocess
import time
from pathlib import Path

import aiomqtt
import pytest
import structlog

from orchestrator import logs
from orchestrator.telemetry import MQTT_LOGGER, Telemetry, TelemetryError
from orchestrator.telemetry_config import TelemetryConfig, TLSConfig
from orchestrator.watch import watch

from telemetry_helpers import (  # noqa: F401 - fixtures are found by their imported names
    RUN,
    Mosquitto,
    Subscriber,
    block_record,
    check_sample,
    mosquitto,
    mosquitto_bin,
    publish_sample,
)

pytestmark = pytest.mark.timeout(60)


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
