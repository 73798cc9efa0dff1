"""`dcai watch`: a snapshot of a run's live telemetry from a real broker, and the newest run picked."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time
from pathlib import Path

import pytest

from orchestrator.telemetry import Telemetry, encode
from orchestrator.telemetry_config import TelemetryConfig
from orchestrator.watch import WatchState, build_watch_parser, snapshot_text, watch

from telemetry_helpers import (  # noqa: F401 - fixtures are found by their imported names
    RUN,
    Mosquitto,
    accuracy_record,
    block_record,
    mosquitto,
    mosquitto_bin,
)

pytestmark = pytest.mark.timeout(60)


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
