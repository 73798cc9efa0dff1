"""`dcai watch`: a live terminal view of a running scenario, read from its MQTT telemetry.

    dcai watch                          # the newest run under ./results (its telemetry.json)
    dcai watch --url mqtt://host:1883   # the newest run seen on that broker
    dcai watch --url ... --run-id ID    # one run
    dcai watch --send pause             # send a control command (pause, resume, stop) and exit
    dcai watch --once --timeout 30      # print one plain-text snapshot (after the first block) and exit

Topics and payloads are described in docs/telemetry.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import aiomqtt

from .telemetry import CONTROL_COMMANDS, TelemetryError, check_run_id, client_options
from .telemetry_config import TLSConfig, parse_broker_url

FINAL_STATES = ("completed", "interrupted", "failed")
EVENTS_SHOWN = 8
SETTLE_S = 0.3  # once done, read this much longer: what was published or retained with it comes in too


@dataclass
class RunView:
    """What the watcher knows about one run."""

    run_id: str
    status: dict[str, Any] = field(default_factory=dict)
    block: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = None
    counters: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENTS_SHOWN))
    first_seen: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    live_messages: int = 0  # messages that were not retained

    @property
    def state(self) -> str:
        return str(self.status.get("state") or ("running" if self.live_messages else "unknown"))

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


class WatchState:
    """Runs seen under a prefix, and which one is shown."""

    def __init__(self, prefix: str, run_id: str | None = None):
        self.prefix = prefix
        self.fixed_run = run_id
        self.runs: dict[str, RunView] = {}
        self.messages = 0
        self.bad_messages = 0

    def handle(self, topic: str, payload: bytes, *, retained: bool = False) -> RunView | None:
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        run_id, _, kind = topic[len(head):].partition("/")
        if not run_id or not kind or kind == "control":
            return None
        if self.fixed_run is not None and run_id != self.fixed_run:
            return None
        if not payload:
            return None  # an empty retained message clears a topic
        try:
            data = json.loads(payload)
        except ValueError:
            self.bad_messages += 1
            return None
        if not isinstance(data, dict):
            self.bad_messages += 1
            return None
        self.messages += 1
        view = self.runs.get(run_id)
        if view is None:
            view = self.runs[run_id] = RunView(run_id)
        view.last_seen = time.monotonic()
        if not retained:
            view.live_messages += 1
        if kind == "status":
            view.status = data
        elif kind == "blocks":
            if view.block is None or _num(data.get("number")) >= _num(view.block.get("number")):
                view.block = data
        elif kind == "accuracy":
            view.accuracy = data
        elif kind.startswith("counters/"):
            view.counters[str(data.get("policy") or kind.split("/", 1)[1])] = data
        elif kind == "events":
            view.events.append(data)
        return view

    def current(self) -> RunView | None:
        if self.fixed_run is not None:
            return self.runs.get(self.fixed_run)
        if not self.runs:
            return None
        now = time.monotonic()

        def rank(v: RunView) -> tuple[int, float, float]:
            live = int((not v.finished and v.state != "lost") or (v.live_messages > 0 and now - v.last_seen < 10))
            started = _num(v.status.get("started_at"), _num(v.status.get("ts"), 0.0))
            return live, started, v.first_seen

        return max(self.runs.values(), key=rank)


# ---- rendering ---------------------------------------------------------------------------------


def _num(v: Any, default: float = -1.0) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def _gwei(wei: Any) -> str:
    x = _num(wei, -1)
    return "?" if x < 0 else f"{x / 1e9:.4g} gwei"


def _millions(v: Any) -> str:
    x = _num(v, -1)
    return "?" if x < 0 else f"{x / 1e6:.2f}M"


def _clock(ts: Any) -> str:
    x = _num(ts, -1)
    if x < 0:
        return "?"
    return datetime.fromtimestamp(x, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _event_line(e: dict[str, Any]) -> str:
    when = _num(e.get("ts"), -1)
    stamp = datetime.fromtimestamp(when).strftime("%H:%M:%S") if when >= 0 else "--:--:--"
    rest = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("kind", "ts"))
    return f"{stamp} {e.get('kind', '?')} {rest}".rstrip()


def _counter_columns(view: RunView) -> list[str]:
    cols: list[str] = []
    for c in view.counters.values():
        for k, v in c.items():
            if k not in ("policy", "block", "ts") and isinstance(v, (int, float)) and not isinstance(v, bool) \
                    and k not in cols:
                cols.append(k)
    return cols


def _summary_lines(view: RunView, broker: str | None) -> list[str]:
    st = view.status
    head = f"run {view.run_id} ({view.state})"
    if st.get("scenario"):
        head += f"  scenario {st['scenario']}"
    if broker:
        head += f"  via {broker}"
    lines = [head]
    b = view.block
    if b is None:
        lines.append("block: none received yet")
    else:
        gas_used, gas_limit = _num(b.get("gas_used")), _num(b.get("gas_limit"))
        fill = f" ({100 * gas_used / gas_limit:.0f}%)" if gas_limit > 0 and gas_used >= 0 else ""
        lines.append(
            f"block {b.get('number', '?')}  chain time {_clock(b.get('timestamp'))}  base fee {_gwei(b.get('base_fee'))}"
            f"  gas {_millions(b.get('gas_used'))}/{_millions(b.get('gas_limit'))}{fill}  txs {b.get('tx_count', '?')}"
            f"  txpool pending {b.get('pool_pending', '?')} queued {b.get('pool_queued', '?')}")
    a = view.accuracy
    if a is None:
        lines.append("accuracy: no sample yet")
    else:
        per_class = ""
        if "accuracy_class0" in a or "accuracy_class1" in a:
            per_class = f" (class 0 {_fmt(a.get('accuracy_class0'))}, class 1 {_fmt(a.get('accuracy_class1'))})"
        lines.append(f"accuracy {_fmt(a.get('accuracy'))} at block {a.get('block', '?')}{per_class}")
    return lines


def _fmt(v: Any) -> str:
    x = _num(v, float("nan"))
    return "?" if x != x else f"{x:.4f}"


def snapshot_text(state: WatchState, broker: str | None = None) -> str:
    """The current view as plain text (what `--once` prints)."""
    view = state.current()
    if view is None:
        return f"no run seen under {state.prefix}/ yet\n"
    lines = _summary_lines(view, broker)
    cols = _counter_columns(view)
    if view.counters:
        width = max(6, *(len(p) for p in view.counters))
        lines.append("transactions by policy:")
        lines.append("  " + "policy".ljust(width) + "".join(f"{c:>12}" for c in cols))
        for policy, c in sorted(view.counters.items()):
            lines.append("  " + policy.ljust(width) + "".join(f"{_cell(c.get(k)):>12}" for k in cols))
    else:
        lines.append("transactions by policy: none yet")
    if view.events:
        lines.append("recent events:")
        lines.extend("  " + _event_line(e) for e in view.events)
    return "\n".join(lines) + "\n"


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def render(state: WatchState, broker: str | None = None, note: str = "") -> Any:
    """The current view as rich renderables."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    view = state.current()
    if view is None:
        return Panel(Text(f"waiting for a run under {state.prefix}/ ... {note}".rstrip()), title="dcai watch")
    parts: list[Any] = [Text(line) for line in _summary_lines(view, broker)]
    cols = _counter_columns(view)
    if view.counters:
        table = Table(title="transactions by policy", title_justify="left", expand=False)
        table.add_column("policy")
        for c in cols:
            table.add_column(c.replace("_", " "), justify="right")
        for policy, c in sorted(view.counters.items()):
            table.add_row(policy, *(_cell(c.get(k)) for k in cols))
        parts.append(table)
    if view.events:
        parts.append(Text("recent events", style="bold"))
        parts.extend(Text("  " + _event_line(e)) for e in view.events)
    if note:
        parts.append(Text(note, style="yellow"))
    style = {"completed": "green", "failed": "red", "interrupted": "yellow", "paused": "yellow"}.get(view.state, "blue")
    return Panel(Group(*parts), title=f"dcai watch: {view.run_id}", border_style=style)


# ---- the watcher -------------------------------------------------------------------------------


async def watch(url: str, run_id: str | None = None, *, prefix: str = "dcai", username_env: str | None = None,
                password_env: str | None = None, tls: TLSConfig | None = None, once: bool = False,
                timeout: float | None = None, out: TextIO | None = None) -> int:
    """Subscribe to a run's topics (or the newest run under `prefix`) and show them.

    Live mode (a rich view) ends when the run reaches a final state, at `timeout`, or on Ctrl-C.
    `once=True` prints one plain-text snapshot shortly (`SETTLE_S`) after the first block record
    has arrived, so the messages published with it are in too (or at `timeout`), and returns 0 if a
    block was seen, 1 otherwise.
    """
    if run_id is not None:
        check_run_id(run_id)
    endpoint = parse_broker_url(url)
    out = out if out is not None else sys.stdout
    state = WatchState(prefix, run_id)
    topic = f"{prefix}/{run_id}/#" if run_id else f"{prefix}/+/#"
    deadline = time.monotonic() + timeout if timeout is not None else None
    broker = endpoint.display_url
    note = ""
    live: Any = None
    if not once:
        from rich.console import Console
        from rich.live import Live

        live = Live(render(state, broker), console=Console(file=out), refresh_per_second=4, transient=False)
        live.start()
    delay = 0.2
    done = False
    try:
        while not done:
            opts = client_options(endpoint, username_env=username_env, password_env=password_env, tls=tls)
            try:
                async with aiomqtt.Client(**opts, keepalive=15, timeout=5) as client:
                    await client.subscribe(topic, qos=0)
                    note = ""
                    delay = 0.2
                    done = await _consume(client, state, once=once, deadline=deadline,
                                          refresh=(lambda: live.update(render(state, broker))) if live else None)
            except aiomqtt.MqttError as e:
                note = f"broker {broker} unreachable ({e}); retrying"
                if live is not None:
                    live.update(render(state, broker, note))
                view = state.current()
                if view is not None and (view.finished or (once and view.block is not None)):
                    done = True
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                wait = delay * random.uniform(0.8, 1.2)
                if deadline is not None:
                    wait = max(0.0, min(wait, deadline - time.monotonic()))
                await asyncio.sleep(wait)
                delay = min(delay * 2, 5.0)
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        if live is not None:
            live.update(render(state, broker, note))
            live.stop()
    view = state.current()
    if once:
        if view is None and note:
            out.write(note + "\n")
        out.write(snapshot_text(state, broker))
        out.flush()
        return 0 if view is not None and view.block is not None else 1
    return 0


async def _consume(client: aiomqtt.Client, state: WatchState, *, once: bool, deadline: float | None,
                   refresh: Any) -> bool:
    """Read messages until done (True) or the deadline (False). Disconnection raises MqttError.

    Done: in once mode when a block record is in; in live mode when the shown run has ended (a run
    given by id, or one seen live). Either way reading goes on for SETTLE_S more, so the messages
    published (or retained) together with that one are shown too.
    """
    messages = client.messages.__aiter__()
    finishing = False
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return finishing
        try:
            message = await asyncio.wait_for(messages.__anext__(), remaining)
        except asyncio.TimeoutError:
            return finishing
        payload = message.payload if isinstance(message.payload, (bytes, bytearray)) else str(message.payload or "").encode()
        view = state.handle(message.topic.value, bytes(payload), retained=bool(message.retain))
        if view is None:
            continue
        if refresh is not None:
            refresh()
        current = state.current()
        if current is None or finishing:
            continue
        if once:
            done = current.block is not None
        else:
            done = current.finished and (current.live_messages > 0 or state.fixed_run is not None)
        if done:
            finishing = True
            settle = time.monotonic() + SETTLE_S
            deadline = settle if deadline is None else min(deadline, settle)


async def send_control(url: str, run_id: str, command: str, *, prefix: str = "dcai", username_env: str | None = None,
                       password_env: str | None = None, tls: TLSConfig | None = None) -> None:
    """Publish a control command (pause, resume, stop) to a run, QoS 1, not retained."""
    if command not in CONTROL_COMMANDS:
        raise TelemetryError(f"unknown command {command!r}: expected one of {', '.join(CONTROL_COMMANDS)}")
    check_run_id(run_id)
    opts = client_options(parse_broker_url(url), username_env=username_env, password_env=password_env, tls=tls)
    async with aiomqtt.Client(**opts, timeout=5) as client:
        await client.publish(f"{prefix}/{run_id}/control", command.encode(), qos=1, retain=False)


# ---- command line ------------------------------------------------------------------------------


def find_endpoint(results: Path, run_dir: Path | None = None) -> dict[str, Any] | None:
    """The telemetry.json of `run_dir`, or of the most recent run under `results` (live ones first)."""
    if run_dir is not None:
        files = [run_dir / "telemetry.json"]
    else:
        files = list(results.glob("*/telemetry.json")) if results.is_dir() else []
    best: tuple[int, float] | None = None
    found: dict[str, Any] | None = None
    for f in files:
        try:
            info = json.loads(f.read_text())
            key = (int(bool(info.get("live"))), f.stat().st_mtime)
        except (OSError, ValueError, AttributeError):
            continue
        if best is None or key > best:
            best, found = key, info
    return found


def build_watch_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `watch` to the `dcai` sub-commands: `build_watch_parser(sub)` in cli.build_parser."""
    w = subparsers.add_parser(
        "watch", help="live terminal view of a running scenario (MQTT telemetry)",
        description="Show a run's live telemetry. Without --url, the broker and run come from the newest "
                    "results/<run-id>/telemetry.json.")
    w.add_argument("--url", default=None, help="broker URL, mqtt://host:port or mqtts://host:port")
    w.add_argument("--run-id", default=None, help="the run to show (default: the newest run seen)")
    w.add_argument("--run-dir", default=None, help="a run's results folder (reads its telemetry.json)")
    w.add_argument("--results", default="results", help="results root searched for telemetry.json (default: results)")
    w.add_argument("--prefix", default=None, help="topic prefix (default: dcai, or the run's)")
    w.add_argument("--username-env", default=None, help="environment variable holding the user name")
    w.add_argument("--password-env", default=None, help="environment variable holding the password")
    w.add_argument("--ca-file", default=None, help="CA bundle for an mqtts:// broker")
    w.add_argument("--cert-file", default=None, help="client certificate for an mqtts:// broker")
    w.add_argument("--key-file", default=None, help="client key for an mqtts:// broker")
    w.add_argument("--insecure", action="store_true", help="do not verify the broker's certificate (testing only)")
    w.add_argument("--once", action="store_true", help="print one plain-text snapshot after the first block and exit")
    w.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    w.add_argument("--send", choices=CONTROL_COMMANDS, default=None,
                   help="send a control command to the run (needs a run id) and exit")
    w.set_defaults(func=cmd_watch)
    return w


def cmd_watch(args: argparse.Namespace) -> int:
    url, run_id, prefix = args.url, args.run_id, args.prefix
    username_env, password_env = args.username_env, args.password_env
    if url is None:
        info = find_endpoint(Path(args.results), Path(args.run_dir) if args.run_dir else None)
        if info is None:
            where = args.run_dir or f"{args.results}/*"
            print(f"dcai watch: no telemetry.json found in {where}; give the broker with --url", file=sys.stderr)
            return 2
        url = info.get("broker")
        run_id = run_id or info.get("run_id")
        prefix = prefix or info.get("topic_prefix")
        username_env = username_env or info.get("username_env")
        password_env = password_env or info.get("password_env")
        if not info.get("live"):
            print(f"dcai watch: run {run_id} has ended (its telemetry.json says so); showing what the broker kept",
                  file=sys.stderr)
    prefix = prefix or "dcai"
    tls = None
    if args.ca_file or args.cert_file or args.key_file or args.insecure:
        tls = TLSConfig(ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file, insecure=args.insecure)
    try:
        if args.send:
            if not run_id:
                print("dcai watch --send needs --run-id (or a telemetry.json)", file=sys.stderr)
                return 2
            asyncio.run(send_control(url, run_id, args.send, prefix=prefix, username_env=username_env,
                                     password_env=password_env, tls=tls))
            print(f"sent {args.send} to {prefix}/{run_id}/control")
            return 0
        return asyncio.run(watch(url, run_id, prefix=prefix, username_env=username_env, password_env=password_env,
                                 tls=tls, once=args.once, timeout=args.timeout))
    except (TelemetryError, ValueError) as e:
        print(f"dcai watch: {e}", file=sys.stderr)
        return 2
    except aiomqtt.MqttError as e:
        print(f"dcai watch: broker error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
