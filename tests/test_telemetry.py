"""MQTT telemetry and control against real brokers: the embedded amqtt broker and Debian's mosquitto:
configuration, end to end, a full queue, unreachable brokers and the control channel. Nothing is
mocked (broker outages and credentials: test_telemetry_broker.py; `dcai watch`: test_telemetry_watch.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import aiomqtt
import pytest
from pydantic import ValidationError

from orchestrator.broker import EmbeddedBroker
from orchestrator.telemetry import MQTT_LOGGER, Telemetry, TelemetryError, encode
from orchestrator.telemetry_config import TelemetryConfig, TLSConfig

from telemetry_helpers import (  # noqa: F401 - fixtures are found by their imported names
    ACCURACY_FIELDS,
    BLOCK_FIELDS,
    RUN,
    Mosquitto,
    Subscriber,
    accepts,
    accuracy_record,
    block_record,
    check_sample,
    mosquitto,
    mosquitto_bin,
    publish_sample,
)

pytestmark = pytest.mark.timeout(60)


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
    # Nothing listens there: the port stays bound (never listening) to the end, so connections are
    # refused and no process started meanwhile (another xdist worker's node or broker) can take it.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
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
