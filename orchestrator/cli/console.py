"""Redacted console streams: while `dcai` runs, everything written to stdout and stderr (prints,
progress lines, log lines, Ray's forwarded worker output, tracebacks) passes `logs.redact_text`, so a
password in an RPC URL or a key from the environment never reaches the terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO
from urllib.parse import urlsplit

from .. import logs


class RedactingStream:
    """A text stream that redacts whole lines before passing them on. Text is held until a line
    ends (newline or carriage return, the latter for progress lines) so that a secret split over two
    writes is still found."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        cut = max(self._pending.rfind("\n"), self._pending.rfind("\r"))
        if cut >= 0:
            ready, self._pending = self._pending[: cut + 1], self._pending[cut + 1:]
            self._inner.write(logs.redact_text(ready))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._inner.write(logs.redact_text(self._pending))
            self._pending = ""
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self._inner, name)


@contextmanager
def redacted_console() -> Iterator[None]:
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)  # type: ignore[assignment]
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        sys.stdout, sys.stderr = out, err


def register_scenario_secrets(scenario: Any) -> None:
    """The secrets a scenario leads to: credentials in its RPC URLs, the funder's key and the broker
    user's password from the environment variables it names."""
    urls = scenario.chain.rpc_url
    for url in [urls] if isinstance(urls, str) else urls or []:
        parts = urlsplit(url)
        logs.register_secret(parts.password)
        if parts.username and parts.password:
            logs.register_secret(f"{parts.username}:{parts.password}")
        logs.register_secret(parts.query)
    if scenario.chain.funder_key_env:
        logs.register_secret(os.environ.get(scenario.chain.funder_key_env))
    telemetry = getattr(scenario, "telemetry", None)
    if telemetry is not None and getattr(telemetry, "password_env", None):
        logs.register_secret(os.environ.get(telemetry.password_env))
