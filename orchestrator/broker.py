"""The MQTT broker embedded in the orchestrator: amqtt on a free loopback port.

Two ways to run it (see docs/telemetry.md for the measurements behind the default):

* ``"subprocess"`` (default): ``python -m orchestrator.broker`` in a child process that dies with
  its parent. The broker's CPU (0.3-0.5 ms per message routed, measured) stays off the run loop's
  event loop and GIL, and a watcher that subscribes costs the run nothing.
* ``"inprocess"``: an amqtt ``Broker`` on the caller's event loop. Starts faster and needs no
  process, but every message is routed by the run loop's own thread.

Either way it listens on 127.0.0.1 only, allows anonymous clients (it is reachable from this
machine only) and logs warnings and errors only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from typing import Any, Literal

BrokerMode = Literal["subprocess", "inprocess"]

_READY_PREFIX = "DCAI-BROKER-PORT "
_QUIET_LOGGERS = ("amqtt", "transitions", "websockets")


class BrokerError(RuntimeError):
    pass


def quiet_amqtt_logging(level: int = logging.WARNING) -> None:
    """amqtt logs every connection at INFO and every packet at DEBUG: keep warnings and errors."""
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(level)


def broker_config(port: int = 0, host: str = "127.0.0.1") -> dict[str, Any]:
    """amqtt configuration: one TCP listener on loopback, anonymous clients, no $SYS or packet logging."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 64}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        "timeout_disconnect_delay": 0,
    }


async def _start_amqtt(port: int = 0, host: str = "127.0.0.1") -> tuple[Any, int]:
    """Start an amqtt broker on this event loop; returns (broker, bound port)."""
    quiet_amqtt_logging()
    from amqtt.broker import Broker

    broker = Broker(broker_config(port, host))
    await broker.start()
    bound = port
    servers = getattr(broker, "_servers", {})
    server = servers.get("default")
    sockets = getattr(getattr(server, "instance", None), "sockets", None) or []
    for s in sockets:
        bound = s.getsockname()[1]
        break
    if not bound:
        await broker.shutdown()
        raise BrokerError("the embedded broker started but its port could not be read")
    return broker, bound


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        os.setsid()
    except OSError:
        pass
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class EmbeddedBroker:
    """An amqtt broker on a free loopback port: ``url = await start()``, ``await stop()``."""

    def __init__(self, mode: BrokerMode = "subprocess", *, host: str = "127.0.0.1", port: int = 0,
                 start_timeout_s: float = 20.0):
        if mode not in ("subprocess", "inprocess"):
            raise ValueError(f"unknown broker mode {mode!r}")
        self.mode: BrokerMode = mode
        self.host = host
        self.port = port
        self.start_timeout_s = start_timeout_s
        self.url: str | None = None
        self._broker: Any = None
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._stderr_tail: list[str] = []

    def __repr__(self) -> str:
        return f"EmbeddedBroker(mode={self.mode!r}, url={self.url!r})"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> str:
        if self.url is not None:
            return self.url
        if self.mode == "inprocess":
            self._broker, self.port = await _start_amqtt(self.port, self.host)
        else:
            await self._start_subprocess()
        self.url = f"mqtt://{self.host}:{self.port}"
        return self.url

    async def _start_subprocess(self) -> None:
        env = dict(os.environ)
        # the child imports this module: make sure it finds the same package
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "orchestrator.broker", "--host", self.host, "--port", str(self.port),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, preexec_fn=_die_with_parent,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._stderr_task = asyncio.create_task(self._drain_stderr(self._proc.stderr))
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), self.start_timeout_s)
        except asyncio.TimeoutError:
            line = b""
        text = line.decode(errors="replace").strip()
        if not text.startswith(_READY_PREFIX):
            await self.stop()
            tail = " | ".join(self._stderr_tail[-5:])
            raise BrokerError(f"the embedded MQTT broker did not start: {text or 'no output'}"
                              + (f" ({tail})" if tail else ""))
        self.port = int(text[len(_READY_PREFIX):])

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        log = logging.getLogger("dcai.broker")
        while True:
            line = await stream.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            self._stderr_tail = (self._stderr_tail + [text])[-20:]
            log.warning("embedded broker: %s", text)

    async def stop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broker.shutdown(), 5)
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except asyncio.TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            if self._stderr_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._stderr_task, 2)
                self._stderr_task = None
        self.url = None

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# ---- the child process -----------------------------------------------------------------------


async def _serve(host: str, port: int) -> None:
    broker, bound = await _start_amqtt(port, host)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, done.set)

    # stdin closing (the parent went away without a signal) also ends the broker
    async def watch_stdin() -> None:
        reader = asyncio.StreamReader()
        with contextlib.suppress(Exception):
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            await reader.read()
        done.set()

    stdin_task = asyncio.create_task(watch_stdin())
    sys.stdout.write(f"{_READY_PREFIX}{bound}\n")
    sys.stdout.flush()
    await done.wait()
    stdin_task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(broker.shutdown(), 5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m orchestrator.broker", description="dcai's embedded MQTT broker")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    quiet_amqtt_logging()
    # amqtt warns about its own deprecated options at import; nothing for the user to act on
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    asyncio.run(_serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
